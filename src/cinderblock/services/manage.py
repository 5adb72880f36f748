"""Managing existing storage, API side: the synchronous checks, then wake a service.

Checks run in Cinder's order (policy, schema, host/cluster, type, already
managed, service up) and, beyond Cinder, a claim on the backend object so two
requests cannot adopt the same object, and an optional dry run that asks the
volume service to run the driver's checks without changing anything.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.db.models import Service, Snapshot, Volume
from cinderblock.db.repo import claims as claims_repo
from cinderblock.db.repo import services as services_repo
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.db.repo import types as types_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.rpc.base import CallTimeout, RemoteError
from cinderblock.scheduler.manager import SCHEDULER_TOPIC, volume_topic
from cinderblock.services.common import ServiceDeps, backend_of, require_capability, scope
from cinderblock.services.policy import authorize
from cinderblock.services.quotas import QuotaEngine, snapshot_deltas, volume_deltas
from cinderblock.states import AttachStatus, SnapshotStatus, VolumeStatus

VOLUME_BINARY = "cinder-volume"
_OUR_NAME = re.compile(r"^volume-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
UNMANAGE_REFUSED = (
    "Volume status must be available or error or error_restoring or error_extending or "
    "error_managing and must not be migrating, attached, belong to a group, have snapshots, "
    "awaiting a transfer, or be disassociated from snapshots after volume transfer."
)
_UNMANAGEABLE_FROM = (
    VolumeStatus.AVAILABLE,
    VolumeStatus.ERROR,
    VolumeStatus.ERROR_RESTORING,
    VolumeStatus.ERROR_EXTENDING,
    VolumeStatus.ERROR_MANAGING,
)


@dataclass
class ManageVolumeRequest:
    host: str
    ref: dict[str, Any]
    name: str | None = None
    description: str | None = None
    volume_type: str | None = None
    availability_zone: str | None = None
    bootable: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


REF_KEY_MAX = 255  # manage_claims.reference


def ref_key(ref: Any) -> str:
    """The claimable identity of a reference: its name or id."""
    value = ref.get("source-name", ref.get("source-id")) if isinstance(ref, dict) else ref
    if isinstance(value, str) and value:
        # Longer than the claim column: PostgreSQL/MariaDB would fail the insert (500).
        if len(value) > REF_KEY_MAX:
            raise exc.InvalidInput(
                reason=f"the reference name is longer than {REF_KEY_MAX} characters"
            )
        return value
    raise exc.InvalidInput(reason="ref must name a backend object with source-name or source-id")


class ManageService:
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps
        self.db = deps.db

    # --- shared checks ------------------------------------------------------------
    def live_service(self, session: Session, host: str, *, missing_is_404: bool) -> Service:
        backend = backend_of(host)
        service = services_repo.get_by_host(session, backend, VOLUME_BINARY)
        if service is None:
            if missing_is_404:
                raise exc.ServiceNotFound(service_id=backend)
            raise exc.ServiceUnavailable(f"Host '{host}' not found")
        if service.disabled or not services_repo.is_up(
            service, self.deps.settings.service_down_time
        ):
            raise exc.ServiceUnavailable()
        return service

    def _call(self, backend: str, method: str, **kwargs: Any) -> Any:
        try:
            with self.deps.run_slots.lent():
                return self.deps.transport.call(volume_topic(backend), method, **kwargs)
        except CallTimeout as err:
            raise exc.VolumeServiceUnreachable(host=backend) from err
        except RemoteError as err:
            raise exc.InvalidInput(reason=err.message) from err

    # --- volumes --------------------------------------------------------------------
    def manage_volume(
        self, ctx: RequestContext, req: ManageVolumeRequest, *, dry_run: bool = False
    ) -> Volume | dict[str, Any]:
        authorize(ctx, "volume_extension:volume_manage")
        key = ref_key(req.ref)
        backend = backend_of(req.host)
        quotas = QuotaEngine.for_deps(self.deps)
        if not dry_run:
            quotas.prepare(self.db, str(ctx.project_id))
        with self.db.session() as session:
            if req.volume_type is not None:
                try:
                    volume_type = types_repo.get_by_name_or_id(session, req.volume_type)
                except exc.VolumeTypeNotFound as err:
                    raise exc.InvalidVolumeType(
                        reason=f"Cannot find requested '{req.volume_type}' volume type"
                    ) from err
            else:
                volume_type = types_repo.get_by_name(
                    session, self.deps.settings.default_volume_type
                )
                if volume_type is None:
                    raise exc.CinderblockError("The default volume type is missing.")
            self._refuse_managed(session, backend, key)
            service = self.live_service(session, req.host, missing_is_404=False)
            require_capability(self.deps, backend, "manage_volume", "managing existing volumes")
            zone = req.availability_zone or service.availability_zone
            specs = {k: v for k, v in types_repo.extra_specs_of(volume_type).items() if v}
            if dry_run:
                result = self._call(
                    backend,
                    "check_manage_existing",
                    volume_type_id=volume_type.id,
                    extra_specs=specs,
                    existing_ref=req.ref,
                )
                return {
                    "reference": req.ref,
                    "host": req.host,
                    "volume_type": volume_type.name,
                    "would_manage": bool(result["ok"]),
                    "size": result.get("size"),
                    "reason": result.get("reason"),
                }
            volume_id = str(uuid.uuid4())
            claims_repo.claim(session, backend, key, volume_id)
            volume = volumes_repo.create(
                session,
                {
                    "id": volume_id,
                    "project_id": ctx.project_id,
                    "user_id": ctx.user_id,
                    # A pool named by the caller is kept; otherwise the service picks it.
                    "host": req.host if "#" in req.host else backend,
                    "availability_zone": zone,
                    "display_name": req.name,
                    "display_description": req.description,
                    "size": 0,
                    "status": VolumeStatus.MANAGING,
                    "attach_status": AttachStatus.DETACHED,
                    "bootable": req.bootable,
                    "multiattach": (specs.get("multiattach") or "").lower() == "<is> true",
                    "volume_type_id": volume_type.id,
                    "consumes_quota": True,
                    "shared_targets": True,
                },
                req.metadata,
            )
            volume.volume_type = volume_type
            # The count now, with the row; gigabytes when the volume manager learns the size.
            quotas.charge(
                session,
                str(ctx.project_id),
                volume_id,
                volume_deltas(0, volume_type.name),
                kind="volumes",
                requested=0,
            )
        # Like a create, through the scheduler: it checks the named backend first.
        self.deps.transport.cast(
            SCHEDULER_TOPIC,
            "manage_existing",
            context=ctx.to_dict(),
            volume_id=volume.id,
            existing_ref=req.ref,
        )
        return volume

    def _refuse_managed(self, session: Session, backend: str, key: str) -> None:
        """An object that already is one of our volumes (by our name or its location).

        Like Cinder, `volume-<id>` of an existing volume is refused whatever its host.
        """
        match = _OUR_NAME.match(key)
        if (match and volumes_repo.get_many(session, [match.group(1)])) or any(
            volume.provider_location == key for volume in volumes_repo.all_on_host(session, backend)
        ):
            raise exc.InvalidVolume(
                reason="Unable to manage existing volume. The volume is already managed"
            )

    def unmanage_volume(self, ctx: RequestContext, volume_id: str) -> None:
        authorize(ctx, "volume_extension:volume_unmanage")
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.encryption_key_id:
                raise exc.Invalid("Unmanaging encrypted volumes is not supported.")
            if volume.host is not None:
                require_capability(self.deps, volume.host, "manage_volume", "unmanaging volumes")
            won = volumes_repo.compare_and_swap(
                session,
                volume_id,
                {
                    "status": list(_UNMANAGEABLE_FROM),
                    "attach_status": [s for s in AttachStatus if s != AttachStatus.ATTACHED],
                    "migration_status": [None, "deleting", "error", "success"],
                    "group_id": None,
                },
                {"status": VolumeStatus.UNMANAGING, "previous_status": volume.status},
                no_snapshots=True,
            )
            if not won:
                raise exc.InvalidVolume(reason=UNMANAGE_REFUSED)
            host = volume.host
            if host is None:
                volumes_repo.delete_row(session, volume_id)
                return
        self.deps.transport.cast(
            volume_topic(backend_of(host)),
            "unmanage_volume",
            context=ctx.to_dict(),
            volume_id=volume_id,
        )

    def list_manageable(
        self,
        ctx: RequestContext,
        host: str,
        *,
        snapshots: bool,
        marker: Any,
        limit: int,
        offset: int,
        sort_keys: list[str],
        sort_dirs: list[str],
    ) -> list[dict[str, Any]]:
        authorize(
            ctx,
            "snapshot_extension:list_manageable"
            if snapshots
            else "volume_extension:list_manageable",
        )
        with self.db.session() as session:
            self.live_service(session, host, missing_is_404=True)
        backend = backend_of(host)
        caps = self.deps.capabilities_of(backend)
        if caps is not None and ("manage_snapshot" if snapshots else "manage_volume") not in caps:
            return []
        method = "get_manageable_snapshots" if snapshots else "get_manageable_volumes"
        return list(
            self._call(
                backend,
                method,
                marker=marker,
                limit=limit,
                offset=offset,
                sort_keys=sort_keys,
                sort_dirs=sort_dirs,
            )
        )

    # --- snapshots ------------------------------------------------------------------
    def manage_snapshot(
        self,
        ctx: RequestContext,
        volume_id: str,
        ref: Any,
        name: str | None,
        description: str | None,
        metadata: dict[str, str],
    ) -> Snapshot:
        authorize(ctx, "snapshot_extension:snapshot_manage")
        key = ref_key(ref)
        quotas = QuotaEngine.for_deps(self.deps)
        quotas.prepare(self.db, str(ctx.project_id))
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id, scope(ctx))
            if volume.host is None:
                raise exc.ServiceUnavailable()
            backend = backend_of(volume.host)
            self.live_service(session, volume.host, missing_is_404=False)
            require_capability(self.deps, backend, "manage_snapshot", "managing snapshots")
            if volume.status not in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE):
                raise exc.InvalidVolume(
                    reason=f"Volume {volume_id} status must be available, in-use, but current "
                    f"status is: {volume.status}"
                )
            snapshot_id = str(uuid.uuid4())
            claims_repo.claim(session, backend, key, snapshot_id)
            snapshot = snapshots_repo.create(
                session,
                {
                    "id": snapshot_id,
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
            # Charged as a snapshot create is (the row says the volume's size until the
            # volume manager learns the real one and trues the charge up).
            quotas.charge(
                session,
                str(ctx.project_id),
                snapshot_id,
                snapshot_deltas(volume.size, volume.volume_type.name),
                kind="snapshots",
                requested=volume.size,
            )
        self.deps.transport.cast(
            volume_topic(backend),
            "manage_existing_snapshot",
            context=ctx.to_dict(),
            snapshot_id=snapshot.id,
            existing_ref=ref if isinstance(ref, dict) else {"source-name": ref},
        )
        return snapshot

    def unmanage_snapshot(self, ctx: RequestContext, snapshot_id: str) -> None:
        authorize(ctx, "snapshot_extension:snapshot_unmanage")
        with self.db.session() as session:
            snapshot = snapshots_repo.get(session, snapshot_id, scope(ctx))
            volume = volumes_repo.get(session, snapshot.volume_id)
            if not snapshots_repo.compare_and_swap(
                session,
                snapshot_id,
                {
                    "status": [SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR],
                    "group_snapshot_id": None,
                },
                {"status": SnapshotStatus.UNMANAGING},
            ):
                raise exc.InvalidSnapshot(
                    reason="Snapshot status must be available or error and must not be part "
                    "of a group."
                )
            host = volume.host
        self.deps.transport.cast(
            volume_topic(backend_of(host or "")),
            "unmanage_snapshot",
            context=ctx.to_dict(),
            snapshot_id=snapshot_id,
        )
