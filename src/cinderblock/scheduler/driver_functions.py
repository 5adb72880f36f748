"""Backends' filter and goodness functions (Cinder's DriverFilter and GoodnessWeigher).

A volume service reports ``filter_function`` and ``goodness_function`` strings in its
stats (from its configuration or the driver's defaults). The scheduler evaluates them
per pool with the safe evaluator, against these namespaces:

- ``volume``: the requested volume (``size``, ``volume_type_id``, ``availability_zone``...)
- ``capabilities``: everything the pool reports
- ``stats``: the usual backend figures (``total_capacity_gb``, ``free_capacity_gb``...)
- ``qos``: the volume type's QoS specs
- ``extra``: the volume type's extra specs

A filter function that cannot be evaluated refuses the pool; a goodness function that
cannot be evaluated, or gives something outside 0..100, scores 0. Both are logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cinderblock.scheduler.evaluator import EvaluatorError, evaluate, truth

if TYPE_CHECKING:
    from cinderblock.scheduler.filters import PoolState, RequestSpec

LOG = logging.getLogger(__name__)

STATS_KEYS = (
    "volume_backend_name",
    "vendor_name",
    "driver_version",
    "storage_protocol",
    "QoS_support",
    "total_capacity_gb",
    "allocated_capacity_gb",
    "provisioned_capacity_gb",
    "free_capacity_gb",
    "reserved_percentage",
    "max_over_subscription_ratio",
)


def namespaces(pool: PoolState, spec: RequestSpec) -> dict[str, Mapping[str, Any]]:
    caps = pool.capabilities
    stats: dict[str, Any] = {key: caps[key] for key in STATS_KEYS if key in caps}
    stats.setdefault("volume_backend_name", pool.backend_name)
    stats["host"] = pool.name
    stats["pool_name"] = pool.pool_name
    stats["availability_zone"] = pool.availability_zone
    return {
        "volume": {**spec.volume, "size": spec.size},
        "capabilities": caps,
        "stats": stats,
        "qos": dict(spec.qos_specs),
        "extra": dict(spec.extra_specs),
    }


def filter_function_refusal(pool: PoolState, spec: RequestSpec) -> str | None:
    """None when the pool has no filter function or it holds; else why not."""
    text = pool.capabilities.get("filter_function")
    if not text:
        return None
    try:
        result = evaluate(str(text), namespaces(pool, spec))
    except EvaluatorError as err:
        LOG.warning("filter_function of %s (%r) failed, pool refused: %s", pool.name, text, err)
        return f"filter_function failed: {err}"
    if truth(result):
        return None
    return f"filter_function {text!r} is false"


def goodness(pool: PoolState, spec: RequestSpec) -> float:
    """The pool's goodness for this request, 0..100 (0 without a goodness function)."""
    text = pool.capabilities.get("goodness_function")
    if not text:
        return 0.0
    try:
        result = evaluate(str(text), namespaces(pool, spec))
    except EvaluatorError as err:
        LOG.warning("goodness_function of %s (%r) failed, scored 0: %s", pool.name, text, err)
        return 0.0
    score = _score(result)
    if score is None or not 0.0 <= score <= 100.0:
        LOG.warning(
            "goodness_function of %s (%r) gave %r, outside 0..100: scored 0",
            pool.name,
            text,
            result,
        )
        return 0.0
    return score


def _score(result: Any) -> float | None:
    if isinstance(result, bool):
        return 1.0 if result else 0.0
    try:
        score = float(result)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None
