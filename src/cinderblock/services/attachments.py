"""Attachments (3.27+) and the legacy attach actions, API side.

Statuses follow Cinder: attachment create reserves the volume (`reserved`); a
connector makes it `attaching` and returns connection_info; complete makes it
`in-use`; delete terminates the connection and frees the volume when no
attachment is left. Every change is a compare-and-swap on the rows.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.models import Volume, VolumeAdminMetadata, VolumeAttachment, utcnow
from cinderblock.db.repo import attachments as attachments_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.rpc.base import CallTimeout, RemoteError
from cinderblock.scheduler.manager import volume_topic
from cinderblock.services.common import ServiceDeps, backend_of, require_capability, scope
from cinderblock.states import AttachStatus, VolumeStatus

LOG = logging.getLogger(__name__)
LIVE = (AttachStatus.RESERVED, AttachStatus.ATTACHING, AttachStatus.ATTACHED)


class BackendFailure(exc.CinderblockError):
    """The backend failed a call: a 500 with Cinder's message for that operation."""

    code = 500


class AttachmentService:
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps
        self.db = deps.db

    # --- helpers ------------------------------------------------------------------
    def _call(self, volume: Volume, method: str, failure: str, **kwargs: Any) -> Any:
        """Call the volume's backend; a backend error becomes a 500 saying `failure`
        (the driver's own text is not shown; its 4xx errors, e.g. a bad connector,
        pass through)."""
        if volume.host is None:
            raise exc.InvalidVolume(reason="The volume is not on any backend.")
        backend = backend_of(volume.host)
        try:
            with self.deps.run_slots.lent():
                return self.deps.transport.call(volume_topic(backend), method, **kwargs)
        except CallTimeout as err:
            raise exc.VolumeServiceUnreachable(host=backend) from err
        except exc.DriverError as err:
            if err.code < 500:
                raise
            raise BackendFailure(failure) from err
        except RemoteError as err:
            raise BackendFailure(failure) from err

    def get(self, session: Session, ctx: RequestContext, attachment_id: str) -> VolumeAttachment:
        return attachments_repo.get(session, attachment_id, scope(ctx))

    @staticmethod
    def _settle_volume(session: Session, volume_id: str) -> None:
        """Set the volume's status from the attachments it still has."""
        # The compare-and-swaps bypass the identity map: attachment rows this session
        # already loaded would otherwise be read back with their old statuses.
        rows = session.scalars(
            select(VolumeAttachment)
            .where(VolumeAttachment.volume_id == volume_id)
            .execution_options(populate_existing=True)
        )
        live = [a for a in rows if a.attach_status in LIVE]
        if not live:
            status, attach = VolumeStatus.AVAILABLE, AttachStatus.DETACHED
            # Like Cinder's volume_detached: the last detach drops the attached_mode.
            session.execute(
                delete(VolumeAdminMetadata).where(
                    VolumeAdminMetadata.volume_id == volume_id,
                    VolumeAdminMetadata.key == "attached_mode",
                )
            )
        elif any(a.attach_status == AttachStatus.ATTACHED for a in live):
            status, attach = VolumeStatus.IN_USE, AttachStatus.ATTACHED
        elif any(a.attach_status == AttachStatus.ATTACHING for a in live):
            status, attach = VolumeStatus.ATTACHING, AttachStatus.ATTACHING
        else:
            status, attach = VolumeStatus.RESERVED, AttachStatus.RESERVED
        volumes_repo.compare_and_swap(
            session,
            volume_id,
            {
                "status": [
                    VolumeStatus.RESERVED,
                    VolumeStatus.ATTACHING,
                    VolumeStatus.IN_USE,
                    VolumeStatus.DETACHING,
                    VolumeStatus.AVAILABLE,
                ]
            },
            {"status": status, "attach_status": attach},
        )

    # --- new-style attachments ------------------------------------------------------
    def create(
        self,
        ctx: RequestContext,
        volume_id: str,
        instance_uuid: str | None,
        connector: dict[str, Any] | None,
        mode: str | None,
    ) -> VolumeAttachment:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            require_capability(self.deps, volume.host, "export", "attaching volumes")
            if "error" in volume.status:
                raise exc.InvalidVolume(
                    reason=f"Volume {volume_id} status must not contain 'error', but the "
                    f"current status is: {volume.status}"
                )
            readonly = volumes_repo.admin_metadata_of(volume).get("readonly", "").lower()
            # Without a mode the attachment shows "null" until a connector decides it.
            attach_mode = "ro" if readonly == "true" else (mode or "null")
            again = instance_uuid is not None and any(
                a.instance_uuid == instance_uuid and a.attach_status in LIVE
                for a in attachments_repo.of_volume(session, volume_id)
            )
            # Cinder's reservation: available/downloading (plus in-use when multiattach)
            # -> reserved; the same server attaching again keeps an in-use/reserved
            # volume as it is. A reserved or attaching volume takes no new reservation.
            free = [VolumeStatus.AVAILABLE, VolumeStatus.DOWNLOADING]
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": free},
                {"status": VolumeStatus.RESERVED, "attach_status": AttachStatus.RESERVED},
            )
            if not won and volume.multiattach:
                # Still attached elsewhere: attach_status stays `attached`.
                won = volumes_repo.compare_and_swap(
                    session,
                    volume_id,
                    {"status": VolumeStatus.IN_USE},
                    {"status": VolumeStatus.RESERVED},
                )
            if not won and again:
                won = volumes_repo.compare_and_swap(
                    session, volume_id, {"status": [VolumeStatus.IN_USE, VolumeStatus.RESERVED]}, {}
                )
            if not won:
                # Re-read for the message: a racing delete may have removed the row (404).
                session.expire(volume)
                volume = volumes_repo.get(session, volume_id, scope(ctx))
                statuses = (
                    [VolumeStatus.AVAILABLE, VolumeStatus.IN_USE, VolumeStatus.DOWNLOADING]
                    if volume.multiattach
                    else free
                )
                raise exc.InvalidVolume(
                    reason=f"Volume {volume_id} status must be {' or '.join(statuses)} to "
                    f"reserve, but the current status is {volume.status}."
                )
            attachment = attachments_repo.create(
                session,
                {
                    "id": str(uuid.uuid4()),
                    "volume_id": volume_id,
                    "project_id": volume.project_id,
                    "instance_uuid": instance_uuid,
                    "attach_status": AttachStatus.RESERVED,
                    "attach_mode": attach_mode,
                },
            )
            attachment_id = attachment.id
        if connector:
            try:
                return self.update(ctx, attachment_id, connector)
            except Exception as err:
                with self.db.session() as session:
                    attachments_repo.delete_row(session, attachment_id)
                    self._settle_volume(session, volume_id)
                if isinstance(err, BackendFailure):
                    raise BackendFailure("Unable to create attachment for volume.") from err
                raise
        return attachment

    def update(
        self, ctx: RequestContext, attachment_id: str, connector: dict[str, Any]
    ) -> VolumeAttachment:
        with self.db.session() as session:
            attachment = self.get(session, ctx, attachment_id)
            volume = volumes_repo.get(session, attachment.volume_id)
            if "error" in volume.status:
                raise exc.Conflict(f"Volume {volume.id} is in an error status.")
            if not volume.multiattach:
                others = [
                    a
                    for a in attachments_repo.of_volume(session, volume.id)
                    if a.id != attachment_id and a.connection_info and a.attach_status in LIVE
                ]
                if others:
                    raise exc.Conflict(f"duplicate connectors detected on volume {volume.id}")
            mode = attachment.attach_mode
            if mode in (None, "null"):
                mode = connector.get("mode") if connector.get("mode") in ("rw", "ro") else "rw"
        info = self._call(
            volume,
            "initialize_connection",
            "Unable to update the attachment.",
            volume_id=volume.id,
            connector=connector,
            mode=mode,
        )
        with self.db.session() as session:
            attachments_repo.compare_and_swap(
                session,
                attachment_id,
                {"attach_status": list(LIVE)},
                {
                    "attach_status": AttachStatus.ATTACHING,
                    "attach_mode": mode,
                    "connector": json.dumps(connector),
                    "connection_info": json.dumps(info),
                    "attached_host": connector.get("host"),
                    "mountpoint": connector.get("mountpoint"),
                },
            )
            self._settle_volume(session, volume.id)
            return self.get(session, ctx, attachment_id)

    def complete(self, ctx: RequestContext, attachment_id: str) -> None:
        with self.db.session() as session:
            attachment = self.get(session, ctx, attachment_id)
            attachments_repo.compare_and_swap(
                session,
                attachment_id,
                {},
                {"attach_status": AttachStatus.ATTACHED, "attach_time": utcnow()},
            )
            self._settle_volume(session, attachment.volume_id)

    def delete(self, ctx: RequestContext, attachment_id: str) -> list[VolumeAttachment]:
        with self.db.session() as session:
            attachment = self.get(session, ctx, attachment_id)
            volume = volumes_repo.get(session, attachment.volume_id)
            connector = attachments_repo.loads(attachment.connector)
            had_connection = bool(attachment.connection_info)
            others_connected = any(
                a.id != attachment_id and a.connection_info and a.attach_status in LIVE
                for a in attachments_repo.of_volume(session, volume.id)
            )
        if had_connection:
            self._call(
                volume,
                "terminate_connection",
                "Unable to delete the attachment.",
                volume_id=volume.id,
                connector=connector or None,
                remove_export=not others_connected,
            )
        with self.db.session() as session:
            attachments_repo.delete_row(session, attachment_id)
            self._settle_volume(session, volume.id)
            return [
                a for a in attachments_repo.of_volume(session, volume.id) if a.attach_status in LIVE
            ]

    # --- legacy actions -----------------------------------------------------------------
    def reserve(self, ctx: RequestContext, volume_id: str) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            allowed = [VolumeStatus.AVAILABLE]
            if volume.multiattach:
                allowed.append(VolumeStatus.IN_USE)
            if not volumes_repo.compare_and_swap(
                session, volume_id, {"status": allowed}, {"status": VolumeStatus.ATTACHING}
            ):
                raise exc.InvalidVolume(
                    reason=f"Volume status must be available to reserve, but the status is "
                    f"{volume.status}."
                )

    def unreserve(self, ctx: RequestContext, volume_id: str) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.status != VolumeStatus.ATTACHING:
                return
            attached = any(
                a.attach_status == AttachStatus.ATTACHED
                for a in attachments_repo.of_volume(session, volume_id)
            )
            volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.ATTACHING},
                {"status": VolumeStatus.IN_USE if attached else VolumeStatus.AVAILABLE},
            )

    def begin_detaching(self, ctx: RequestContext, volume_id: str) -> None:
        with self.db.session() as session:
            volumes_repo.get(session, volume_id, scope(ctx))
            if not volumes_repo.compare_and_swap(
                session,
                volume_id,
                {
                    "status": VolumeStatus.IN_USE,
                    "attach_status": AttachStatus.ATTACHED,
                    "migration_status": [None, "success", "error"],
                },
                {"status": VolumeStatus.DETACHING},
            ):
                raise exc.InvalidVolume(
                    reason="Unable to detach volume. Volume status must be 'in-use' and "
                    "attach_status must be 'attached' to detach."
                )

    def roll_detaching(self, ctx: RequestContext, volume_id: str) -> None:
        with self.db.session() as session:
            volumes_repo.get(session, volume_id, scope(ctx))
            volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.DETACHING},
                {"status": VolumeStatus.IN_USE},
            )

    def attach(
        self,
        ctx: RequestContext,
        volume_id: str,
        mountpoint: str,
        instance_uuid: str | None,
        host_name: str | None,
        mode: str,
    ) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.status == VolumeStatus.MAINTENANCE:
                raise exc.InvalidVolume(reason="Volume is in maintenance mode.")
            readonly = volumes_repo.admin_metadata_of(volume).get("readonly", "").lower()
            if readonly == "true" and mode != "ro":
                raise exc.InvalidVolume(
                    reason=f"Volume {volume_id} is read-only; it can only be attached ro."
                )
            allowed = [VolumeStatus.ATTACHING, VolumeStatus.AVAILABLE]
            if volume.multiattach:
                allowed.append(VolumeStatus.IN_USE)
            if volume.status not in allowed:
                raise exc.InvalidVolume(
                    reason=f"Volume status must be attaching or available to attach, but "
                    f"the status is {volume.status}."
                )
            attachments_repo.create(
                session,
                {
                    "id": str(uuid.uuid4()),
                    "volume_id": volume_id,
                    "project_id": volume.project_id,
                    "instance_uuid": instance_uuid,
                    "attached_host": host_name,
                    "mountpoint": mountpoint,
                    "attach_status": AttachStatus.ATTACHED,
                    "attach_mode": mode,
                    "attach_time": utcnow(),
                },
            )
            volumes_repo.set_admin_metadata(session, volume_id, {"attached_mode": mode})
            self._settle_volume(session, volume_id)

    def detach(self, ctx: RequestContext, volume_id: str, attachment_id: str | None) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.status == VolumeStatus.MAINTENANCE:
                raise exc.InvalidVolume(reason="Volume is in maintenance mode.")
            live = [
                a for a in attachments_repo.of_volume(session, volume_id) if a.attach_status in LIVE
            ]
            if attachment_id is not None:
                live = [a for a in live if a.id == attachment_id]
            elif len(live) > 1:
                raise exc.InvalidVolume(
                    reason="The volume has several attachments; name the attachment_id."
                )
            if not live:
                raise exc.InvalidVolume(
                    reason=f"Volume attachment could not be found for volume {volume_id}."
                )
            attachments_repo.delete_row(session, live[0].id)
            self._settle_volume(session, volume_id)
            last = not any(
                a.attach_status in LIVE for a in attachments_repo.of_volume(session, volume_id)
            )
        if last and volume.host is not None:
            # Like Cinder's detach_volume: the last detach takes the export down
            # (os-terminate_connection only revokes one connector). The detach itself
            # is done; an export left behind is re-removed by the next detach.
            try:
                self._call(
                    volume,
                    "terminate_connection",
                    "Unable to remove the export.",
                    volume_id=volume_id,
                    connector=None,
                    remove_export=True,
                )
            except (BackendFailure, exc.VolumeServiceUnreachable):
                LOG.warning("volume %s detached but its export was not removed", volume_id)

    def initialize_connection(
        self, ctx: RequestContext, volume_id: str, connector: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.status == VolumeStatus.MAINTENANCE:
                raise exc.InvalidVolume(reason="Volume is in maintenance mode.")
            require_capability(self.deps, volume.host, "export", "attaching volumes")
        return dict(
            self._call(
                volume,
                "initialize_connection",
                "Unable to fetch connection information from backend.",
                volume_id=volume_id,
                connector=connector,
            )
        )

    def terminate_connection(
        self, ctx: RequestContext, volume_id: str, connector: dict[str, Any] | None
    ) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
        # Only this connector loses access: other hosts may still be connected without
        # an attachment row saying so (legacy callers); os-detach removes the export.
        self._call(
            volume,
            "terminate_connection",
            "Unable to terminate volume connection from backend.",
            volume_id=volume_id,
            connector=connector,
            remove_export=False,
        )

    def update_readonly_flag(self, ctx: RequestContext, volume_id: str, readonly: bool) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.status != VolumeStatus.AVAILABLE:
                raise exc.InvalidVolume(
                    reason=f"Volume status must be available to update readonly flag, but "
                    f"the status is {volume.status}."
                )
            volumes_repo.set_admin_metadata(
                session, volume_id, {"readonly": "True" if readonly else "False"}
            )

    def set_bootable(self, ctx: RequestContext, volume_id: str, bootable: bool) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.status == VolumeStatus.MAINTENANCE:
                raise exc.InvalidVolume(reason="Volume is in maintenance mode.")
            volumes_repo.compare_and_swap(session, volume_id, {}, {"bootable": bootable})
