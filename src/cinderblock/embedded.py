"""Assemble cinderblock's parts in a process: API, scheduler, volume services.

`build(settings)` makes all three with the in-process transport (embedded mode,
`cinderblock serve`). Distributed mode builds the same parts one role at a time
(`roles=("api",)`, `("scheduler",)`, `("volume",)`) around a RabbitMQ transport
and a shared database; the code path is the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette

from cinderblock.api.app import create_app
from cinderblock.concurrency import RunSlots
from cinderblock.config import Settings
from cinderblock.db.database import Database
from cinderblock.db.repo import services as services_repo
from cinderblock.drivers.registry import load_driver
from cinderblock.rpc import make_transport
from cinderblock.rpc.base import Transport
from cinderblock.rpc.inprocess import InProcessTransport
from cinderblock.scheduler.manager import SCHEDULER_TOPIC, SchedulerManager, volume_topic
from cinderblock.services.common import ServiceDeps
from cinderblock.services.messages import MessageRecorder
from cinderblock.services.quotas import QuotaEngine
from cinderblock.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)
VOLUME_BINARY = "cinder-volume"
SCHEDULER_BINARY = "cinder-scheduler"
ALL_ROLES = ("api", "scheduler", "volume")


@dataclass
class Embedded:
    settings: Settings
    db: Database
    transport: Transport
    deps: ServiceDeps
    scheduler: SchedulerManager | None = None
    managers: dict[str, VolumeManager] = field(default_factory=dict)
    app: Starlette | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ticker: threading.Thread | None = None
    _service_ids: list[int] = field(default_factory=list)

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        self.transport.stop()
        self.db.dispose()

    def drain(self) -> None:
        """Wait for in-process work to finish (tests; no-op for a broker)."""
        if isinstance(self.transport, InProcessTransport):
            self.transport.drain()

    def _tick(self) -> None:
        """Heartbeats and periodic stats, every report_interval seconds."""
        while not self._stop.wait(self.settings.report_interval):
            try:
                with self.db.session() as session:
                    for service_id in self._service_ids:
                        services_repo.heartbeat(session, service_id)
            except Exception:
                LOG.exception("heartbeat failed")
            for manager in self.managers.values():
                manager.publish_stats(refresh=True)
            if self.scheduler is not None:
                # Stats casts go to one scheduler each; the database has them all.
                _load_stats(self.db, self.scheduler)


class _CapabilityCache:
    """Capabilities of every backend, from live managers or the services table."""

    def __init__(self, db: Database, managers: dict[str, VolumeManager], ttl: float = 5.0):
        self._db = db
        self._managers = managers
        self._ttl = ttl
        self._loaded = 0.0
        self._cache: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, backend_host: str) -> frozenset[str] | None:
        manager = self._managers.get(backend_host)
        if manager is not None:
            return manager.capabilities
        with self._lock:
            if time.monotonic() - self._loaded > self._ttl:
                self._cache = self._load()
                self._loaded = time.monotonic()
            return self._cache.get(backend_host)

    def _load(self) -> dict[str, frozenset[str]]:
        out = {}
        with self._db.session() as session:
            for service in services_repo.list_(session, VOLUME_BINARY):
                stats = services_repo.stats_of(service) or {}
                caps = stats.get("capabilities")
                if isinstance(caps, list):
                    out[service.host] = frozenset(str(c) for c in caps)
        return out


def build(
    settings: Settings,
    *,
    roles: Iterable[str] = ALL_ROLES,
    transport: Transport | None = None,
    migrate: bool = True,
    start_ticker: bool = True,
) -> Embedded:
    roles = tuple(roles)
    db = Database(settings.database_url)
    if migrate:
        db.upgrade()
    db.ensure_default_type(settings.default_volume_type)
    if transport is None:
        transport = make_transport(
            settings.transport_url or None, call_timeout=settings.rpc_call_timeout
        )
    messages = MessageRecorder(db, settings.message_ttl)
    deps = ServiceDeps(
        settings=settings,
        db=db,
        transport=transport,
        messages=messages,
        run_slots=RunSlots(settings.api_handler_slots),
    )
    embedded = Embedded(settings=settings, db=db, transport=transport, deps=deps)
    deps.capabilities_of = _CapabilityCache(db, embedded.managers)
    if "scheduler" in roles:
        _start_scheduler(embedded)
    if "volume" in roles:
        _start_volume_services(embedded)
    embedded.drain()  # the first stats reach the scheduler before requests do
    if embedded.scheduler is not None:
        embedded.scheduler.recover()
    if "api" in roles:
        embedded.app = create_app(deps)
    if start_ticker and embedded._service_ids:
        embedded._ticker = threading.Thread(target=embedded._tick, name="ticker", daemon=True)
        embedded._ticker.start()
    return embedded


def _register(embedded: Embedded, host: str, binary: str, topic: str) -> str:
    with embedded.db.session() as session:
        service = services_repo.register(
            session, host, binary, topic, embedded.settings.storage_availability_zone
        )
        embedded._service_ids.append(service.id)
        return service.uuid


def _start_scheduler(embedded: Embedded) -> None:
    settings = embedded.settings
    scheduler = SchedulerManager(
        embedded.db,
        embedded.transport,
        embedded.deps.messages,
        zones={},
        is_backend_up=_LiveBackends(embedded.db, settings.service_down_time),
    )
    # A scheduler that starts after the volume services learns their last stats
    # from the database instead of waiting for the next report.
    _load_stats(embedded.db, scheduler)
    _register(embedded, settings.host, SCHEDULER_BINARY, SCHEDULER_TOPIC)
    embedded.transport.serve(SCHEDULER_TOPIC, scheduler)
    embedded.scheduler = scheduler


class _LiveBackends:
    """Which volume services are up and enabled, read from the database (cached 1 s)."""

    def __init__(self, db: Database, down_after: int, ttl: float = 1.0) -> None:
        self._db = db
        self._down_after = down_after
        self._ttl = ttl
        self._loaded = 0.0
        self._live: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, backend_host: str) -> bool:
        with self._lock:
            if time.monotonic() - self._loaded > self._ttl:
                with self._db.read() as session:
                    self._live = {
                        s.host
                        for s in services_repo.list_(session, VOLUME_BINARY)
                        if not s.disabled and services_repo.is_up(s, self._down_after)
                    }
                self._loaded = time.monotonic()
            return backend_host in self._live


def _load_stats(db: Database, scheduler: SchedulerManager) -> None:
    with db.session() as session:
        known = [
            (s.host, services_repo.stats_of(s), s.availability_zone)
            for s in services_repo.list_(session, VOLUME_BINARY)
        ]
    for host, stats, zone in known:
        if stats:
            scheduler.update_service_capabilities(
                backend_host=host, stats=stats, availability_zone=zone
            )


def _start_volume_services(embedded: Embedded) -> None:
    settings = embedded.settings
    zone = settings.storage_availability_zone
    transport = embedded.transport
    db = embedded.db

    def publish(backend_host: str, stats: dict[str, Any]) -> None:
        with db.session() as session:
            services_repo.save_stats(session, backend_host, VOLUME_BINARY, stats)
        transport.cast(
            SCHEDULER_TOPIC,
            "update_service_capabilities",
            backend_host=backend_host,
            stats=stats,
            availability_zone=zone,
        )

    for backend in settings.backends:
        host = f"{settings.host}@{backend.name}"
        service_uuid = _register(embedded, host, VOLUME_BINARY, volume_topic(host))
        manager = VolumeManager(
            host=host,
            db=db,
            driver=load_driver(backend, host),
            messages=embedded.deps.messages,
            publish_stats=publish,
            availability_zone=zone,
            service_uuid=service_uuid,
            quotas=QuotaEngine.for_deps(embedded.deps),
        )
        manager.init_host()
        transport.serve(volume_topic(host), manager)
        embedded.managers[host] = manager
