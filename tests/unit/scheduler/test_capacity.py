"""Capacity filter and weigher: thick, thin with over-subscription, reserved space."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cinderblock.scheduler.filters import capacity_filter, over_subscription_ratio
from cinderblock.scheduler.weights import capacity_weight, normalise

from .helpers import pool_state, spec


@pytest.mark.parametrize(
    ("caps", "size", "fits"),
    [
        # thick: free space minus the reserved share
        ({"free": 10}, 10, True),
        ({"free": 10}, 11, False),
        ({"free": 10, "reserved": 5}, 5, True),  # 100 GiB total, 5 reserved
        ({"free": 10, "reserved": 5}, 6, False),
        ({"total": 99, "free": 10, "reserved": 5}, 6, True),  # floor(4.95) = 4 reserved
        ({"free": 0}, 1, False),
        ({"total": 0, "free": 0}, 1, False),
        # thin: free x ratio, and provisioned may not pass total x ratio
        ({"thin": True, "ratio": 20.0, "free": 10}, 150, True),
        ({"thin": True, "ratio": 20.0, "free": 10}, 201, False),
        ({"thin": True, "ratio": 20.0, "free": 10, "provisioned": 1900}, 100, True),
        ({"thin": True, "ratio": 20.0, "free": 10, "provisioned": 1950}, 100, False),
        ({"thin": True, "ratio": 2.0, "free": 50, "provisioned": 150}, 50, True),
        ({"thin": True, "ratio": 2.0, "free": 50, "provisioned": 150}, 51, False),
        ({"thin": True, "ratio": 1.0, "free": 10}, 10, True),
        ({"thin": True, "ratio": 1.0, "free": 10}, 11, False),
        ({"thin": True, "ratio": 20.0, "free": 10, "reserved": 10}, 1, False),  # none usable
        ({"thin": True, "ratio": 20.0, "free": 20, "reserved": 10}, 200, True),
        ({"thin": True, "ratio": 20.0, "free": 20, "reserved": 10}, 201, False),
        ({"thin": True, "ratio": "20.0", "free": 10}, 150, True),  # ratios as strings
        # a ratio below 1 is not over-subscription: thick rules apply
        ({"thin": True, "ratio": 0.5, "free": 10}, 11, False),
        # backends that cannot tell
        ({"free": "infinite", "total": "infinite"}, 10_000, True),
        ({"free": "unknown", "total": "unknown"}, 10_000, True),
        ({"free": 5, "total": "unknown"}, 6, False),
        ({"thin": True, "ratio": 2.0, "free": 5, "total": "infinite"}, 10, True),
    ],
)
def test_capacity_filter(caps: dict[str, Any], size: int, fits: bool) -> None:
    reason = capacity_filter(pool_state(**caps), spec(size))
    assert (reason is None) is fits, reason


def test_thick_type_on_a_pool_that_does_both() -> None:
    both = pool_state(thin=True, thick=True, ratio=20.0, free=10)
    assert capacity_filter(both, spec(100)) is None
    refusal = capacity_filter(both, spec(100, **{"provisioning:type": "thick"}))
    assert refusal is not None and "10.0 GiB free" in refusal
    thin_only = pool_state(thin=True, thick=False, ratio=20.0, free=10)
    assert capacity_filter(thin_only, spec(100, **{"provisioning:type": "thick"})) is None


def test_size_zero_always_fits() -> None:
    """Manage requests bring data that already exists."""
    full = pool_state(free=0, thin=True, ratio=1.0, provisioned=500)
    assert capacity_filter(full, spec(0)) is None


def test_auto_ratio_grows_with_what_is_provisioned() -> None:
    empty = pool_state(thin=True, ratio="auto", free=100, provisioned=0)
    busy = pool_state(thin=True, ratio="auto", free=50, provisioned=200)
    assert over_subscription_ratio(empty) == 1.0
    assert over_subscription_ratio(busy) == pytest.approx(1 + 200 / 51)
    assert capacity_filter(busy, spec(100)) is None


@pytest.mark.parametrize(
    ("caps", "weight"),
    [
        ({"free": 40}, 40),
        ({"free": 40, "reserved": 10}, 30),
        ({"thin": True, "ratio": 20.0, "free": 40, "provisioned": 500}, 1500),
        ({"thin": True, "ratio": 20.0, "free": 40, "provisioned": 500, "reserved": 10}, 1490),
        ({"thin": True, "ratio": 1.0, "free": 40, "provisioned": 60}, 40),
        ({"free": "infinite", "total": "infinite"}, math.inf),
        ({"free": "unknown", "total": "unknown"}, 0),
    ],
)
def test_capacity_weight(caps: dict[str, Any], weight: float) -> None:
    assert capacity_weight(pool_state(**caps), spec(1)) == weight


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ([], []),
        ([5.0], [0.0]),
        ([3.0, 3.0], [0.0, 0.0]),
        ([0.0, 50.0, 100.0], [0.0, 0.5, 1.0]),
        ([-10.0, 10.0], [0.0, 1.0]),
        ([math.inf, 10.0, 0.0], [1.0, 10 / 11, 0.0]),
        ([math.inf, math.inf], [0.0, 0.0]),
    ],
)
def test_normalise(raw: list[float], normalised: list[float]) -> None:
    assert normalise(raw) == pytest.approx(normalised)
