"""The scheduler: keeps the latest stats of every backend and places new volumes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cinderblock.context import RequestContext
from cinderblock.db.database import Database
from cinderblock.db.models import Volume
from cinderblock.db.repo import claims as claims_repo
from cinderblock.db.repo import types as types_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.rpc.base import Transport
from cinderblock.scheduler.capabilities import match
from cinderblock.scheduler.filters import (
    TYPE_FILTERS,
    PoolState,
    RequestSpec,
    refusals,
    thin_placement,
)
from cinderblock.scheduler.weights import weigh
from cinderblock.services.messages import Action, Detail, MessageRecorder, Resource
from cinderblock.states import VolumeStatus

LOG = logging.getLogger(__name__)

SCHEDULER_TOPIC = "cinder-scheduler"


def volume_topic(backend_host: str) -> str:
    return f"cinder-volume.{backend_host}"


def volume_properties(volume: Volume) -> dict[str, Any]:
    """The `volume` namespace of filter and goodness functions."""
    return {
        "id": volume.id,
        "size": volume.size,
        "volume_type_id": volume.volume_type_id,
        "availability_zone": volume.availability_zone,
        "project_id": volume.project_id,
        "user_id": volume.user_id,
        "display_name": volume.display_name,
        "status": volume.status,
        "attach_status": volume.attach_status,
        "multiattach": volume.multiattach,
        "bootable": volume.bootable,
        "snapshot_id": volume.snapshot_id,
        "source_volid": volume.source_volid,
        "group_id": volume.group_id,
        "encryption_key_id": volume.encryption_key_id,
    }


def _has(pool: PoolState, key: str, want: Any) -> bool:
    if key == "name":
        return pool.name == str(want)
    return match(pool.capabilities.get(key), str(want))


class SchedulerManager:
    """Keeps every pool's latest stats; filters and weighs them to place volumes.

    `is_backend_up(backend_host)` tells whether the volume service owning a backend is
    alive (distributed mode passes a check of the services table); pools whose last
    report is older than `stale_after` seconds are ignored as well (0: never stale).
    The weighers' multipliers tune capacity against the drivers' goodness functions.
    """

    def __init__(
        self,
        db: Database,
        transport: Transport,
        messages: MessageRecorder,
        zones: dict[str, str],
        *,
        is_backend_up: Callable[[str], bool] | None = None,
        stale_after: float = 0.0,
        capacity_weight_multiplier: float = 1.0,
        goodness_weight_multiplier: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.transport = transport
        self.messages = messages
        self._zones = zones  # backend host -> availability zone
        self._pools: dict[str, PoolState] = {}
        self._lock = threading.Lock()
        self._is_backend_up = is_backend_up or (lambda _host: True)
        self.stale_after = stale_after
        self.capacity_weight_multiplier = capacity_weight_multiplier
        self.goodness_weight_multiplier = goodness_weight_multiplier
        self._clock = clock

    # --- stats -------------------------------------------------------------------
    def update_service_capabilities(
        self, backend_host: str, stats: dict[str, Any], availability_zone: str | None = None
    ) -> None:
        if availability_zone:
            self._zones[backend_host] = availability_zone
        zone = self._zones.get(backend_host, "nova")
        backend_name = stats.get("volume_backend_name") or backend_host.partition("@")[2]
        shared = {k: v for k, v in stats.items() if k != "pools"}
        now = self._clock()
        with self._lock:
            for key in [k for k, p in self._pools.items() if p.backend_host == backend_host]:
                del self._pools[key]
            for pool in stats.get("pools") or [{"pool_name": backend_name}]:
                state = PoolState(
                    backend_host=backend_host,
                    pool_name=pool.get("pool_name") or backend_name,
                    backend_name=backend_name,
                    availability_zone=zone,
                    capabilities={**shared, **pool},
                    updated_at=now,
                )
                self._pools[state.name] = state

    def pools(self, include_down: bool = False) -> list[PoolState]:
        """Known pools by name; only those of live backends with fresh stats by default."""
        with self._lock:
            known = sorted(self._pools.values(), key=lambda p: p.name)
        if include_down:
            return known
        up = self._up_backends({pool.backend_host for pool in known})
        return [p for p in known if p.backend_host in up and not self._stale(p)]

    def get_pools(
        self,
        context: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        extra_specs: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """GET /scheduler-stats/get_pools: plain data, so it also works over RPC.

        `filters` keeps pools whose `name` or reported capabilities equal the given
        values; `extra_specs` (a volume type's) keeps pools that could host the type.
        """
        spec = RequestSpec(size=0, extra_specs=extra_specs) if extra_specs else None
        live = self.pools()
        found = []
        with self._lock:  # placements update capabilities in place
            for pool in live:
                if spec is not None and refusals(pool, spec, TYPE_FILTERS):
                    continue
                if filters and not all(_has(pool, key, want) for key, want in filters.items()):
                    continue
                found.append(pool.as_dict())
        return found

    def _up_backends(self, hosts: set[str]) -> set[str]:
        up = set()
        for host in hosts:
            try:
                if self._is_backend_up(host):
                    up.add(host)
            except Exception:
                LOG.exception("liveness check of %s failed; treating it as down", host)
        return up

    def _stale(self, pool: PoolState) -> bool:
        return self.stale_after > 0 and self._clock() - pool.updated_at > self.stale_after

    # --- placement -----------------------------------------------------------------
    def choose(self, spec: RequestSpec) -> PoolState | None:
        with self._lock:
            hosts = {pool.backend_host for pool in self._pools.values()}
        up = self._up_backends(hosts)  # may ask the database: not under the lock
        with self._lock:
            candidates = []
            refused = []
            for pool in sorted(self._pools.values(), key=lambda p: p.name):
                if pool.backend_host not in up:
                    reasons = ["service is down"]
                elif self._stale(pool):
                    reasons = [f"stats are {self._clock() - pool.updated_at:.0f}s old"]
                else:
                    reasons = refusals(pool, spec)
                if reasons:
                    refused.append(f"{pool.name}: {'; '.join(reasons)}")
                else:
                    candidates.append(pool)
            ranked = weigh(
                candidates,
                spec,
                capacity_multiplier=self.capacity_weight_multiplier,
                goodness_multiplier=self.goodness_weight_multiplier,
            )
            if not ranked:
                LOG.info("no pool fits %s GiB: %s", spec.size, " | ".join(refused) or "no pools")
                return None
            LOG.debug("pools weighed: %s", [(w.pool.name, round(w.weight, 3)) for w in ranked])
            best = ranked[0].pool
            self._consume(best, spec)
            return best

    def check_backend(
        self, spec: RequestSpec | dict[str, Any], backend_host: str
    ) -> list[str] | None:
        """Could `backend_host` (host@backend or host@backend#pool) take this volume type?

        For manage requests: the same filters as placement with size 0 (the data
        already exists). None when it could, else the reasons it cannot.
        """
        if not isinstance(spec, RequestSpec):
            spec = RequestSpec.from_dict(spec)
        spec = replace(spec, size=0, required_backend=None)
        host, _, pool_name = backend_host.partition("#")
        if not self._up_backends({host}):
            return [f"the volume service of {host} is down"]
        with self._lock:
            pools = sorted(
                (p for p in self._pools.values() if p.backend_host == host),
                key=lambda p: p.name,
            )
            if pool_name:
                pools = [p for p in pools if p.pool_name == pool_name]
            if not pools:
                return [f"no stats reported for {backend_host}"]
            reasons: list[str] = []
            for pool in pools:
                if self._stale(pool):
                    reasons.append(f"{pool.name}: stats are out of date")
                    continue
                refused = refusals(pool, spec)
                if not refused:
                    return None
                reasons.extend(f"{pool.name}: {reason}" for reason in refused)
            return reasons

    @staticmethod
    def _consume(pool: PoolState, spec: RequestSpec) -> None:
        """Account for the placement until the backend's next stats report."""
        caps, size = pool.capabilities, spec.size
        caps["provisioned_capacity_gb"] = pool.cap_float("provisioned_capacity_gb") + size
        caps["allocated_capacity_gb"] = pool.cap_float("allocated_capacity_gb") + size
        if not thin_placement(pool, spec) and not pool.unbounded("free_capacity_gb"):
            caps["free_capacity_gb"] = pool.cap_float("free_capacity_gb") - size

    def create_volume(
        self,
        context: dict[str, Any],
        volume_id: str,
        required_backend: str | None = None,
        request_spec: dict[str, Any] | None = None,
    ) -> None:
        """Place a new volume. The API sends the request spec along; recovery does not,
        and the spec is then read from the row. Placing is a compare-and-swap on
        (creating, no host), so a duplicate or late message places nothing twice."""
        ctx = RequestContext.from_dict(context)
        if request_spec is not None:
            spec = RequestSpec.from_dict(request_spec)
        else:
            with self.db.read() as session:
                volume = volumes_repo.get(session, volume_id)
                if volume.status != VolumeStatus.CREATING or volume.host:
                    return
                specs = types_repo.extra_specs_of(volume.volume_type)
                spec = RequestSpec(
                    size=volume.size,
                    extra_specs={k: v for k, v in specs.items() if v is not None},
                    availability_zone=volume.availability_zone,
                    required_backend=required_backend,
                    volume=volume_properties(volume),
                )
        pool = self.choose(spec)
        if pool is None:
            with self.db.session() as session:
                if volumes_repo.compare_and_swap(
                    session,
                    volume_id,
                    {"status": VolumeStatus.CREATING, "host": None},
                    {"status": VolumeStatus.ERROR},
                ):
                    self.messages.record(
                        ctx,
                        str(spec.volume.get("project_id") or ctx.project_id),
                        Resource.VOLUME,
                        volume_id,
                        Action.SCHEDULE_ALLOCATE_VOLUME,
                        Detail.NO_BACKEND,
                        session=session,
                    )
            return
        with self.db.one_statement() as session:
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.CREATING, "host": None},
                {"host": pool.name},
            )
        if won:
            self.transport.cast(
                volume_topic(pool.backend_host),
                "create_volume",
                context=context,
                volume_id=volume_id,
                request_spec=spec.to_dict() if request_spec is not None else None,
                host=pool.name,
            )

    def recover(self) -> None:
        """Volumes accepted but never placed (a crash before scheduling) are placed now."""
        with self.db.session() as session:
            pending = [v.id for v in volumes_repo.unplaced(session, VolumeStatus.CREATING)]
        for volume_id in pending:
            self.create_volume(RequestContext.admin().to_dict(), volume_id)

    def manage_existing(
        self, context: dict[str, Any], volume_id: str, existing_ref: dict[str, Any]
    ) -> None:
        """Check the named backend with the placement filters, then hand over the adopt.

        A backend that cannot hold a volume of this type (wrong backend name, missing
        capability, zone, service down) fails the manage before the driver is asked.
        """
        ctx = RequestContext.from_dict(context)
        with self.db.read() as session:
            volume = volumes_repo.get(session, volume_id)
            if volume.status != VolumeStatus.MANAGING or not volume.host:
                return
            specs = types_repo.extra_specs_of(volume.volume_type)
            spec = RequestSpec(
                size=0,
                extra_specs={k: v for k, v in specs.items() if v is not None},
                availability_zone=volume.availability_zone,
                volume=volume_properties(volume),
            )
            host, project_id = volume.host, volume.project_id
        reasons = self.check_backend(spec, host)
        backend = host.partition("#")[0]
        if reasons:
            LOG.info("manage of %s on %s refused: %s", volume_id, host, "; ".join(reasons))
            with self.db.session() as session:
                volumes_repo.compare_and_swap(
                    session,
                    volume_id,
                    {"status": VolumeStatus.MANAGING},
                    {"status": VolumeStatus.ERROR_MANAGING},
                )
                claims_repo.release(session, volume_id)
                self.messages.record(
                    ctx,
                    project_id,
                    Resource.VOLUME,
                    volume_id,
                    Action.MANAGE_VOLUME,
                    Detail.TYPE_MISMATCH,
                    "; ".join(reasons),
                    session=session,
                )
            return
        self.transport.cast(
            volume_topic(backend),
            "manage_existing",
            context=context,
            volume_id=volume_id,
            existing_ref=existing_ref,
        )

    def migrate_volume(
        self, context: dict[str, Any], volume_id: str, host: str, force_host_copy: bool = False
    ) -> None:
        """Check the destination with the placement filters, then wake the source service."""
        from cinderblock.services.migrate import schedule_migration  # it imports this module

        schedule_migration(self, context, volume_id, host, force_host_copy)
