"""Snapshot operations on the API side."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.models import Snapshot, utcnow
from cinderblock.db.query import ListParams
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.scheduler.manager import volume_topic
from cinderblock.services.common import ServiceDeps, backend_of, require_capability, scope
from cinderblock.services.policy import authorize
from cinderblock.services.quotas import QuotaEngine, snapshot_deltas
from cinderblock.states import MIGRATION_IDLE, SNAPSHOT_DELETABLE, SnapshotStatus, VolumeStatus

DELETE_REFUSED = "Snapshot status must be available or error and must not be part of a group."


class SnapshotService:
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps
        self.db = deps.db

    def get(self, session: Session, ctx: RequestContext, snapshot_id: str) -> Snapshot:
        return snapshots_repo.get(session, snapshot_id, scope(ctx))

    def list(
        self, session: Session, ctx: RequestContext, params: ListParams, all_tenants: bool
    ) -> tuple[list[Snapshot], int | None]:
        project = ctx.project_id
        if all_tenants and ctx.is_admin:
            project = params.filters.pop("project_id", None)
        zone = params.filters.pop("availability_zone", None)
        return snapshots_repo.list_(session, project, params, availability_zone=zone)

    def create(
        self,
        ctx: RequestContext,
        volume_id: str,
        name: str | None,
        description: str | None,
        metadata: Mapping[str, str],
        allow_in_use: bool,
    ) -> Snapshot:
        allowed = [VolumeStatus.AVAILABLE]
        if allow_in_use:
            allowed.append(VolumeStatus.IN_USE)
        quotas = QuotaEngine.for_deps(self.deps)
        quotas.prepare(self.db, str(ctx.project_id))
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            require_capability(self.deps, volume.host, "snapshot", "snapshots")
            # Touch the volume under the status condition: a concurrent delete (which
            # requires "no snapshots") and this insert cannot both win.
            if volume.migration_status not in MIGRATION_IDLE:
                raise exc.InvalidVolume(
                    reason="Snapshot cannot be created while volume is migrating."
                )
            idle = {"status": allowed, "migration_status": list(MIGRATION_IDLE)}
            if not volumes_repo.compare_and_swap(session, volume_id, idle, {}):
                raise exc.InvalidVolume(
                    reason=f"Volume {volume_id} status must be available, but current status "
                    f"is: {volume.status}."
                )
            snapshot = snapshots_repo.create(
                session,
                {
                    "id": str(uuid.uuid4()),
                    "volume_id": volume_id,
                    "project_id": ctx.project_id,
                    "user_id": ctx.user_id,
                    "status": SnapshotStatus.CREATING,
                    "progress": "0%",
                    "volume_size": volume.size,
                    "display_name": name,
                    "display_description": description,
                    "consumes_quota": True,
                },
                metadata,
            )
            # Same transaction as the insert: over quota leaves no row behind.
            quotas.charge(
                session,
                str(ctx.project_id),
                snapshot.id,
                snapshot_deltas(volume.size, volume.volume_type.name),
                kind="snapshots",
                requested=volume.size,
            )
            host = volume.host
        self.deps.transport.cast(
            volume_topic(backend_of(host or "")),
            "create_snapshot",
            context=ctx.to_dict(),
            snapshot_id=snapshot.id,
        )
        return snapshot

    def update(self, ctx: RequestContext, snapshot_id: str, changes: Mapping[str, Any]) -> Snapshot:
        with self.db.session() as session:
            snapshot = self.get(session, ctx, snapshot_id)
            for key in ("display_name", "display_description"):
                if key in changes:
                    setattr(snapshot, key, changes[key])
            snapshot.updated_at = utcnow()
            session.flush()
            return snapshot

    def delete(self, ctx: RequestContext, snapshot_id: str, force: bool = False) -> None:
        with self.db.session() as session:
            snapshot = self.get(session, ctx, snapshot_id)
            expected: dict[str, Any] = {"group_snapshot_id": None}
            if not force:
                expected["status"] = list(SNAPSHOT_DELETABLE)
            if not snapshots_repo.compare_and_swap(
                session, snapshot_id, expected, {"status": SnapshotStatus.DELETING}
            ):
                raise exc.InvalidSnapshot(reason=DELETE_REFUSED)
            volume = volumes_repo.get(session, snapshot.volume_id)
            host = volume.host
        self.deps.transport.cast(
            volume_topic(backend_of(host or "")),
            "delete_snapshot",
            context=ctx.to_dict(),
            snapshot_id=snapshot_id,
        )

    def force_delete(self, ctx: RequestContext, snapshot_id: str) -> None:
        authorize(ctx, "volume_extension:snapshot_admin_actions:force_delete")
        self.delete(ctx, snapshot_id, force=True)

    def reset_status(self, ctx: RequestContext, snapshot_id: str, status: str) -> None:
        authorize(ctx, "volume_extension:snapshot_admin_actions:reset_status")
        with self.db.session() as session:
            snapshots_repo.get(session, snapshot_id)
            snapshots_repo.compare_and_swap(session, snapshot_id, {}, {"status": status})
