"""The scheduler: keeps the latest stats of every backend and places new volumes."""

from __future__ import annotations

import logging
import threading
from typing import Any

from cinderblock.context import RequestContext
from cinderblock.db.database import Database
from cinderblock.db.repo import types as types_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.rpc.base import Transport
from cinderblock.scheduler.filters import FILTERS, PoolState, RequestSpec, capacity_weight
from cinderblock.services.messages import Action, Detail, MessageRecorder, Resource
from cinderblock.states import VolumeStatus

LOG = logging.getLogger(__name__)

SCHEDULER_TOPIC = "cinder-scheduler"


def volume_topic(backend_host: str) -> str:
    return f"cinder-volume.{backend_host}"


class SchedulerManager:
    def __init__(
        self, db: Database, transport: Transport, messages: MessageRecorder, zones: dict[str, str]
    ) -> None:
        self.db = db
        self.transport = transport
        self.messages = messages
        self._zones = zones  # backend host -> availability zone
        self._pools: dict[str, PoolState] = {}
        self._lock = threading.Lock()

    # --- stats -------------------------------------------------------------------
    def update_service_capabilities(
        self, backend_host: str, stats: dict[str, Any], availability_zone: str | None = None
    ) -> None:
        if availability_zone:
            self._zones[backend_host] = availability_zone
        zone = self._zones.get(backend_host, "nova")
        backend_name = stats.get("volume_backend_name") or backend_host.partition("@")[2]
        shared = {k: v for k, v in stats.items() if k != "pools"}
        with self._lock:
            for key in [k for k, p in self._pools.items() if p.backend_host == backend_host]:
                del self._pools[key]
            for pool in stats.get("pools") or [{"pool_name": backend_name}]:
                state = PoolState(
                    backend_host=backend_host,
                    pool_name=pool.get("pool_name", backend_name),
                    backend_name=backend_name,
                    availability_zone=zone,
                    capabilities={**shared, **pool},
                )
                self._pools[state.name] = state

    def pools(self) -> list[PoolState]:
        with self._lock:
            return list(self._pools.values())

    # --- placement -----------------------------------------------------------------
    def choose(self, spec: RequestSpec) -> PoolState | None:
        with self._lock:
            candidates = []
            for pool in self._pools.values():
                reasons = [r for f in FILTERS if (r := f(pool, spec))]
                if reasons:
                    LOG.debug("pool %s refused: %s", pool.name, "; ".join(reasons))
                else:
                    candidates.append(pool)
            if not candidates:
                return None
            best = max(candidates, key=capacity_weight)
            self._consume(best, spec.size)
            return best

    @staticmethod
    def _consume(pool: PoolState, size: int) -> None:
        """Account for the placement until the backend's next stats report."""
        caps = pool.capabilities
        caps["provisioned_capacity_gb"] = pool.cap_float("provisioned_capacity_gb") + size
        caps["allocated_capacity_gb"] = pool.cap_float("allocated_capacity_gb") + size
        if not caps.get("thin_provisioning_support"):
            caps["free_capacity_gb"] = pool.cap_float("free_capacity_gb") - size

    def create_volume(
        self, context: dict[str, Any], volume_id: str, required_backend: str | None = None
    ) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id)
            if volume.status != VolumeStatus.CREATING or volume.host:
                return
            specs = types_repo.extra_specs_of(volume.volume_type)
            spec = RequestSpec(
                size=volume.size,
                extra_specs={k: v for k, v in specs.items() if v is not None},
                availability_zone=volume.availability_zone,
                required_backend=required_backend,
            )
            project_id = volume.project_id
        pool = self.choose(spec)
        if pool is None:
            with self.db.session() as session:
                volumes_repo.compare_and_swap(
                    session,
                    volume_id,
                    {"status": VolumeStatus.CREATING, "host": None},
                    {"status": VolumeStatus.ERROR},
                )
                self.messages.record(
                    ctx,
                    project_id,
                    Resource.VOLUME,
                    volume_id,
                    Action.SCHEDULE_ALLOCATE_VOLUME,
                    Detail.NO_BACKEND,
                    session=session,
                )
            return
        with self.db.session() as session:
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
            )

    def recover(self) -> None:
        """Volumes accepted but never placed (a crash before scheduling) are placed now."""
        with self.db.session() as session:
            pending = [v.id for v in volumes_repo.unplaced(session, VolumeStatus.CREATING)]
        for volume_id in pending:
            self.create_volume(RequestContext.admin().to_dict(), volume_id)
