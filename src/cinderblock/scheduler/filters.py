"""Backend filters. Each filter says why it refused, for the logs and manage checks."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cinderblock.scheduler.capabilities import availability_zones, match, unmet_extra_specs
from cinderblock.scheduler.driver_functions import filter_function_refusal

UNBOUNDED = ("infinite", "unknown")


@dataclass
class PoolState:
    """What the scheduler knows of one pool, from the owning service's stats."""

    backend_host: str  # host@backend
    pool_name: str
    backend_name: str  # volume_backend_name
    availability_zone: str
    capabilities: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0  # when the stats arrived (seconds since the epoch)

    @property
    def name(self) -> str:
        return f"{self.backend_host}#{self.pool_name}"

    def cap_float(self, key: str, default: float = 0.0) -> float:
        value = self.capabilities.get(key, default)
        if isinstance(value, str) and value.lower() in UNBOUNDED:
            return float("inf") if value.lower() == "infinite" else default
        try:
            return float(value)
        except (TypeError, ValueError):
            return default

    def unbounded(self, key: str) -> bool:
        """The backend reports 'infinite' or 'unknown' instead of a number."""
        value = self.capabilities.get(key)
        return isinstance(value, str) and value.lower() in UNBOUNDED

    def as_dict(self) -> dict[str, Any]:
        """GET /scheduler-stats/get_pools shape: name plus every reported capability."""
        stamp = dt.datetime.fromtimestamp(self.updated_at, dt.UTC).replace(tzinfo=None)
        caps = {k: v for k, v in self.capabilities.items() if k != "pools"}
        caps.setdefault("volume_backend_name", self.backend_name)
        caps["pool_name"] = self.pool_name
        caps["availability_zone"] = self.availability_zone
        caps["timestamp"] = caps["updated"] = stamp.isoformat()
        return {"name": self.name, "capabilities": caps}


@dataclass(frozen=True)
class RequestSpec:
    size: int
    extra_specs: Mapping[str, str]
    availability_zone: str | None = None
    required_backend: str | None = None  # host@backend#pool (create from a source)
    volume: Mapping[str, Any] = field(default_factory=dict)  # the `volume` namespace
    qos_specs: Mapping[str, Any] = field(default_factory=dict)  # the `qos` namespace

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for sending a spec over RPC."""
        return {
            "size": self.size,
            "extra_specs": dict(self.extra_specs),
            "availability_zone": self.availability_zone,
            "required_backend": self.required_backend,
            "volume": dict(self.volume),
            "qos_specs": dict(self.qos_specs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestSpec:
        return cls(
            size=int(data.get("size") or 0),
            extra_specs=dict(data.get("extra_specs") or {}),
            availability_zone=data.get("availability_zone"),
            required_backend=data.get("required_backend"),
            volume=dict(data.get("volume") or {}),
            qos_specs=dict(data.get("qos_specs") or {}),
        )


Filter = Callable[[PoolState, RequestSpec], "str | None"]


def same_backend_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    if spec.required_backend is None:
        return None
    required = spec.required_backend
    if "#" in required:
        return None if pool.name == required else f"not the source's pool {required}"
    return None if pool.backend_host == required else f"not the source's backend {required}"


def backend_name_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    wanted = spec.extra_specs.get("volume_backend_name")
    if wanted and not match(pool.backend_name, wanted):
        return f"volume_backend_name {pool.backend_name} does not match {wanted}"
    return None


def availability_zone_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    if spec.availability_zone and spec.availability_zone != pool.availability_zone:
        return f"availability zone {pool.availability_zone} != {spec.availability_zone}"
    allowed = availability_zones(spec.extra_specs)
    if allowed is not None and pool.availability_zone not in allowed:
        return f"availability zone {pool.availability_zone} not in the type's {allowed}"
    return None


def capabilities_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    return unmet_extra_specs(pool.capabilities, spec.extra_specs)


# --- capacity ------------------------------------------------------------------------
def over_subscription_ratio(pool: PoolState) -> float:
    """The configured ratio; 'auto' derives one from what the pool already carries."""
    value = pool.capabilities.get("max_over_subscription_ratio", 1.0)
    if isinstance(value, str) and value.strip().lower() == "auto":
        total = pool.cap_float("total_capacity_gb")
        used = total - pool.cap_float("free_capacity_gb")
        if not math.isfinite(total) or total <= 0:
            return 1.0
        return 1.0 + pool.cap_float("provisioned_capacity_gb") / (max(used, 0.0) + 1.0)
    return pool.cap_float("max_over_subscription_ratio", 1.0)


def thin_placement(pool: PoolState, spec: RequestSpec | None) -> bool:
    """Thin accounting applies when the pool can thin-provision and the type allows it."""
    if not _truthy(pool.capabilities.get("thin_provisioning_support")):
        return False
    wanted = (spec.extra_specs.get("provisioning:type") if spec else None) or "thin"
    return wanted.strip().lower() != "thick" or not _truthy(
        pool.capabilities.get("thick_provisioning_support")
    )


def reserved_gb(pool: PoolState) -> float:
    total = pool.cap_float("total_capacity_gb")
    if not math.isfinite(total):
        return 0.0
    return float(math.floor(total * pool.cap_float("reserved_percentage") / 100.0))


def capacity_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    """Cinder's rule: thin pools may be over-subscribed up to the configured ratio."""
    if spec.size <= 0:  # manage requests: the data already exists on the backend
        return None
    if pool.unbounded("free_capacity_gb"):
        return None
    free = pool.cap_float("free_capacity_gb")
    total = pool.cap_float("total_capacity_gb")
    bounded_total = not pool.unbounded("total_capacity_gb") and math.isfinite(total)
    if math.isinf(free):
        return None
    if bounded_total and total <= 0:
        return "no capacity reported"
    usable = free - reserved_gb(pool)
    ratio = over_subscription_ratio(pool)
    if thin_placement(pool, spec) and ratio >= 1:
        if bounded_total:
            provisioned = pool.cap_float("provisioned_capacity_gb")
            if (provisioned + spec.size) / total > ratio:
                return f"over-subscription ratio {ratio:g} would be exceeded"
        if usable > 0 and usable * ratio >= spec.size:
            return None
        return f"{usable * ratio:.1f} GiB virtual free < {spec.size} GiB"
    if usable >= spec.size:
        return None
    return f"{usable:.1f} GiB free < {spec.size} GiB"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def driver_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    """The backend's own filter_function (driver default or operator-configured)."""
    return filter_function_refusal(pool, spec)


FILTERS: tuple[Filter, ...] = (
    same_backend_filter,
    backend_name_filter,
    availability_zone_filter,
    capabilities_filter,
    capacity_filter,
    driver_filter,
)

# What a volume type alone decides (GET /scheduler-stats/get_pools?volume_type=...).
TYPE_FILTERS: tuple[Filter, ...] = (
    backend_name_filter,
    availability_zone_filter,
    capabilities_filter,
)


def refusals(
    pool: PoolState, spec: RequestSpec, filters: tuple[Filter, ...] = FILTERS
) -> list[str]:
    """Every filter's reason for refusing `pool` (empty: the pool fits)."""
    return [reason for check in filters if (reason := check(pool, spec))]
