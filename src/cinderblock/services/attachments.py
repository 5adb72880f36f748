"""Attachments (3.27+) and the legacy attach actions, API side.

Statuses follow Cinder: attachment create reserves the volume (`reserved`); a
connector makes it `attaching` and returns connection_info; complete makes it
`in-use`; delete terminates the connection and frees the volume when no
attachment is left. Every change is a compare-and-swap on the rows.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.models import Volume, VolumeAttachment, utcnow
from cinderblock.db.repo import attachments as attachments_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.rpc.base import CallTimeout
from cinderblock.scheduler.manager import volume_topic
from cinderblock.services.common import ServiceDeps, backend_of, require_capability, scope
from cinderblock.states import AttachStatus, VolumeStatus

LIVE = (AttachStatus.RESERVED, AttachStatus.ATTACHING, AttachStatus.ATTACHED)


class AttachmentService:
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps
        self.db = deps.db

    # --- helpers ------------------------------------------------------------------
    def _call(self, volume: Volume, method: str, **kwargs: Any) -> Any:
        if volume.host is None:
            raise exc.InvalidVolume(reason="The volume is not on any backend.")
        backend = backend_of(volume.host)
        try:
            return self.deps.transport.call(volume_topic(backend), method, **kwargs)
        except CallTimeout as err:
            raise exc.VolumeServiceUnreachable(host=backend) from err

    def get(self, session: Session, ctx: RequestContext, attachment_id: str) -> VolumeAttachment:
        return attachments_repo.get(session, attachment_id, scope(ctx))

    @staticmethod
    def _settle_volume(session: Session, volume_id: str) -> None:
        """Set the volume's status from the attachments it still has."""
        live = [
            a for a in attachments_repo.of_volume(session, volume_id) if a.attach_status in LIVE
        ]
        if not live:
            status, attach = VolumeStatus.AVAILABLE, AttachStatus.DETACHED
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
            attach_mode = "ro" if readonly == "true" else (mode or "rw")
            again = instance_uuid is not None and any(
                a.instance_uuid == instance_uuid and a.attach_status in LIVE
                for a in attachments_repo.of_volume(session, volume_id)
            )
            allowed = [VolumeStatus.AVAILABLE, VolumeStatus.DOWNLOADING]
            if volume.multiattach:
                allowed += [VolumeStatus.IN_USE, VolumeStatus.RESERVED, VolumeStatus.ATTACHING]
            if again:
                allowed += [VolumeStatus.IN_USE, VolumeStatus.RESERVED]
            to = (
                VolumeStatus.RESERVED
                if volume.status in (VolumeStatus.AVAILABLE, VolumeStatus.DOWNLOADING)
                else volume.status
            )
            if not volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": allowed},
                {
                    "status": to,
                    "attach_status": AttachStatus.RESERVED
                    if to == VolumeStatus.RESERVED
                    else volume.attach_status,
                },
            ):
                raise exc.InvalidVolume(
                    reason=f"Volume {volume_id} status must be available or downloading to "
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
            except Exception:
                with self.db.session() as session:
                    attachments_repo.delete_row(session, attachment_id)
                    self._settle_volume(session, volume_id)
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
        info = self._call(
            volume, "initialize_connection", volume_id=volume.id, connector=connector, mode=mode
        )
        with self.db.session() as session:
            attachments_repo.compare_and_swap(
                session,
                attachment_id,
                {"attach_status": list(LIVE)},
                {
                    "attach_status": AttachStatus.ATTACHING,
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

    def initialize_connection(
        self, ctx: RequestContext, volume_id: str, connector: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.status == VolumeStatus.MAINTENANCE:
                raise exc.InvalidVolume(reason="Volume is in maintenance mode.")
            require_capability(self.deps, volume.host, "export", "attaching volumes")
        return dict(
            self._call(volume, "initialize_connection", volume_id=volume_id, connector=connector)
        )

    def terminate_connection(
        self, ctx: RequestContext, volume_id: str, connector: dict[str, Any] | None
    ) -> None:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            connected = any(
                a.connection_info and a.attach_status in LIVE
                for a in attachments_repo.of_volume(session, volume_id)
            )
        self._call(
            volume,
            "terminate_connection",
            volume_id=volume_id,
            connector=connector,
            remove_export=not connected,
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
