"""Stats in the shape volume services publish, and a scheduler that needs no database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cinderblock.scheduler.filters import PoolState, RequestSpec
from cinderblock.scheduler.manager import SchedulerManager


def pool(
    name: str,
    *,
    total: Any = 100,
    free: Any = 100,
    provisioned: float = 0,
    thin: bool = False,
    thick: bool | None = None,
    ratio: Any = 1.0,
    reserved: float = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "pool_name": name,
        "total_capacity_gb": total,
        "free_capacity_gb": free,
        "allocated_capacity_gb": provisioned,
        "provisioned_capacity_gb": provisioned,
        "max_over_subscription_ratio": ratio,
        "reserved_percentage": reserved,
        "thin_provisioning_support": thin,
        "thick_provisioning_support": (not thin) if thick is None else thick,
        "QoS_support": False,
        "multiattach": False,
        **extra,
    }


def stats(backend_name: str, *pools: dict[str, Any], **shared: Any) -> dict[str, Any]:
    return {
        "volume_backend_name": backend_name,
        "vendor_name": "Open Source",
        "driver_version": "1.0",
        "storage_protocol": "iSCSI",
        "capabilities": ["create", "delete"],
        "filter_function": None,
        "goodness_function": None,
        **shared,
        "pools": list(pools),
    }


def pool_state(**kwargs: Any) -> PoolState:
    """One pool, as the scheduler would hold it."""
    return PoolState(
        backend_host="host@be",
        pool_name="p",
        backend_name="be",
        availability_zone="nova",
        capabilities=pool("p", **kwargs),
    )


def spec(size: int = 1, **extra_specs: str) -> RequestSpec:
    return RequestSpec(size=size, extra_specs=extra_specs)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scheduler(
    is_backend_up: Callable[[str], bool] | None = None, **kwargs: Any
) -> SchedulerManager:
    """choose(), check_backend() and get_pools() touch neither database nor transport."""
    return SchedulerManager(
        db=None,  # type: ignore[arg-type]
        transport=None,  # type: ignore[arg-type]
        messages=None,  # type: ignore[arg-type]
        zones={},
        is_backend_up=is_backend_up,
        **kwargs,
    )
