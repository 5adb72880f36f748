"""Volume operations on the API side: check, start the transition, then wake a service."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.models import Service, Volume, VolumeType, utcnow
from cinderblock.db.query import ListParams
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import types as types_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.scheduler.filters import RequestSpec
from cinderblock.scheduler.manager import SCHEDULER_TOPIC, volume_properties, volume_topic
from cinderblock.services.common import ServiceDeps, backend_of, require_capability, scope
from cinderblock.services.policy import authorize
from cinderblock.services.quotas import QuotaEngine, volume_deltas
from cinderblock.states import (
    MIGRATION_IDLE,
    SNAPSHOT_DELETABLE,
    VOLUME_DELETABLE,
    AttachStatus,
    SnapshotStatus,
    VolumeStatus,
)

DELETE_REFUSED = (
    "Volume status must be available or error or error_restoring or error_extending or "
    "error_managing and must not be migrating, attached, belong to a group, have snapshots, "
    "awaiting a transfer, or be disassociated from snapshots after volume transfer."
)
_MIGRATION_OK = (None, "deleting", "error", "success")


@dataclass
class CreateRequest:
    size: int | None
    name: str | None = None
    description: str | None = None
    volume_type: str | None = None
    availability_zone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    snapshot_id: str | None = None
    source_volid: str | None = None


class VolumeService:
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps
        self.db = deps.db
        self.settings = deps.settings

    # --- lookups -----------------------------------------------------------------
    def get(self, session: Session, ctx: RequestContext, volume_id: str) -> Volume:
        return volumes_repo.get(session, volume_id, scope(ctx))

    def show_page(
        self, session: Session, ctx: RequestContext, volume_id: str
    ) -> volumes_repo.VolumePage:
        page = volumes_repo.page_of_one(session, volume_id, scope(ctx))
        if not page.rows:
            raise exc.VolumeNotFound(volume_id=volume_id)
        return page

    def list(
        self, session: Session, ctx: RequestContext, params: ListParams, all_tenants: bool
    ) -> tuple[list[Volume], int | None]:
        project = ctx.project_id
        if all_tenants and ctx.is_admin:
            project = params.filters.pop("project_id", None)
        return volumes_repo.list_(session, project, params)

    def list_page(
        self, session: Session, ctx: RequestContext, params: ListParams, all_tenants: bool
    ) -> volumes_repo.VolumePage:
        project = ctx.project_id
        if all_tenants and ctx.is_admin:
            project = params.filters.pop("project_id", None)
        return volumes_repo.list_page(session, project, params)

    def resolve_type(self, session: Session, ident: str | None) -> VolumeType:
        if ident is None:
            default = types_repo.get_by_name(session, self.settings.default_volume_type)
            if default is None:
                raise exc.CinderblockError("The default volume type is missing.")
            return default
        return types_repo.get_by_name_or_id(session, ident)

    def known_zones(self, session: Session) -> set[str]:
        zones = {self.settings.storage_availability_zone}
        zones.update(session.scalars(select(Service.availability_zone)))
        return zones

    # --- create ------------------------------------------------------------------
    def create(self, ctx: RequestContext, req: CreateRequest) -> Volume:
        required_backend = None
        quotas = QuotaEngine.for_deps(self.deps)
        quotas.prepare(self.db, str(ctx.project_id))
        with self.db.session() as session:
            size = req.size
            source_type: VolumeType | None = None
            zone = req.availability_zone
            if req.snapshot_id:
                snapshot = snapshots_repo.get(session, req.snapshot_id, scope(ctx))
                if snapshot.status != SnapshotStatus.AVAILABLE:
                    raise exc.InvalidSnapshot(
                        reason="Originating snapshot status must be one of 'available' values"
                    )
                parent = volumes_repo.get(session, snapshot.volume_id)
                require_capability(self.deps, parent.host, "snapshot", "volumes from snapshots")
                source_type, required_backend = parent.volume_type, parent.host
                zone = zone or parent.availability_zone
                if size is None:
                    size = snapshot.volume_size
                elif size < snapshot.volume_size:
                    raise exc.InvalidInput(
                        reason=f"Volume size '{size}'GB cannot be smaller than the snapshot "
                        f"size {snapshot.volume_size}GB. They must be >= original snapshot size."
                    )
            if req.source_volid:
                source = volumes_repo.get(session, req.source_volid, scope(ctx))
                if source.status not in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE):
                    raise exc.InvalidVolume(
                        reason="Unable to clone volumes that are in an error state or are "
                        f"not available; the status is {source.status}."
                    )
                require_capability(self.deps, source.host, "clone", "cloning volumes")
                source_type, required_backend = source.volume_type, source.host
                zone = zone or source.availability_zone
                if size is None:
                    size = source.size
                elif size < source.size:
                    raise exc.InvalidInput(
                        reason=f"Volume size '{size}'GB cannot be smaller than original volume "
                        f"size {source.size}GB. They must be >= original volume size."
                    )
            if size is None:
                raise exc.InvalidInput(reason="Size must be specified when no source is given.")
            if req.volume_type is not None:
                try:
                    volume_type = types_repo.get_by_name_or_id(session, req.volume_type)
                except exc.VolumeTypeNotFoundByName as err:
                    raise exc.VolumeTypeNotFound(volume_type_id=req.volume_type) from err
                if not volume_type.is_public and not ctx.is_admin:
                    # Private types are invisible to members (no type-access grants yet).
                    raise exc.VolumeTypeNotFound(volume_type_id=req.volume_type)
                if source_type is not None and not _types_compatible(volume_type, source_type):
                    raise exc.InvalidInput(
                        reason="Invalid volume_type provided: the type must be on the same "
                        "backend as the source."
                    )
            else:
                volume_type = source_type or self.resolve_type(session, None)
            zone = zone or self.settings.storage_availability_zone
            # This service's own zone is always known; others are asked of the database.
            if zone != self.settings.storage_availability_zone and zone not in self.known_zones(
                session
            ):
                raise exc.InvalidAvailabilityZone(az=zone)
            specs = types_repo.extra_specs_of(volume_type)
            volume = volumes_repo.create(
                session,
                {
                    "id": str(uuid.uuid4()),
                    "project_id": ctx.project_id,
                    "user_id": ctx.user_id,
                    "availability_zone": zone,
                    "display_name": req.name,
                    "display_description": req.description,
                    "size": size,
                    "status": VolumeStatus.CREATING,
                    "attach_status": AttachStatus.DETACHED,
                    "bootable": False,
                    "multiattach": (specs.get("multiattach") or "").lower() == "<is> true",
                    "volume_type_id": volume_type.id,
                    "snapshot_id": req.snapshot_id,
                    "source_volid": req.source_volid,
                    "consumes_quota": True,
                    # Cinder reports True until the backend says otherwise.
                    "shared_targets": True,
                },
                req.metadata,
            )
            volume.volume_type = volume_type
            volume_id = volume.id
            # What the scheduler and the volume service need travels with the message, as
            # Cinder's request spec does: neither reads the row back on the way.
            request_spec = RequestSpec(
                size=size,
                extra_specs={k: v for k, v in specs.items() if v is not None},
                availability_zone=zone,
                required_backend=required_backend,
                volume=volume_properties(volume),
            ).to_dict()
            # Same transaction as the insert: over quota leaves no row behind.
            quotas.charge(
                session,
                str(ctx.project_id),
                volume_id,
                volume_deltas(size, volume_type.name),
                kind="volumes",
                requested=size,
                size_cap=size,
            )
        self.deps.transport.cast(
            SCHEDULER_TOPIC,
            "create_volume",
            context=ctx.to_dict(),
            volume_id=volume_id,
            required_backend=required_backend,
            request_spec=request_spec,
        )
        return volume

    # --- update / metadata -------------------------------------------------------------
    def update(self, ctx: RequestContext, volume_id: str, changes: Mapping[str, Any]) -> Volume:
        with self.db.session() as session:
            volume = self.get(session, ctx, volume_id)
            if volume.status == VolumeStatus.MAINTENANCE:
                raise exc.InvalidVolume(reason="Volume is in maintenance mode.")
            for key in ("display_name", "display_description"):
                if key in changes:
                    setattr(volume, key, changes[key])
            if "metadata" in changes:
                volumes_repo.set_metadata(session, volume, changes["metadata"] or {}, replace=True)
            volume.updated_at = utcnow()
            session.flush()
            return volume

    def check_metadata_writable(self, volume: Volume) -> None:
        if volume.status in (VolumeStatus.MAINTENANCE, VolumeStatus.UPLOADING):
            raise exc.InvalidVolume(reason=f"Volume status is {volume.status}; metadata is locked.")

    # --- delete ------------------------------------------------------------------------
    def delete(self, ctx: RequestContext, volume_id: str, cascade: bool, force: bool) -> None:
        if force:
            authorize(ctx, "volume:force_delete")
        with self.db.session() as session:
            # Serialise with snapshot creation on this volume (it takes the same row lock).
            volumes_repo.lock(session, volume_id)
            volume = volumes_repo.get(session, volume_id, scope(ctx), bare=True)
            expected: dict[str, Any] = {
                "attach_status": [s for s in AttachStatus if s != AttachStatus.ATTACHED],
                "migration_status": list(_MIGRATION_OK),
                "group_id": None,
            }
            if not force:
                expected["status"] = list(VOLUME_DELETABLE)
            if cascade:
                snaps = snapshots_repo.of_volume(session, volume_id)
                allowed = (*SNAPSHOT_DELETABLE, SnapshotStatus.DELETING)
                if any(s.status not in allowed for s in snaps) or (
                    not ctx.is_admin and any(s.project_id != ctx.project_id for s in snaps)
                ):
                    raise exc.InvalidVolume(reason=DELETE_REFUSED)
            to = (
                VolumeStatus.ERROR_MANAGING_DELETING
                if volume.status == VolumeStatus.ERROR_MANAGING
                else VolumeStatus.DELETING
            )
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                expected,
                {"status": to, "previous_status": volume.status},
                no_snapshots=not cascade,
            )
            if not won:
                raise exc.InvalidVolume(reason=DELETE_REFUSED)
            if cascade:
                for snap in snapshots_repo.of_volume(session, volume_id):
                    snapshots_repo.compare_and_swap(
                        session,
                        snap.id,
                        {"status": list(allowed)},
                        {"status": SnapshotStatus.DELETING},
                    )
            host = volume.host
            if host is None:
                # Never placed on a backend: nothing exists there to delete.
                for snap in snapshots_repo.of_volume(session, volume_id):
                    snapshots_repo.delete_row(session, snap.id)
                volumes_repo.delete_row(session, volume_id)
                return
        self.deps.transport.cast(
            volume_topic(backend_of(host)),
            "delete_volume",
            context=ctx.to_dict(),
            volume_id=volume_id,
            cascade=cascade,
        )

    def force_delete(self, ctx: RequestContext, volume_id: str) -> None:
        authorize(ctx, "volume_extension:volume_admin_actions:force_delete")
        self.delete(ctx, volume_id, cascade=False, force=True)

    # --- actions -----------------------------------------------------------------------
    def extend(
        self, ctx: RequestContext, volume_id: str, new_size: int, allow_in_use: bool = False
    ) -> None:
        allowed = [VolumeStatus.AVAILABLE]
        if allow_in_use:
            allowed.append(VolumeStatus.IN_USE)
        # No prepare(): the volume's usage rows exist since it was charged at create.
        quotas = QuotaEngine.for_deps(self.deps)
        with self.db.session() as session:
            volume = self.get(session, ctx, volume_id)
            require_capability(self.deps, volume.host, "extend", "extending volumes")
            if volume.status not in allowed:
                raise exc.InvalidVolume(
                    reason=f"Volume status must be '{' or '.join(allowed)}' to extend, but "
                    f"current status is: {volume.status}."
                )
            if volume.migration_status not in MIGRATION_IDLE:
                raise exc.InvalidVolume(
                    reason=f"Volume {volume_id} cannot be extended while it is migrating."
                )
            if new_size <= volume.size:
                raise exc.InvalidInput(
                    reason=f"New size for extend must be greater than current size. (current: "
                    f"{volume.size}, extended: {new_size})."
                )
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {
                    "status": volume.status,
                    "size": volume.size,
                    "migration_status": list(MIGRATION_IDLE),
                },
                {"status": VolumeStatus.EXTENDING, "previous_status": volume.status},
            )
            if not won:
                raise exc.InvalidVolume(reason="Volume status changed while extending.")
            quotas.check_volume_size(session, volume.project_id, new_size)
            # Reserved until the volume manager commits it with the new size (or gives it
            # back when the extend fails); over quota rolls the status change back too.
            delta = new_size - volume.size
            quotas.charge(
                session,
                volume.project_id,
                volume_id,
                volume_deltas(delta, volume.volume_type.name, count=0),
                kind="volumes",
                requested=delta,
                reserve=True,
            )
            host = volume.host
        self.deps.transport.cast(
            volume_topic(backend_of(host or "")),
            "extend_volume",
            context=ctx.to_dict(),
            volume_id=volume_id,
            new_size=new_size,
        )

    def reset_status(
        self,
        ctx: RequestContext,
        volume_id: str,
        status: str | None,
        attach_status: str | None,
        migration_status: str | None,
    ) -> None:
        authorize(ctx, "volume_extension:volume_admin_actions:reset_status")
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id)
            values: dict[str, Any] = {}
            if status is not None:
                if status == VolumeStatus.DELETING:
                    raise exc.InvalidVolume(reason="Cannot reset-state to deleting")
                if status == VolumeStatus.IN_USE and volume.attach_status != AttachStatus.ATTACHED:
                    raise exc.InvalidVolume(
                        reason="Cannot reset-state to in-use because volume does not have "
                        "any attachments."
                    )
                values["status"] = status
            if attach_status is not None:
                values["attach_status"] = attach_status
            if migration_status is not None:
                values["migration_status"] = (
                    None if migration_status == "none" else migration_status
                )
            volumes_repo.compare_and_swap(session, volume_id, {}, values)

    def revert(self, ctx: RequestContext, volume_id: str, snapshot_id: str) -> None:
        with self.db.session() as session:
            volume = self.get(session, ctx, volume_id)
            snapshot = snapshots_repo.get(session, snapshot_id, scope(ctx))
            require_capability(self.deps, volume.host, "revert", "reverting to snapshots")
            latest = snapshots_repo.latest_of_volume(session, volume_id)
            if snapshot.volume_id != volume_id or latest is None or latest.id != snapshot_id:
                raise exc.InvalidInput(
                    reason=f"Specified snapshot {snapshot_id} is None or not the latest one "
                    f"of volume {volume_id}."
                )
            if volume.size != snapshot.volume_size:
                raise exc.InvalidVolume(
                    reason="Cannot revert volume to snapshot: the volume size differs from the "
                    "snapshot's volume size."
                )
            if not volumes_repo.compare_and_swap(
                session,
                volume_id,
                {"status": VolumeStatus.AVAILABLE},
                {"status": VolumeStatus.REVERTING},
            ):
                raise exc.Conflict(f"Volume {volume_id} status must be available to revert.")
            if not snapshots_repo.compare_and_swap(
                session,
                snapshot_id,
                {"status": SnapshotStatus.AVAILABLE},
                {"status": SnapshotStatus.RESTORING},
            ):
                raise exc.Conflict(f"Snapshot {snapshot_id} status must be available to revert.")
            host = volume.host
        self.deps.transport.cast(
            volume_topic(backend_of(host or "")),
            "revert_to_snapshot",
            context=ctx.to_dict(),
            volume_id=volume_id,
            snapshot_id=snapshot_id,
        )


def _types_compatible(a: VolumeType, b: VolumeType) -> bool:
    if a.id == b.id:
        return True
    return types_repo.extra_specs_of(a).get("volume_backend_name") == types_repo.extra_specs_of(
        b
    ).get("volume_backend_name")
