"""Volume migration, API and scheduler side (the source volume service's half is
volume/migrate.py).

API: Cinder's checks (status, snapshots, not already migrating, a different live
destination), then migration_status `starting` by compare-and-swap (status
`maintenance` too with lock_volume) and a cast to the scheduler. Scheduler: the
destination is checked with the placement filters, as for manage, then the source
volume service is told where to move the volume, with the destination pool's stats
(their `location_info` tells the source driver whether it can reach it).

In-use volumes are refused: no driver here can move a volume while it is attached.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cinderblock import exceptions as exc
from cinderblock.api import validation as v
from cinderblock.context import RequestContext
from cinderblock.db.repo import services as services_repo
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import types as types_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.scheduler.filters import RequestSpec, refusals
from cinderblock.scheduler.manager import SCHEDULER_TOPIC, volume_properties, volume_topic
from cinderblock.services.common import ServiceDeps, backend_of
from cinderblock.services.messages import Action, Detail, Resource
from cinderblock.services.policy import authorize
from cinderblock.states import MIGRATION_IDLE, VolumeStatus

if TYPE_CHECKING:
    from cinderblock.scheduler.manager import SchedulerManager

LOG = logging.getLogger(__name__)

POLICY = "volume_extension:volume_admin_actions:migrate_volume"
VOLUME_BINARY = "cinder-volume"
ACTIVE = ("starting", "migrating", "completing")
# migration_status values a new migration may start from.
_MAY_START = MIGRATION_IDLE

_ARGS: dict[str, Any] = {
    "host": {"type": "string", "minLength": 1, "maxLength": 255},
    "force_host_copy": v.boolean,
    "lock_volume": v.boolean,
}


def _schema(with_cluster: bool) -> dict[str, Any]:
    args = dict(_ARGS)
    if with_cluster:
        args["cluster"] = {"type": "string", "minLength": 1, "maxLength": 255}
    return {
        "type": "object",
        "properties": {
            "os-migrate_volume": {
                "type": "object",
                "properties": args,
                "additionalProperties": False,
                **({} if with_cluster else {"required": ["host"]}),
            }
        },
        "required": ["os-migrate_volume"],
        "additionalProperties": False,
    }


SCHEMA = _schema(with_cluster=False)
SCHEMA_3_16 = _schema(with_cluster=True)


class InvalidHost(exc.Invalid):
    message_template = "Invalid host: %(reason)s"


class MigrateService:
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps
        self.db = deps.db

    def migrate(
        self, ctx: RequestContext, volume_id: str, body: dict[str, Any], *, clusters: bool
    ) -> None:
        v.validate(SCHEMA_3_16 if clusters else SCHEMA, body)
        args = body["os-migrate_volume"]
        host, cluster = args.get("host"), args.get("cluster")
        if (host is None) == (cluster is None):
            raise exc.InvalidInput(reason="Only one of host or cluster must be set.")
        if cluster is not None:  # no clusters here, as for manage: never found
            raise InvalidHost(reason=f"No available service named '{cluster}'")
        dest = str(host)
        force_host_copy = v.to_bool(args.get("force_host_copy", False))
        lock_volume = v.to_bool(args.get("lock_volume", False))
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id)
            authorize(ctx, POLICY, volume)
            self._check(session, volume, dest)
            values: dict[str, Any] = {"migration_status": "starting"}
            if lock_volume:
                values.update(status=VolumeStatus.MAINTENANCE, previous_status=volume.status)
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {
                    "status": volume.status,
                    "host": volume.host,
                    "migration_status": list(_MAY_START),
                },
                values,
                no_snapshots=True,
            )
            if not won:  # changed since it was read: the same checks say why
                self._check(session, volumes_repo.get(session, volume_id), dest)
                raise exc.InvalidVolume(reason="The volume changed while the request ran.")
        self.deps.transport.cast(
            SCHEDULER_TOPIC,
            "migrate_volume",
            context=ctx.to_dict(),
            volume_id=volume_id,
            host=dest,
            force_host_copy=force_host_copy,
        )

    def _check(self, session: Any, volume: Any, dest: str) -> None:
        """Cinder's refusals, all 400, in Cinder's order."""
        if volume.status not in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE):
            raise exc.InvalidVolume(
                reason=f"Volume {volume.id} status must be available or in-use, but current "
                f"status is: {volume.status}."
            )
        if volume.status == VolumeStatus.IN_USE:
            raise exc.InvalidVolume(
                reason=f"Volume {volume.id} is in-use: migrating an attached volume is not "
                "supported; detach it first."
            )
        if volume.migration_status in ACTIVE:
            raise exc.InvalidVolume(
                reason=f"Volume {volume.id} is already part of an active migration."
            )
        if snapshots_repo.of_volume(session, volume.id):
            raise exc.InvalidVolume(reason=f"Volume {volume.id} must not have snapshots.")
        if volume.host is None:
            raise exc.InvalidVolume(reason="The volume is not on any backend.")
        service = services_repo.get_by_host(session, backend_of(dest), VOLUME_BINARY)
        if (
            service is None
            or service.disabled
            or not services_repo.is_up(service, self.deps.settings.service_down_time)
        ):
            raise InvalidHost(reason=f"No available service named '{dest}'")
        same = volume.host == dest if "#" in dest else backend_of(volume.host) == dest
        if same:
            raise InvalidHost(reason="Destination host must be different than the current host.")


# --- scheduler side ---------------------------------------------------------------------
def _destination_pool(
    scheduler: SchedulerManager, spec: RequestSpec, dest: str
) -> tuple[str, dict[str, Any]] | None:
    """The pool the volume goes to (the named one, or the backend's first that fits)."""
    backend, _, pool_name = dest.partition("#")
    with scheduler._lock:
        for pool in sorted(scheduler._pools.values(), key=lambda p: p.name):
            if pool.backend_host != backend or (pool_name and pool.pool_name != pool_name):
                continue
            if not refusals(pool, spec):
                return pool.name, dict(pool.capabilities)
    return None


def schedule_migration(
    scheduler: SchedulerManager,
    context: dict[str, Any],
    volume_id: str,
    host: str,
    force_host_copy: bool,
) -> None:
    ctx = RequestContext.from_dict(context)
    with scheduler.db.read() as session:
        volume = volumes_repo.get(session, volume_id)
        if volume.migration_status != "starting" or not volume.host:
            return
        specs = types_repo.extra_specs_of(volume.volume_type)
        spec = RequestSpec(
            size=volume.size,
            extra_specs={k: val for k, val in specs.items() if val is not None},
            availability_zone=volume.availability_zone,
            volume=volume_properties(volume),
        )
        source, project_id = volume.host, volume.project_id
    reasons = scheduler.check_backend(spec, host)
    chosen = None if reasons else _destination_pool(scheduler, spec, host)
    if chosen is None:
        why = "; ".join(reasons or [f"no pool of {host} fits"])
        LOG.info("migration of %s to %s refused: %s", volume_id, host, why)
        with scheduler.db.session() as session:
            current = volumes_repo.get(session, volume_id)
            back = current.status
            if back == VolumeStatus.MAINTENANCE:
                back = current.previous_status or VolumeStatus.AVAILABLE
            if volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"migration_status": "starting"},
                {"migration_status": "error", "status": back},
            ):
                scheduler.messages.record(
                    ctx,
                    project_id,
                    Resource.VOLUME,
                    volume_id,
                    Action.MIGRATE_VOLUME,
                    Detail.DESTINATION_REFUSED,
                    why,
                    session=session,
                )
        return
    pool_name, capabilities = chosen
    scheduler.transport.cast(
        volume_topic(backend_of(source)),
        "migrate_volume",
        context=context,
        volume_id=volume_id,
        host={"host": pool_name, "capabilities": capabilities},
        force_host_copy=force_host_copy,
    )
