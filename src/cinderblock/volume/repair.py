"""Repair a status from the backend's truth: `os-repair_status`, our admin extension.

`os-reset_status` writes whatever status the admin names, blind. `os-repair_status`
(volumes and snapshots, admin only, no arguments) asks the owning volume
service, which asks the driver whether the object exists, and sets the status
from the answer:

| object  | volume                                          | snapshot  |
|---------|-------------------------------------------------|-----------|
| exists  | in-use if an attachment is attached, else available | available |
| missing | error                                           | error     |

The reply is `200 {"repair": {"status": <new status>, "found": <bool>}}`.

The manager holds the object's lock while it looks, so a driver call running
on the object finishes first. Work still queued for the object becomes a no-op
(its compare-and-swap finds another status): that is what the admin asked for.
An interrupted manage whose object the driver had adopted is finished the way
start-up recovery finishes it (size, provider_id); a manage claim is released
either way. Only the status changes otherwise: sizes, locations and
attachments are left as they are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.repo import attachments as attachments_repo
from cinderblock.db.repo import claims as claims_repo
from cinderblock.db.repo import quotas as quotas_repo
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.drivers.base import SnapshotVD
from cinderblock.rpc.base import CallTimeout, RemoteError
from cinderblock.services.quotas import settle_snapshot_gigabytes
from cinderblock.states import AttachStatus, SnapshotStatus, VolumeStatus
from cinderblock.volume.recovery import adopted_snapshot_values, claimed_reference, finish_manage
from cinderblock.volume.refs import snapshot_ref, volume_ref

if TYPE_CHECKING:
    from cinderblock.services.common import ServiceDeps
    from cinderblock.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)

ACTION = "os-repair_status"
_CHANGED = "The %s's status changed while it was being repaired; try again."


# --- volume service side (mixed into VolumeManager: these are RPC methods) ---------------
class RepairOps:
    """`repair_volume` / `repair_snapshot`; `self` is the VolumeManager."""

    def repair_volume(
        self: VolumeManager, context: dict[str, Any], volume_id: str
    ) -> dict[str, Any]:
        ctx = RequestContext.from_dict(context)
        self._require_driver()
        with self._locked(volume_id):
            with self.db.session() as session:
                volume = volumes_repo.get(session, volume_id)
                before = volume.status
                ref = volume_ref(volume)
                attached = any(
                    a.attach_status == AttachStatus.ATTACHED
                    for a in attachments_repo.of_volume(session, volume_id)
                )
            found = bool(self.driver.volume_exists(ref))
            if found and before == VolumeStatus.MANAGING:
                if not finish_manage(self, volume_id, ref):
                    raise exc.VolumeBackendAPIException(
                        data=f"volume {volume_id} holds an adopted object that cannot be sized; "
                        "its status is left as it is"
                    )
                status = VolumeStatus.AVAILABLE
            else:
                if not found:
                    status = VolumeStatus.ERROR
                elif attached:
                    status = VolumeStatus.IN_USE
                else:
                    status = VolumeStatus.AVAILABLE
                with self.db.session() as session:
                    if not volumes_repo.compare_and_swap(
                        session, volume_id, {"status": before}, {"status": status}
                    ):
                        raise exc.InvalidVolume(reason=_CHANGED % "volume")
                    claims_repo.release(session, volume_id)
                    # Work in flight (an extend, a manage) is abandoned: so is its quota
                    # reservation; the size, and what it is charged, stay as they were.
                    quotas_repo.rollback_reserved(session, volume_id)
        LOG.warning(
            "repair of volume %s by %s: %s -> %s (object %s)",
            volume_id,
            ctx.user_id,
            before,
            status,
            "found" if found else "missing",
        )
        return {"status": str(status), "found": found}

    def repair_snapshot(
        self: VolumeManager, context: dict[str, Any], snapshot_id: str
    ) -> dict[str, Any]:
        ctx = RequestContext.from_dict(context)
        self._require_driver()
        if not isinstance(self.driver, SnapshotVD):
            raise exc.UnsupportedOperation(operation="snapshots")
        with self.db.session() as session:
            volume_id = snapshots_repo.get(session, snapshot_id).volume_id
        with self._locked(volume_id, snapshot_id):
            with self.db.session() as session:
                snapshot = snapshots_repo.get(session, snapshot_id)
                before = snapshot.status
                sref = snapshot_ref(snapshot, volumes_repo.get(session, volume_id))
                claimed = claimed_reference(session, snapshot_id)
            found = bool(self.driver.snapshot_exists(sref))
            status = SnapshotStatus.AVAILABLE if found else SnapshotStatus.ERROR
            values: dict[str, Any] = {"status": status}
            if found:
                values["progress"] = "100%"
                if claimed is not None and before == SnapshotStatus.CREATING:
                    values.update(adopted_snapshot_values(self, sref, claimed))
            with self.db.session() as session:
                if not snapshots_repo.compare_and_swap(
                    session, snapshot_id, {"status": before}, values
                ):
                    raise exc.InvalidSnapshot(reason=_CHANGED % "snapshot")
                claims_repo.release(session, snapshot_id)
                # A finished manage keeps its reserved gigabytes, matched to the size found.
                if found:
                    quotas_repo.commit_reserved(session, snapshot_id)
                    settle_snapshot_gigabytes(session, snapshot_id)
                else:
                    quotas_repo.rollback_reserved(session, snapshot_id)
        LOG.warning(
            "repair of snapshot %s by %s: %s -> %s (object %s)",
            snapshot_id,
            ctx.user_id,
            before,
            status,
            "found" if found else "missing",
        )
        return {"status": str(status), "found": found}


# --- API side: the action handlers' work -----------------------------------------------
def request_repair(
    deps: ServiceDeps, ctx: RequestContext, kind: str, object_id: str, args: Any
) -> dict[str, Any]:
    """Admin only; ask the owning volume service to repair a volume or snapshot."""
    from cinderblock.scheduler.manager import volume_topic
    from cinderblock.services.common import backend_of

    if not ctx.is_admin:
        raise exc.PolicyNotAuthorized(action=f"volume_extension:{kind}_admin_actions:repair_status")
    if args not in (None, {}):
        raise exc.InvalidInput(reason=f"{ACTION} takes no arguments")
    with deps.db.session() as session:
        if kind == "volume":
            host = volumes_repo.get(session, object_id).host
        else:
            snapshot = snapshots_repo.get(session, object_id)
            host = volumes_repo.get(session, snapshot.volume_id).host
    if host is None:
        raise exc.InvalidVolume(
            reason="The volume is not on any backend: there is no backend to ask."
        )
    backend = backend_of(host)
    try:
        result = deps.transport.call(
            volume_topic(backend),
            f"repair_{kind}",
            context=ctx.to_dict(),
            **{f"{kind}_id": object_id},
        )
    except CallTimeout as err:
        raise exc.VolumeServiceUnreachable(host=backend) from err
    except RemoteError as err:  # a broker transport: the service's error, by class name
        if err.exc_type.startswith("Invalid"):
            raise exc.Invalid(err.message) from err
        if err.exc_type.endswith("NotFound"):
            raise exc.NotFound(err.message) from err
        raise exc.VolumeBackendAPIException(data=err.message) from err
    return {"repair": {"status": result["status"], "found": bool(result["found"])}}
