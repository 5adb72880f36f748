"""Backend filters and weighers. Each filter says why it refused, for the logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PoolState:
    """What the scheduler knows of one pool, from the owning service's stats."""

    backend_host: str  # host@backend
    pool_name: str
    backend_name: str  # volume_backend_name
    availability_zone: str
    capabilities: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.backend_host}#{self.pool_name}"

    def cap_float(self, key: str, default: float = 0.0) -> float:
        value = self.capabilities.get(key, default)
        if value in ("infinite", "unknown"):
            return float("inf") if value == "infinite" else default
        try:
            return float(value)
        except (TypeError, ValueError):
            return default


@dataclass(frozen=True)
class RequestSpec:
    size: int
    extra_specs: Mapping[str, str]
    availability_zone: str | None = None
    required_backend: str | None = None  # host@backend#pool (create from a source)


def backend_name_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    wanted = spec.extra_specs.get("volume_backend_name")
    if wanted and wanted != pool.backend_name:
        return f"volume_backend_name {pool.backend_name} != {wanted}"
    return None


def availability_zone_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    if spec.availability_zone and spec.availability_zone != pool.availability_zone:
        return f"availability zone {pool.availability_zone} != {spec.availability_zone}"
    return None


def same_backend_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    if spec.required_backend is None:
        return None
    required = spec.required_backend
    if "#" in required:
        return None if pool.name == required else f"not the source's pool {required}"
    return None if pool.backend_host == required else f"not the source's backend {required}"


def capacity_filter(pool: PoolState, spec: RequestSpec) -> str | None:
    """Cinder's rule: thin pools may be over-subscribed up to the configured ratio."""
    total = pool.cap_float("total_capacity_gb")
    free = pool.cap_float("free_capacity_gb")
    if total == float("inf") or free == float("inf"):
        return None
    if total <= 0:
        return "no capacity reported"
    reserved = pool.cap_float("reserved_percentage") / 100.0
    free_usable = free - total * reserved
    thin = bool(pool.capabilities.get("thin_provisioning_support"))
    ratio = pool.cap_float("max_over_subscription_ratio", 1.0)
    if thin and ratio >= 1:
        provisioned = pool.cap_float("provisioned_capacity_gb")
        if (provisioned + spec.size) / total > ratio:
            return f"over-subscription ratio {ratio} would be exceeded"
        if free_usable * ratio >= spec.size and free_usable > 0:
            return None
        return f"{free_usable * ratio:.1f} GiB virtual free < {spec.size} GiB"
    if free_usable >= spec.size:
        return None
    return f"{free_usable:.1f} GiB free < {spec.size} GiB"


FILTERS = (backend_name_filter, availability_zone_filter, same_backend_filter, capacity_filter)


def capacity_weight(pool: PoolState) -> float:
    """Prefer the pool with the most (virtual, for thin pools) free space."""
    free = pool.cap_float("free_capacity_gb")
    if pool.capabilities.get("thin_provisioning_support"):
        total = pool.cap_float("total_capacity_gb")
        ratio = pool.cap_float("max_over_subscription_ratio", 1.0)
        provisioned = pool.cap_float("provisioned_capacity_gb")
        return total * ratio - provisioned
    return free
