"""Start-up recovery: nothing a crash interrupted stays in a transitional status.

The backend is asked what really exists; work whose result is on the backend is
finished, deletes and unmanages are redone (they are idempotent), anything else
goes to its error status with a user message. No user data is deleted here
except by redoing a delete the user asked for.

A manage cut short is told apart from a create by its claim (manage_claims
keeps the adopted reference until the manage ends): when the driver had
adopted the object, the manage is finished with the reference as provider_id,
so a later unmanage gives the object back its name; otherwise it fails. Either
way the claim is released, or the reference could never be managed again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from cinderblock.context import RequestContext
from cinderblock.db.models import ManageClaim
from cinderblock.db.repo import claims as claims_repo
from cinderblock.db.repo import quotas as quotas_repo
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.drivers.base import ManageableSnapshotsVD, ManageableVD, SnapshotVD
from cinderblock.drivers.refs import SnapshotRef, VolumeRef
from cinderblock.services.messages import Action, Detail, Resource
from cinderblock.services.quotas import settle_snapshot_gigabytes, volume_deltas
from cinderblock.states import (
    SNAPSHOT_TRANSITIONAL,
    VOLUME_TRANSITIONAL,
    SnapshotStatus,
    VolumeStatus,
)
from cinderblock.volume.migrate import recover_migrations
from cinderblock.volume.refs import snapshot_ref, volume_ref

if TYPE_CHECKING:
    from cinderblock.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)

# Interrupted work that cannot be proven complete: status it ends in, and why.
_VOLUME_FAILED = {
    VolumeStatus.EXTENDING: (VolumeStatus.ERROR_EXTENDING, Action.EXTEND_VOLUME),
    VolumeStatus.MANAGING: (VolumeStatus.ERROR_MANAGING, Action.MANAGE_VOLUME),
    VolumeStatus.REVERTING: (VolumeStatus.ERROR, Action.REVERT_VOLUME),
}
# states.SNAPSHOT_TRANSITIONAL lacks unmanaging: an interrupted snapshot unmanage
# would stay unmanaging forever.
_SNAPSHOT_IN_FLIGHT = (*SNAPSHOT_TRANSITIONAL, SnapshotStatus.UNMANAGING)


def claimed_reference(session: Session, resource_id: str) -> str | None:
    """The reference an unfinished manage of this volume or snapshot is adopting."""
    stmt = select(ManageClaim.reference).where(ManageClaim.resource_id == resource_id)
    return session.scalars(stmt).first()


def recover_backend(manager: VolumeManager) -> None:
    ctx = RequestContext.admin()
    context = ctx.to_dict()
    with manager.db.session() as session:
        volumes = [
            (v.id, v.status, v.project_id, volume_ref(v))
            for v in volumes_repo.ids_on_host(session, manager.host, VOLUME_TRANSITIONAL)
        ]
        snapshots = []
        for s in snapshots_repo.on_host(session, manager.host, _SNAPSHOT_IN_FLIGHT):
            parent = volumes_repo.get(session, s.volume_id)
            snapshots.append(
                (
                    s.id,
                    s.status,
                    s.project_id,
                    snapshot_ref(s, parent),
                    claimed_reference(session, s.id),
                )
            )
    for snapshot_id, status, project_id, sref, claimed in snapshots:
        LOG.info("recovering snapshot %s from %s", snapshot_id, status)
        if status == SnapshotStatus.DELETING:
            manager.delete_snapshot(context, snapshot_id)
        elif status == SnapshotStatus.UNMANAGING:
            # Giving the object back changes no data and is idempotent: redo it.
            manager.unmanage_snapshot(context, snapshot_id)
        elif status == SnapshotStatus.CREATING:
            done = isinstance(manager.driver, SnapshotVD) and manager.driver.snapshot_exists(sref)
            to = SnapshotStatus.AVAILABLE if done else SnapshotStatus.ERROR
            values = {"status": to, "progress": "100%" if done else None}
            if done and claimed is not None:
                values.update(adopted_snapshot_values(manager, sref, claimed))
            with manager.db.session() as session:
                snapshots_repo.compare_and_swap(session, snapshot_id, {"status": status}, values)
                claims_repo.release(session, snapshot_id)
                # Gigabytes reserved by an interrupted manage of a snapshot: kept and
                # matched to the size found if it is done, given back otherwise.
                if done:
                    quotas_repo.commit_reserved(session, snapshot_id)
                    settle_snapshot_gigabytes(session, snapshot_id)
                else:
                    quotas_repo.rollback_reserved(session, snapshot_id)
            if not done:
                manager.messages.record(
                    ctx,
                    project_id,
                    Resource.SNAPSHOT,
                    snapshot_id,
                    Action.CREATE_SNAPSHOT if claimed is None else Action.MANAGE_SNAPSHOT,
                    Detail.INTERRUPTED,
                )
        elif status == SnapshotStatus.RESTORING:
            with manager.db.session() as session:
                snapshots_repo.compare_and_swap(
                    session, snapshot_id, {"status": status}, {"status": SnapshotStatus.AVAILABLE}
                )
    for volume_id, status, project_id, ref in volumes:
        LOG.info("recovering volume %s from %s", volume_id, status)
        if status in (VolumeStatus.DELETING, VolumeStatus.ERROR_MANAGING_DELETING):
            manager.delete_volume(context, volume_id, cascade=True)
            continue
        if status == VolumeStatus.UNMANAGING:
            # Redone rather than failed: error_unmanaging can be neither retried nor
            # deleted, and the object may already be back under its original name.
            manager.unmanage_volume(context, volume_id)
            continue
        if status == VolumeStatus.CREATING:
            # Drivers build new objects under a temporary name and rename at the end,
            # so an object that exists is complete; otherwise the create is redone.
            if not manager.driver.volume_exists(ref):
                manager.create_volume(context, volume_id)
                continue
            to, done, action = VolumeStatus.AVAILABLE, True, Action.CREATE_VOLUME
        elif status == VolumeStatus.MANAGING and finish_manage(manager, volume_id, ref):
            continue
        else:
            to, action = _VOLUME_FAILED[VolumeStatus(status)]
            done = False
        with manager.db.session() as session:
            volumes_repo.compare_and_swap(session, volume_id, {"status": status}, {"status": to})
            claims_repo.release(session, volume_id)
            # An interrupted extend or manage gives back what it had reserved (a create
            # reserves nothing: its charge is usage from the start).
            quotas_repo.rollback_reserved(session, volume_id)
        if not done:
            manager.messages.record(
                ctx, project_id, Resource.VOLUME, volume_id, action, Detail.INTERRUPTED
            )
    # Migrations keep the volume's status (or maintenance): found by migration_status.
    recover_migrations(manager)


def adopted_snapshot_values(
    manager: VolumeManager, sref: SnapshotRef, claimed: str
) -> dict[str, object]:
    """Row values of a snapshot whose manage the driver had completed (its object exists)."""
    values: dict[str, object] = {"provider_id": claimed}
    driver = manager.driver
    if isinstance(driver, ManageableSnapshotsVD):
        # Our drivers name an adopted snapshot <volume object>@<snapshot name>, as the
        # volume case relies on an adopted volume being named ref.name.
        name = f"{sref.volume.provider_location or sref.volume.name}@{sref.name}"
        try:
            values["volume_size"] = int(
                driver.manage_existing_snapshot_get_size(sref, {"source-name": name})
            )
        except Exception:
            LOG.exception("could not size the adopted object of snapshot %s", sref.id)
    return values


def finish_manage(manager: VolumeManager, volume_id: str, ref: VolumeRef) -> bool:
    """A manage cut short after the driver adopted the object: complete it.

    Marking it error_managing instead would be dangerous: deleting that volume
    would delete the adopted data. The claimed reference becomes provider_id, as
    the manage would have recorded it: unmanage gives the object back that name.
    """
    driver = manager.driver
    if not isinstance(driver, ManageableVD) or not driver.volume_exists(ref):
        return False
    try:
        size = int(driver.manage_existing_get_size(ref, {"source-name": ref.name}))
    except Exception:
        LOG.exception("could not size the adopted object of volume %s", volume_id)
        return False
    with manager.db.session() as session:
        volume = volumes_repo.get(session, volume_id)
        values: dict[str, object] = {
            "status": VolumeStatus.AVAILABLE,
            "size": size,
            "provider_location": ref.name,
            "service_uuid": manager.service_uuid,
            "shared_targets": False,
        }
        claimed = claimed_reference(session, volume_id)
        if claimed is not None:
            values["provider_id"] = claimed
        if ref.host and "#" not in ref.host:
            values["host"] = f"{ref.host}#{driver.get_pool(ref)}"
        won = volumes_repo.compare_and_swap(
            session, volume_id, {"status": VolumeStatus.MANAGING}, values
        )
        if won:
            # The object is adopted already: charge its size whatever the quota says
            # (refusing now would strand the data), replacing any reservation.
            quotas_repo.rollback_reserved(session, volume_id)
            quotas_repo.apply(
                session,
                volume.project_id,
                volume_id,
                volume_deltas(size, volume.volume_type.name, count=0),
            )
        if won and claimed is not None:
            volumes_repo.set_admin_metadata(session, volume_id, {"manage_original_name": claimed})
        claims_repo.release(session, volume_id)
    return True
