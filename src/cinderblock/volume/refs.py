"""Turn database rows into the plain refs drivers take."""

from __future__ import annotations

from cinderblock.db.models import Snapshot, Volume
from cinderblock.db.repo import types as types_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.drivers.refs import SnapshotRef, VolumeRef


def volume_ref(volume: Volume, size: int | None = None) -> VolumeRef:
    specs = types_repo.extra_specs_of(volume.volume_type) if volume.volume_type else {}
    return VolumeRef(
        id=volume.id,
        size=volume.size if size is None else size,
        project_id=volume.project_id,
        host=volume.host,
        provider_location=volume.provider_location,
        provider_id=volume.provider_id,
        provider_auth=volume.provider_auth,
        volume_type_id=volume.volume_type_id,
        extra_specs={k: v for k, v in specs.items() if v is not None},
        admin_metadata=volumes_repo.admin_metadata_of(volume),
    )


def snapshot_ref(snapshot: Snapshot, volume: Volume) -> SnapshotRef:
    return SnapshotRef(
        id=snapshot.id,
        volume=volume_ref(volume),
        size=snapshot.volume_size,
        provider_location=snapshot.provider_location,
        provider_id=snapshot.provider_id,
    )
