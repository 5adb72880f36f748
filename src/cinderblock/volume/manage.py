"""Manager half of managing existing storage: adopt, give back, list.

Mixed into VolumeManager, so these are RPC methods of the volume service.
Flow of a volume: managing -> get size -> type check -> manage -> available;
any failure -> error_managing plus a user message saying why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.repo import claims as claims_repo
from cinderblock.db.repo import quotas as quotas_repo
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.drivers.base import ManageableSnapshotsVD, ManageableVD
from cinderblock.drivers.refs import ModelUpdate, VolumeRef
from cinderblock.services.messages import Action, Detail
from cinderblock.services.quotas import snapshot_deltas, volume_deltas
from cinderblock.states import SnapshotStatus, VolumeStatus
from cinderblock.volume.refs import snapshot_ref, volume_ref

if TYPE_CHECKING:
    from cinderblock.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)


def _manage_detail(error: Exception) -> tuple[Detail, str | None]:
    if isinstance(error, exc.QuotaError):
        return Detail.OVER_QUOTA, error.reason
    if isinstance(error, exc.ManageExistingInvalidReference):
        return Detail.INVALID_REFERENCE, str(error.kwargs.get("reason") or error.msg)
    if isinstance(error, exc.ManageExistingVolumeTypeMismatch):
        return Detail.TYPE_MISMATCH, str(error.kwargs.get("reason") or error.msg)
    if isinstance(error, exc.VolumeDriverNotInitialized):
        return Detail.DRIVER_NOT_INITIALIZED, None
    if isinstance(error, exc.CinderblockError):
        return Detail.DRIVER_FAILED, error.msg
    return Detail.UNKNOWN_ERROR, None


class ManageOps:
    """RPC methods for manage/unmanage; `self` is the VolumeManager."""

    def _manageable_driver(self: VolumeManager) -> ManageableVD:
        self._require_driver()
        if not isinstance(self.driver, ManageableVD):
            raise exc.UnsupportedOperation(operation="managing existing volumes")
        return self.driver

    def _snapshot_manageable_driver(self: VolumeManager) -> ManageableSnapshotsVD:
        self._require_driver()
        if not isinstance(self.driver, ManageableSnapshotsVD):
            raise exc.UnsupportedOperation(operation="managing existing snapshots")
        return self.driver

    def _reserve_managed_size(
        self: VolumeManager,
        object_id: str,
        project_id: str,
        size: int,
        type_name: str | None,
        *,
        snapshot: bool,
    ) -> None:
        """Reserve the gigabytes of an object being adopted, now that its size is known and
        before the driver adopts it; over quota (or over per_volume_gigabytes) raises.
        `size` is what is still to reserve (a snapshot's row was charged its volume's size).

        The row lock under its status makes this and a forced delete of the row
        exclusive: a reservation is never left for a row that is gone."""
        if size <= 0 and snapshot:
            return
        self.quotas.prepare(self.db, project_id)
        with self.db.session() as session:
            if snapshot:
                alive = snapshots_repo.compare_and_swap(
                    session, object_id, {"status": SnapshotStatus.CREATING}, {}
                )
                deltas = snapshot_deltas(size, type_name, count=0)
            else:
                alive = volumes_repo.compare_and_swap(
                    session, object_id, {"status": VolumeStatus.MANAGING}, {}
                )
                self.quotas.check_volume_size(session, project_id, size)
                deltas = volume_deltas(size, type_name, count=0)
            if not alive:
                raise exc.CinderblockError("The object's status changed during the manage.")
            self.quotas.charge(
                session,
                project_id,
                object_id,
                deltas,
                kind="snapshots" if snapshot else "volumes",
                requested=size,
                reserve=True,
            )

    def _check_manage(self: VolumeManager, ref: VolumeRef, existing_ref: dict[str, Any]) -> int:
        """Everything manage checks before touching anything; returns the size in GiB."""
        driver = self._manageable_driver()
        self.driver.check_type_compatible(ref)
        return int(driver.manage_existing_get_size(ref, existing_ref))

    # --- volumes -------------------------------------------------------------------
    def check_manage_existing(
        self: VolumeManager,
        volume_type_id: str | None,
        extra_specs: dict[str, str],
        existing_ref: dict[str, Any],
    ) -> dict[str, Any]:
        """Dry run: the checks of manage_existing, changing nothing."""
        probe = VolumeRef(
            id="00000000-0000-0000-0000-000000000000",
            size=0,
            volume_type_id=volume_type_id,
            extra_specs=extra_specs,
        )
        try:
            size = self._check_manage(probe, existing_ref)
        except exc.CinderblockError as err:
            detail, arg = _manage_detail(err)
            text = detail.value[1] % arg if "%s" in detail.value[1] else detail.value[1]
            return {"ok": False, "reason": text}
        return {"ok": True, "size": size}

    def manage_existing(
        self: VolumeManager, context: dict[str, Any], volume_id: str, existing_ref: dict[str, Any]
    ) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id)
            if volume.status != VolumeStatus.MANAGING:
                return
            ref = volume_ref(volume)
            project_id = volume.project_id
            type_name = volume.volume_type.name
        try:
            with self._locked(volume_id):
                size = self._check_manage(ref, existing_ref)
                self._reserve_managed_size(volume_id, project_id, size, type_name, snapshot=False)
                sized = dataclasses.replace(ref, size=size)
                update: ModelUpdate = (
                    self._manageable_driver().manage_existing(sized, existing_ref) or {}
                )
        except Exception as err:
            LOG.warning("manage of %s as volume %s failed: %s", existing_ref, volume_id, err)
            self._fail_volume(
                ctx,
                volume_id,
                project_id,
                VolumeStatus.MANAGING,
                VolumeStatus.ERROR_MANAGING,
                Action.MANAGE_VOLUME,
                err,
                *_manage_detail(err),
                release=True,
            )
            return
        values: dict[str, Any] = {
            k: update[k]
            for k in ("provider_location", "provider_id", "provider_auth")  # type: ignore[literal-required]
            if k in update
        }
        if ref.host and "#" not in ref.host:
            values["host"] = f"{ref.host}#{self.driver.get_pool(ref)}"
        final_size = int(update.get("size", size))
        with self.db.session() as session:
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.MANAGING},
                {
                    "status": VolumeStatus.AVAILABLE,
                    "size": final_size,
                    "service_uuid": self.service_uuid,
                    "shared_targets": False,
                    **values,
                },
            )
            if won:
                # The reserved gigabytes become usage with the size; a driver that
                # reported another size while adopting is charged that size.
                quotas_repo.commit_reserved(session, volume_id)
                quotas_repo.apply(
                    session,
                    project_id,
                    volume_id,
                    volume_deltas(final_size - size, type_name, count=0),
                )
            else:
                quotas_repo.rollback_reserved(session, volume_id)
            volumes_repo.set_admin_metadata(session, volume_id, update.get("admin_metadata") or {})
            claims_repo.release(session, volume_id)
        self.stats_changed()

    def unmanage_volume(self: VolumeManager, context: dict[str, Any], volume_id: str) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            try:
                volume = volumes_repo.get(session, volume_id)
            except exc.VolumeNotFound:
                return
            if volume.status != VolumeStatus.UNMANAGING:
                return
            ref = volume_ref(volume)
            project_id = volume.project_id
        try:
            with self._locked(volume_id):
                self._manageable_driver().unmanage(ref)
        except Exception as err:
            LOG.warning("unmanage of volume %s failed: %s", volume_id, err)
            self._fail_volume(
                ctx,
                volume_id,
                project_id,
                VolumeStatus.UNMANAGING,
                VolumeStatus.ERROR_UNMANAGING,
                Action.UNMANAGE_VOLUME,
                err,
                *_manage_detail(err),
            )
            return
        with self.db.session() as session:
            volumes_repo.delete_row(session, volume_id)

    def get_manageable_volumes(
        self: VolumeManager,
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[dict[str, Any]]:
        driver = self._manageable_driver()
        with self.db.session() as session:
            ours = [volume_ref(v) for v in volumes_repo.all_on_host(session, self.host)]
        return [
            dict(e)
            for e in driver.get_manageable_volumes(
                ours, marker, limit, offset, list(sort_keys), list(sort_dirs)
            )
        ]

    # --- snapshots -----------------------------------------------------------------
    def manage_existing_snapshot(
        self: VolumeManager,
        context: dict[str, Any],
        snapshot_id: str,
        existing_ref: dict[str, Any],
    ) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            snapshot = snapshots_repo.get(session, snapshot_id)
            if snapshot.status != SnapshotStatus.CREATING:
                return
            parent = volumes_repo.get(session, snapshot.volume_id)
            sref = snapshot_ref(snapshot, parent)
            project_id = snapshot.project_id
            type_name = parent.volume_type.name
            charged = snapshot.volume_size  # by the API, with the row
        try:
            driver = self._snapshot_manageable_driver()
            with self._locked(sref.volume.id, snapshot_id):
                size = int(driver.manage_existing_snapshot_get_size(sref, existing_ref))
                self._reserve_managed_size(
                    snapshot_id, project_id, size - charged, type_name, snapshot=True
                )
                update: ModelUpdate = driver.manage_existing_snapshot(sref, existing_ref) or {}
        except Exception as err:
            LOG.warning("manage of %s as snapshot %s failed: %s", existing_ref, snapshot_id, err)
            self._fail_snapshot(
                ctx,
                snapshot_id,
                project_id,
                SnapshotStatus.CREATING,
                SnapshotStatus.ERROR,
                Action.MANAGE_SNAPSHOT,
                err,
                *_manage_detail(err),
                release=True,
            )
            return
        values = {
            k: update[k]
            for k in ("provider_location", "provider_id")  # type: ignore[literal-required]
            if k in update
        }
        with self.db.session() as session:
            won = snapshots_repo.compare_and_swap(
                session,
                snapshot_id,
                {"status": SnapshotStatus.CREATING},
                {
                    "status": SnapshotStatus.AVAILABLE,
                    "progress": "100%",
                    "volume_size": size,
                    **values,
                },
            )
            if won:
                # The charge becomes the real size: a reserved increase is committed,
                # a smaller object gives the difference back.
                quotas_repo.commit_reserved(session, snapshot_id)
                if size < charged:
                    quotas_repo.apply(
                        session,
                        project_id,
                        snapshot_id,
                        snapshot_deltas(size - charged, type_name, count=0),
                    )
            else:
                quotas_repo.rollback_reserved(session, snapshot_id)
            claims_repo.release(session, snapshot_id)

    def unmanage_snapshot(self: VolumeManager, context: dict[str, Any], snapshot_id: str) -> None:
        ctx = RequestContext.from_dict(context)
        with self.db.session() as session:
            try:
                snapshot = snapshots_repo.get(session, snapshot_id)
            except exc.SnapshotNotFound:
                return
            if snapshot.status != SnapshotStatus.UNMANAGING:
                return
            sref = snapshot_ref(snapshot, volumes_repo.get(session, snapshot.volume_id))
            project_id = snapshot.project_id
        try:
            driver = self._snapshot_manageable_driver()
            with self._locked(sref.volume.id, snapshot_id):
                driver.unmanage_snapshot(sref)
        except Exception as err:
            LOG.warning("unmanage of snapshot %s failed: %s", snapshot_id, err)
            self._fail_snapshot(
                ctx,
                snapshot_id,
                project_id,
                SnapshotStatus.UNMANAGING,
                SnapshotStatus.ERROR,
                Action.UNMANAGE_SNAPSHOT,
                err,
                *_manage_detail(err),
            )
            return
        with self.db.session() as session:
            snapshots_repo.delete_row(session, snapshot_id)

    def get_manageable_snapshots(
        self: VolumeManager,
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[dict[str, Any]]:
        driver = self._snapshot_manageable_driver()
        with self.db.session() as session:
            ours = []
            for volume in volumes_repo.all_on_host(session, self.host):
                for snapshot in snapshots_repo.of_volume(session, volume.id):
                    ours.append(snapshot_ref(snapshot, volume))
        return [
            dict(e)
            for e in driver.get_manageable_snapshots(
                ours, marker, limit, offset, list(sort_keys), list(sort_dirs)
            )
        ]
