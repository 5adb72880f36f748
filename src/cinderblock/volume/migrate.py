"""Manager half of volume migration (os-migrate_volume), run by the SOURCE backend.

migration_status: starting (API) -> migrating (here, before the driver moves
anything) -> success | error. Only driver-assisted migration exists: a driver that
is not a MigrateVD, or that answers moved=False for the destination, fails the
migration; so does force_host_copy (no generic host copy here). A failure leaves the
volume where it was (host, provider_location untouched) with migration_status error,
its status back to what it was, and a user message saying why.

The destination is kept in admin metadata while migrating so that start-up
recovery can ask the driver which backend really holds the volume.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.repo import services as services_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.drivers.base import MigrateVD
from cinderblock.drivers.refs import ModelUpdate
from cinderblock.services.messages import Action, Detail, Resource
from cinderblock.states import VolumeStatus
from cinderblock.volume.refs import volume_ref

if TYPE_CHECKING:
    from cinderblock.drivers.refs import VolumeRef
    from cinderblock.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)

DEST_KEY = "migration_destination"
DEST_LOCATION_KEY = "migration_destination_location"
VOLUME_BINARY = "cinder-volume"
_ROW_KEYS = ("provider_location", "provider_id", "provider_auth")
_CLEARED = {DEST_KEY: "", DEST_LOCATION_KEY: ""}


class MigrationRefused(exc.DriverError):
    message_template = "%(reason)s"


def _detail_for(error: Exception) -> tuple[Detail, str | None]:
    if isinstance(error, exc.VolumeDriverNotInitialized):
        return Detail.DRIVER_NOT_INITIALIZED, None
    if isinstance(error, exc.CinderblockError):
        return Detail.DRIVER_FAILED, error.msg
    return Detail.UNKNOWN_ERROR, None


def restored_status(status: str, previous: str | None) -> str:
    """A volume locked in maintenance for the migration gets its status back."""
    if status == VolumeStatus.MAINTENANCE:
        return previous or VolumeStatus.AVAILABLE
    return status


def finish_values(
    manager: VolumeManager, dest_host: str, update: ModelUpdate | None
) -> dict[str, Any]:
    """Row values of a volume the destination now holds."""
    values: dict[str, Any] = {
        k: update[k]  # type: ignore[literal-required]
        for k in _ROW_KEYS
        if update and k in update
    }
    values["host"] = dest_host
    with manager.db.read() as session:
        service = services_repo.get_by_host(session, dest_host.partition("#")[0], VOLUME_BINARY)
        values["service_uuid"] = getattr(service, "uuid", None) if service else None
    return values


def complete(
    manager: VolumeManager, volume_id: str, dest_host: str, update: ModelUpdate | None
) -> bool:
    """Record the move: the row follows the data to the destination, in one update."""
    values = finish_values(manager, dest_host, update)
    with manager.db.session() as session:
        volume = volumes_repo.get(session, volume_id)
        won = volumes_repo.compare_and_swap(
            session,
            volume_id,
            {"migration_status": "migrating", "host": volume.host},
            {
                **values,
                "migration_status": "success",
                "status": restored_status(volume.status, volume.previous_status),
            },
        )
        if won:
            volumes_repo.set_admin_metadata(session, volume_id, _CLEARED)
    return won


def fail(
    manager: VolumeManager,
    ctx: RequestContext,
    volume_id: str,
    from_migration: str,
    error: Exception,
) -> None:
    """migration_status error, status back, and the user message, in one transaction."""
    detail, arg = _detail_for(error)
    with manager.db.session() as session:
        volume = volumes_repo.get(session, volume_id)
        won = volumes_repo.compare_and_swap(
            session,
            volume_id,
            {"migration_status": from_migration},
            {
                "migration_status": "error",
                "status": restored_status(volume.status, volume.previous_status),
            },
        )
        if won:
            volumes_repo.set_admin_metadata(session, volume_id, _CLEARED)
            manager.messages.record(
                ctx,
                volume.project_id,
                Resource.VOLUME,
                volume_id,
                Action.MIGRATE_VOLUME,
                detail,
                arg,
                session=session,
            )


class MigrateOps:
    """RPC method of the source volume service; `self` is the VolumeManager."""

    def migrate_volume(
        self: VolumeManager,
        context: dict[str, Any],
        volume_id: str,
        host: dict[str, Any],
        force_host_copy: bool = False,
    ) -> None:
        ctx = RequestContext.from_dict(context)
        dest = str(host.get("host") or "")
        with self.db.session() as session:
            try:
                volume = volumes_repo.get(session, volume_id)
            except exc.VolumeNotFound:
                return
            # migrating first: from here recovery asks the driver where the data is.
            if not volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"migration_status": "starting", "host": volume.host},
                {"migration_status": "migrating"},
            ):
                return  # already handled (duplicate delivery or recovery)
            location = str((host.get("capabilities") or {}).get("location_info") or "")
            volumes_repo.set_admin_metadata(
                session, volume_id, {DEST_KEY: dest, DEST_LOCATION_KEY: location}
            )
            ref = volume_ref(volume)
        try:
            moved, update = self._migrate_on_driver(ref, host, force_host_copy)
        except Exception as err:
            LOG.warning("migration of volume %s to %s failed: %s", volume_id, dest, err)
            fail(self, ctx, volume_id, "migrating", err)
            return
        if not moved:
            fail(
                self,
                ctx,
                volume_id,
                "migrating",
                MigrationRefused(
                    reason=f"the {self.driver.backend_name} backend cannot move the volume to "
                    f"{dest} (different storage) and there is no host-assisted copy"
                ),
            )
            return
        if not complete(self, volume_id, dest, update):
            LOG.error("volume %s moved to %s but its row changed meanwhile", volume_id, dest)
        self.stats_changed()

    def _migrate_on_driver(
        self: VolumeManager, ref: VolumeRef, host: dict[str, Any], force_host_copy: bool
    ) -> tuple[bool, ModelUpdate | None]:
        self._require_driver()
        if force_host_copy:
            raise MigrationRefused(
                reason="force_host_copy asks for a host-assisted copy, which is not supported"
            )
        if not isinstance(self.driver, MigrateVD):
            raise MigrationRefused(
                reason=f"the {self.driver.backend_name} backend cannot migrate volumes"
            )
        with self._locked(ref.id):
            return self.driver.migrate_volume(ref, host)


def recover_migrations(manager: VolumeManager) -> None:
    """Migrations a crash interrupted on this (source) backend: ask the driver which
    backend holds the volume. The destination holds it under its final name: drivers
    put it there only once the copy is complete, so the move is finished (a source
    copy still there is deleted) and the row follows. Otherwise (starting, or only
    the source holds it) the migration failed and the volume stays where it was."""
    ctx = RequestContext.admin()
    with manager.db.session() as session:
        found = [
            (v.id, v.migration_status, volume_ref(v))
            for v in volumes_repo.all_on_host(session, manager.host)
            if v.migration_status in ("starting", "migrating")
        ]
    for volume_id, migration_status, ref in found:
        LOG.info("recovering the migration of volume %s from %s", volume_id, migration_status)
        dest = ref.admin_metadata.get(DEST_KEY) or ""
        host = {
            "host": dest,
            "capabilities": {"location_info": ref.admin_metadata.get(DEST_LOCATION_KEY) or ""},
        }
        driver = manager.driver
        try:
            moved = (
                migration_status == "migrating"
                and bool(dest)
                and isinstance(driver, MigrateVD)
                and driver.migration_destination_holds(ref, host)
            )
            if moved and driver.volume_exists(ref):
                driver.delete_volume(ref)  # the crash came between the copy and this
        except Exception:
            LOG.exception("could not tell where volume %s is", volume_id)
            moved = False
        if moved and complete(manager, volume_id, dest, None):
            continue
        fail(manager, ctx, volume_id, str(migration_status), MigrationInterrupted())


class MigrationInterrupted(exc.DriverError):
    message_template = "the migration was interrupted by a service restart"
