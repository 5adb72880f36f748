"""The volume manager: the only code that calls a driver.

One manager per backend. It is woken by RPC casts, reads the truth from the
database, calls the driver, and records the outcome with compare-and-swap
updates. Failures of asynchronous work end in an error status and a user
message; nothing stays in a transitional status after a restart (`init_host`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cinderblock import exceptions as exc
from cinderblock.config import Settings
from cinderblock.context import RequestContext
from cinderblock.db.database import Database
from cinderblock.db.models import utcnow
from cinderblock.db.repo import claims as claims_repo
from cinderblock.db.repo import quotas as quotas_repo
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.drivers.base import (
    BaseVD,
    CloneVD,
    ExportVD,
    ExtendVD,
    RevertVD,
    SnapshotVD,
    capabilities_of,
)
from cinderblock.drivers.refs import ModelUpdate, VolumeRef
from cinderblock.services.messages import Action, Detail, MessageRecorder, Resource
from cinderblock.services.quotas import QuotaEngine
from cinderblock.states import SnapshotStatus, VolumeStatus
from cinderblock.volume.attach import AttachOps
from cinderblock.volume.manage import ManageOps
from cinderblock.volume.migrate import MigrateOps
from cinderblock.volume.recovery import recover_backend
from cinderblock.volume.refs import snapshot_ref, volume_ref
from cinderblock.volume.repair import RepairOps

LOG = logging.getLogger(__name__)

_PERSISTED_KEYS = ("provider_location", "provider_id", "provider_auth", "size")


def _persistable(update: ModelUpdate | None) -> dict[str, Any]:
    return {k: v for k, v in (update or {}).items() if k in _PERSISTED_KEYS}


def _detail_for(error: Exception) -> tuple[Detail, str | None]:
    if isinstance(error, exc.VolumeDriverNotInitialized):
        return Detail.DRIVER_NOT_INITIALIZED, None
    if isinstance(error, exc.BackendObjectNotFound):
        return Detail.BACKEND_OBJECT_MISSING, error.msg
    if isinstance(error, exc.UnsupportedOperation):
        return Detail.NOT_SUPPORTED, None
    if isinstance(error, exc.CinderblockError):
        return Detail.DRIVER_FAILED, error.msg
    return Detail.UNKNOWN_ERROR, None


class VolumeManager(ManageOps, AttachOps, RepairOps, MigrateOps):
    """Owns one backend (`host@backend`) and its driver."""

    def __init__(
        self,
        *,
        host: str,
        db: Database,
        driver: BaseVD,
        messages: MessageRecorder,
        publish_stats: Callable[[str, dict[str, Any]], None] | None = None,
        availability_zone: str = "nova",
        service_uuid: str | None = None,
        quotas: QuotaEngine | None = None,
    ) -> None:
        self.host = host
        self.db = db
        self.driver = driver
        self.messages = messages
        self.availability_zone = availability_zone
        self.service_uuid = service_uuid
        self._publish_stats = publish_stats
        # Limits for what only the manager can charge (a managed object's size).
        self.quotas = quotas or QuotaEngine(Settings())
        self.capabilities: frozenset[str] = capabilities_of(driver)
        # object id -> [lock, number of holders and waiters]; entries go when unused
        self._locks: dict[str, list[Any]] = {}
        self._locks_guard = threading.Lock()
        self._stats_timer: threading.Timer | None = None
        self.init_error: str | None = None

    # --- start-up --------------------------------------------------------------
    def init_host(self) -> None:
        """Set up the driver, then resolve whatever a previous run left in flight."""
        try:
            self.driver.do_setup()
            self.driver.check_for_setup_error()
            self.driver.set_initialized()
        except Exception as err:
            self.init_error = str(err)
            LOG.error("backend %s failed to initialise: %s", self.host, err)
            return
        recover_backend(self)
        self.ensure_exports()
        self.publish_stats(refresh=True)

    def stats(self, refresh: bool = False) -> dict[str, Any]:
        stats = dict(self.driver.get_volume_stats(refresh=refresh))
        stats["capabilities"] = sorted(self.capabilities)
        stats["filter_function"] = self.driver.get_filter_function()
        stats["goodness_function"] = self.driver.get_goodness_function()
        return stats

    def publish_stats(self, refresh: bool = False) -> None:
        if self._publish_stats is None or not self.driver.initialized:
            return
        try:
            self._publish_stats(self.host, self.stats(refresh=refresh))
        except Exception:
            LOG.exception("could not publish stats of %s", self.host)

    def stats_changed(self) -> None:
        """Publish fresh stats soon after a change (coalesced: at most once a second)."""
        with self._locks_guard:
            if self._stats_timer is not None:
                return
            self._stats_timer = threading.Timer(1.0, self._publish_changed)
            self._stats_timer.daemon = True
            self._stats_timer.start()

    def _publish_changed(self) -> None:
        with self._locks_guard:
            self._stats_timer = None
        self.publish_stats(refresh=True)

    @contextmanager
    def _locked(self, *ids: str) -> Iterator[None]:
        """Serialise work on the same objects (e.g. clone from a snapshot vs its delete)."""
        keys = sorted(set(ids))
        with self._locks_guard:
            entries = [self._locks.setdefault(key, [threading.Lock(), 0]) for key in keys]
            for entry in entries:
                entry[1] += 1
        for entry in entries:
            entry[0].acquire()
        try:
            yield
        finally:
            for entry in reversed(entries):
                entry[0].release()
            with self._locks_guard:
                for key, entry in zip(keys, entries, strict=True):
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._locks[key]

    def _require_driver(self) -> None:
        if not self.driver.initialized:
            raise exc.VolumeDriverNotInitialized()

    # --- volumes -----------------------------------------------------------------
    def create_volume(
        self,
        context: dict[str, Any],
        volume_id: str,
        request_spec: dict[str, Any] | None = None,
        host: str | None = None,
    ) -> None:
        ctx = RequestContext.from_dict(context)
        snap_ref = src_ref = None
        fresh = _new_volume_ref(volume_id, request_spec, host)
        if fresh is not None:
            # A new, empty volume described by the message: only its status is read.
            with self.db.read() as session:
                if volumes_repo.status_of(session, volume_id) != VolumeStatus.CREATING:
                    return  # already handled (duplicate delivery or recovery)
            ref, project_id = fresh, fresh.project_id
            snapshot_id = source_volid = None
        else:
            with self.db.session() as session:
                volume = volumes_repo.get(session, volume_id)
                if volume.status != VolumeStatus.CREATING:
                    return  # already handled (duplicate delivery or recovery)
                ref = volume_ref(volume)
                project_id = volume.project_id
                snapshot_id, source_volid = volume.snapshot_id, volume.source_volid
                if snapshot_id:
                    snapshot = snapshots_repo.get(session, snapshot_id)
                    source = volumes_repo.get(session, snapshot.volume_id)
                    snap_ref = snapshot_ref(snapshot, source)
                if source_volid:
                    src_ref = volume_ref(volumes_repo.get(session, source_volid))
        action = Action.CREATE_VOLUME_FROM_SOURCE if (snap_ref or src_ref) else Action.CREATE_VOLUME
        try:
            self._require_driver()
            with self._locked(volume_id, *(i for i in (snapshot_id, source_volid) if i)):
                if snap_ref is not None:
                    if not isinstance(self.driver, SnapshotVD):
                        raise exc.UnsupportedOperation(operation="snapshots")
                    update = self.driver.create_volume_from_snapshot(ref, snap_ref)
                elif src_ref is not None:
                    if not isinstance(self.driver, CloneVD):
                        raise exc.UnsupportedOperation(operation="clones")
                    update = self.driver.create_cloned_volume(ref, src_ref)
                else:
                    update = self.driver.create_volume(ref)
        except Exception as err:
            LOG.warning("create of volume %s failed: %s", volume_id, err)
            self._fail_volume(
                ctx, volume_id, project_id, VolumeStatus.CREATING, VolumeStatus.ERROR, action, err
            )
            return
        with self.db.one_statement() as session:
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.CREATING},
                {
                    "status": VolumeStatus.AVAILABLE,
                    "service_uuid": self.service_uuid,
                    "shared_targets": False,
                    **_persistable(update),
                },
            )
        if not won:
            LOG.warning("volume %s left creating while the driver worked", volume_id)
        self.stats_changed()

    def delete_volume(self, context: dict[str, Any], volume_id: str, cascade: bool = False) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            try:
                volume = volumes_repo.get(session, volume_id, bare=True)
            except exc.VolumeNotFound:
                return
            if volume.status not in (VolumeStatus.DELETING, VolumeStatus.ERROR_MANAGING_DELETING):
                return
            status = volume.status
            back_to = volume.previous_status or VolumeStatus.AVAILABLE
            project_id = volume.project_id
            ref = volume_ref(volume)
            snaps = [
                (s.id, snapshot_ref(s, volume))
                for s in snapshots_repo.of_volume(session, volume_id)
            ]
        try:
            self._require_driver()
            with self._locked(volume_id, *(sid for sid, _ in snaps)):
                if cascade and isinstance(self.driver, SnapshotVD):
                    for snap_id, sref in snaps:
                        self.driver.delete_snapshot(sref)
                        with self.db.session() as session:
                            snapshots_repo.delete_row(session, snap_id)
                if isinstance(self.driver, ExportVD):
                    self.driver.remove_export(ref)  # nothing may go on serving a deleted file
                self.driver.delete_volume(ref)
        except exc.VolumeIsBusy as err:
            # The backend still holds objects that depend on it (e.g. snapshot files we
            # do not manage): nothing was deleted, so the volume stays usable.
            self._fail_volume(
                ctx,
                volume_id,
                project_id,
                status,
                back_to,
                Action.DELETE_VOLUME,
                err,
                Detail.VOLUME_IS_BUSY,
            )
            return
        except Exception as err:
            LOG.warning("delete of volume %s failed: %s", volume_id, err)
            self._fail_volume(
                ctx,
                volume_id,
                project_id,
                status,
                VolumeStatus.ERROR_DELETING,
                Action.DELETE_VOLUME,
                err,
            )
            return
        with self.db.session() as session:
            volumes_repo.delete_row(session, volume_id)
        self.stats_changed()

    def extend_volume(self, context: dict[str, Any], volume_id: str, new_size: int) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id)
            if volume.status != VolumeStatus.EXTENDING:
                return
            ref = volume_ref(volume)
            project_id = volume.project_id
            back_to = volume.previous_status or VolumeStatus.AVAILABLE
        try:
            self._require_driver()
            if not isinstance(self.driver, ExtendVD):
                raise exc.UnsupportedOperation(operation="extend")
            with self._locked(volume_id):
                self.driver.extend_volume(ref, new_size)
                if back_to == VolumeStatus.IN_USE:
                    self.refresh_export(dataclasses.replace(ref, size=new_size))
        except Exception as err:
            LOG.warning("extend of volume %s failed: %s", volume_id, err)
            with self.db.session() as session:
                quotas_repo.rollback_reserved(session, volume_id)  # the API reserved the delta
            self._fail_volume(
                ctx,
                volume_id,
                project_id,
                VolumeStatus.EXTENDING,
                VolumeStatus.ERROR_EXTENDING,
                Action.EXTEND_VOLUME,
                err,
            )
            return
        with self.db.session() as session:
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.EXTENDING},
                {"status": back_to, "size": new_size, "previous_status": None},
            )
            # The delta the API reserved becomes usage together with the new size.
            if won:
                quotas_repo.commit_reserved(session, volume_id)
            else:
                quotas_repo.rollback_reserved(session, volume_id)
        self.stats_changed()

    def revert_to_snapshot(self, context: dict[str, Any], volume_id: str, snapshot_id: str) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id)
            snapshot = snapshots_repo.get(session, snapshot_id)
            ref, sref = volume_ref(volume), snapshot_ref(snapshot, volume)
            project_id = volume.project_id
        try:
            self._require_driver()
            if not isinstance(self.driver, RevertVD):
                raise exc.UnsupportedOperation(operation="revert to snapshot")
            with self._locked(volume_id, snapshot_id):
                if isinstance(self.driver, ExportVD):
                    self.driver.remove_export(ref)  # the revert replaces the file
                self.driver.revert_to_snapshot(ref, sref)
        except Exception as err:
            LOG.warning("revert of volume %s failed: %s", volume_id, err)
            self._fail_volume(
                ctx,
                volume_id,
                project_id,
                VolumeStatus.REVERTING,
                VolumeStatus.ERROR,
                Action.REVERT_VOLUME,
                err,
            )
            with self.db.session() as session:
                snapshots_repo.compare_and_swap(
                    session,
                    snapshot_id,
                    {"status": SnapshotStatus.RESTORING},
                    {"status": SnapshotStatus.AVAILABLE},
                )
            return
        with self.db.session() as session:
            volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.REVERTING},
                {"status": VolumeStatus.AVAILABLE},
            )
            snapshots_repo.compare_and_swap(
                session,
                snapshot_id,
                {"status": SnapshotStatus.RESTORING},
                {"status": SnapshotStatus.AVAILABLE},
            )

    def _fail_volume(
        self,
        ctx: RequestContext,
        volume_id: str,
        project_id: str,
        from_status: str,
        to_status: str,
        action: Action,
        error: Exception,
        detail: Detail | None = None,
        arg: str | None = None,
        *,
        release: bool = False,
    ) -> None:
        """Error status and the user message saying why, in one transaction; with
        `release`, also give back the manage claim and reserved quota of the work."""
        if detail is None:
            detail, arg = _detail_for(error)
        with self.db.session() as session:
            volumes_repo.compare_and_swap(
                session, volume_id, {"status": from_status}, {"status": to_status}
            )
            if release:
                claims_repo.release(session, volume_id)
                quotas_repo.rollback_reserved(session, volume_id)
            self.messages.record(
                ctx, project_id, Resource.VOLUME, volume_id, action, detail, arg, session=session
            )

    # --- snapshots ---------------------------------------------------------------
    def create_snapshot(self, context: dict[str, Any], snapshot_id: str) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            snapshot = snapshots_repo.get(session, snapshot_id)
            if snapshot.status != SnapshotStatus.CREATING:
                return
            volume = volumes_repo.get(session, snapshot.volume_id)
            sref = snapshot_ref(snapshot, volume)
            project_id = snapshot.project_id
        try:
            self._require_driver()
            if not isinstance(self.driver, SnapshotVD):
                raise exc.UnsupportedOperation(operation="snapshots")
            with self._locked(sref.volume.id, snapshot_id):
                update = self.driver.create_snapshot(sref)
        except Exception as err:
            LOG.warning("create of snapshot %s failed: %s", snapshot_id, err)
            self._fail_snapshot(
                ctx,
                snapshot_id,
                project_id,
                SnapshotStatus.CREATING,
                SnapshotStatus.ERROR,
                Action.CREATE_SNAPSHOT,
                err,
            )
            return
        values = {k: v for k, v in _persistable(update).items() if k != "size"}
        values.pop("provider_auth", None)
        with self.db.session() as session:
            snapshots_repo.compare_and_swap(
                session,
                snapshot_id,
                {"status": SnapshotStatus.CREATING},
                {"status": SnapshotStatus.AVAILABLE, "progress": "100%", **values},
            )

    def delete_snapshot(self, context: dict[str, Any], snapshot_id: str) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            try:
                snapshot = snapshots_repo.get(session, snapshot_id)
            except exc.SnapshotNotFound:
                return
            if snapshot.status != SnapshotStatus.DELETING:
                return
            volume = volumes_repo.get(session, snapshot.volume_id)
            sref = snapshot_ref(snapshot, volume)
            project_id = snapshot.project_id
        try:
            self._require_driver()
            if not isinstance(self.driver, SnapshotVD):
                raise exc.UnsupportedOperation(operation="snapshots")
            with self._locked(sref.volume.id, snapshot_id):
                self.driver.delete_snapshot(sref)
        except exc.SnapshotIsBusy as err:
            # Dependent volumes still share its data: it stays usable, and the user is told.
            self._fail_snapshot(
                ctx,
                snapshot_id,
                project_id,
                SnapshotStatus.DELETING,
                SnapshotStatus.AVAILABLE,
                Action.DELETE_SNAPSHOT,
                err,
                Detail.SNAPSHOT_IS_BUSY,
            )
            return
        except Exception as err:
            LOG.warning("delete of snapshot %s failed: %s", snapshot_id, err)
            self._fail_snapshot(
                ctx,
                snapshot_id,
                project_id,
                SnapshotStatus.DELETING,
                SnapshotStatus.ERROR_DELETING,
                Action.DELETE_SNAPSHOT,
                err,
            )
            return
        with self.db.session() as session:
            snapshots_repo.delete_row(session, snapshot_id)

    def _fail_snapshot(
        self,
        ctx: RequestContext,
        snapshot_id: str,
        project_id: str,
        from_status: str,
        to_status: str,
        action: Action,
        error: Exception,
        detail: Detail | None = None,
        arg: str | None = None,
        *,
        release: bool = False,
    ) -> None:
        """Error status and the user message saying why, in one transaction; with
        `release`, also give back the manage claim and reserved quota of the work."""
        if detail is None:
            detail, arg = _detail_for(error)
        with self.db.session() as session:
            snapshots_repo.compare_and_swap(
                session, snapshot_id, {"status": from_status}, {"status": to_status}
            )
            if release:
                claims_repo.release(session, snapshot_id)
                quotas_repo.rollback_reserved(session, snapshot_id)
            self.messages.record(
                ctx,
                project_id,
                Resource.SNAPSHOT,
                snapshot_id,
                action,
                detail,
                arg,
                session=session,
            )

    # --- queries -----------------------------------------------------------------
    def get_stats(self, refresh: bool = False) -> dict[str, Any]:
        return self.stats(refresh=refresh)

    def ping(self) -> str:
        return utcnow().isoformat()


def _new_volume_ref(
    volume_id: str, request_spec: dict[str, Any] | None, host: str | None
) -> VolumeRef | None:
    """The driver's view of a new empty volume from the scheduler's message; None when the
    message does not describe one (recovery, sources to copy: the row is read then)."""
    if request_spec is None or host is None:
        return None
    props = request_spec.get("volume") or {}
    if props.get("id") != volume_id or props.get("snapshot_id") or props.get("source_volid"):
        return None
    return VolumeRef(
        id=volume_id,
        size=int(request_spec["size"]),
        project_id=str(props.get("project_id") or ""),
        host=host,
        volume_type_id=props.get("volume_type_id"),
        extra_specs=dict(request_spec.get("extra_specs") or {}),
    )
