"""Weighers: which of the pools that passed the filters gets the volume.

Each weigher gives a raw figure per pool; the figures are normalised to 0..1 over the
candidates (the smallest becomes 0, the largest 1, all 0 when they are equal), scaled
by the weigher's multiplier and summed. The highest total wins; equal totals go to
the pool whose name sorts first, so the choice never depends on dictionary order.

- capacity: free virtual capacity (thin pools: total x over-subscription ratio minus
  what is provisioned; thick pools: free space), less the reserved share. A negative
  multiplier stacks volumes on the fullest pool instead of spreading them.
- goodness: the backend's goodness_function, 0..100.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cinderblock.scheduler.driver_functions import goodness
from cinderblock.scheduler.filters import (
    PoolState,
    RequestSpec,
    over_subscription_ratio,
    reserved_gb,
    thin_placement,
)


def capacity_weight(pool: PoolState, spec: RequestSpec | None = None) -> float:
    """Free virtual capacity in GiB; +inf for pools reporting 'infinite'."""
    if pool.unbounded("free_capacity_gb"):
        return math.inf if pool.cap_float("free_capacity_gb") == math.inf else 0.0
    free = pool.cap_float("free_capacity_gb")
    total = pool.cap_float("total_capacity_gb")
    ratio = over_subscription_ratio(pool)
    if thin_placement(pool, spec) and ratio >= 1 and math.isfinite(total):
        return total * ratio - pool.cap_float("provisioned_capacity_gb") - reserved_gb(pool)
    return free - reserved_gb(pool)


def goodness_weight(pool: PoolState, spec: RequestSpec | None = None) -> float:
    return goodness(pool, spec) if spec is not None else 0.0


def normalise(values: Sequence[float]) -> list[float]:
    """Scale to 0..1 over the candidates; +inf counts as above every finite value."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):  # some unbounded: they share the top
        high = (max(finite) if finite else 0.0) + 1.0
        values = [v if math.isfinite(v) else (high if v > 0 else -high) for v in values]
    low, top = min(values, default=0.0), max(values, default=0.0)
    if top == low:
        return [0.0 for _ in values]
    return [(v - low) / (top - low) for v in values]


Weigher = Callable[[PoolState, RequestSpec], float]


@dataclass(frozen=True)
class WeighedPool:
    weight: float
    pool: PoolState


def weigh(
    pools: Iterable[PoolState],
    spec: RequestSpec,
    capacity_multiplier: float = 1.0,
    goodness_multiplier: float = 1.0,
) -> list[WeighedPool]:
    """The candidates, best first (ties: by pool name)."""
    candidates = list(pools)
    weighers: list[tuple[float, Weigher]] = [
        (capacity_multiplier, capacity_weight),
        (goodness_multiplier, goodness_weight),
    ]
    totals = [0.0] * len(candidates)
    for multiplier, weigher in weighers:
        if multiplier == 0 or not candidates:
            continue
        raw = [weigher(pool, spec) for pool in candidates]
        for index, value in enumerate(normalise(raw)):
            totals[index] += multiplier * value
    ranked = [WeighedPool(total, pool) for total, pool in zip(totals, candidates, strict=True)]
    ranked.sort(key=lambda item: (-item.weight, item.pool.name))
    return ranked
