"""Assemble a whole cinderblock in one process: API, scheduler, volume services.

Used by `cinderblock serve` and by the tests, which run the same assembly
behind a real HTTP server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette

from cinderblock.api.app import create_app
from cinderblock.config import Settings
from cinderblock.db.database import Database
from cinderblock.db.repo import services as services_repo
from cinderblock.drivers.registry import load_driver
from cinderblock.rpc.inprocess import InProcessTransport
from cinderblock.scheduler.manager import SCHEDULER_TOPIC, SchedulerManager, volume_topic
from cinderblock.services.common import ServiceDeps
from cinderblock.services.messages import MessageRecorder
from cinderblock.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)
VOLUME_BINARY = "cinder-volume"
SCHEDULER_BINARY = "cinder-scheduler"


@dataclass
class Embedded:
    settings: Settings
    db: Database
    transport: InProcessTransport
    deps: ServiceDeps
    scheduler: SchedulerManager
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


def build(settings: Settings, *, migrate: bool = True, start_ticker: bool = True) -> Embedded:
    db = Database(settings.database_url)
    if migrate:
        db.upgrade()
    db.ensure_default_type(settings.default_volume_type)
    transport = InProcessTransport(
        workers=settings.rpc_workers, call_timeout=settings.rpc_call_timeout
    )
    messages = MessageRecorder(db, settings.message_ttl)
    deps = ServiceDeps(settings=settings, db=db, transport=transport, messages=messages)
    zone = settings.storage_availability_zone
    scheduler = SchedulerManager(db, transport, messages, zones={})
    embedded = Embedded(
        settings=settings, db=db, transport=transport, deps=deps, scheduler=scheduler
    )

    def publish(backend_host: str, stats: dict[str, Any]) -> None:
        transport.cast(
            SCHEDULER_TOPIC,
            "update_service_capabilities",
            backend_host=backend_host,
            stats=stats,
            availability_zone=zone,
        )

    with db.session() as session:
        embedded._service_ids.append(
            services_repo.register(
                session, settings.host, SCHEDULER_BINARY, SCHEDULER_TOPIC, zone
            ).id
        )
    transport.serve(SCHEDULER_TOPIC, scheduler)
    for backend in settings.backends:
        host = f"{settings.host}@{backend.name}"
        with db.session() as session:
            service = services_repo.register(session, host, VOLUME_BINARY, volume_topic(host), zone)
            embedded._service_ids.append(service.id)
            service_uuid = service.uuid
        manager = VolumeManager(
            host=host,
            db=db,
            driver=load_driver(backend, host),
            messages=messages,
            publish_stats=publish,
            availability_zone=zone,
            service_uuid=service_uuid,
        )
        manager.init_host()
        transport.serve(volume_topic(host), manager)
        embedded.managers[host] = manager
    managers = embedded.managers
    deps.capabilities_of = lambda host: managers[host].capabilities if host in managers else None
    transport.drain()  # the first stats reach the scheduler before requests do
    scheduler.recover()
    embedded.app = create_app(deps)
    if start_ticker:
        embedded._ticker = threading.Thread(target=embedded._tick, name="ticker", daemon=True)
        embedded._ticker.start()
    return embedded
