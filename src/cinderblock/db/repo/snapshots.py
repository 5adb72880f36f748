"""Snapshot rows: create, fetch, list, compare-and-swap status changes, metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.db.models import Snapshot, SnapshotMetadata, Volume, utcnow
from cinderblock.db.query import ListParams, page
from cinderblock.db.repo import keyvalue, quotas

SORT_COLUMNS: dict[str, Any] = {
    "id": Snapshot.id,
    "name": Snapshot.display_name,
    "display_name": Snapshot.display_name,
    "status": Snapshot.status,
    "size": Snapshot.volume_size,
    "volume_id": Snapshot.volume_id,
    "created_at": Snapshot.created_at,
    "updated_at": Snapshot.updated_at,
    "project_id": Snapshot.project_id,
}
FILTER_COLUMNS: dict[str, Any] = {
    **SORT_COLUMNS,
    "consumes_quota": Snapshot.consumes_quota,
    "user_id": Snapshot.user_id,
    "group_snapshot_id": Snapshot.group_snapshot_id,
    "description": Snapshot.display_description,
}


def create(session: Session, values: Mapping[str, Any], metadata: Mapping[str, str]) -> Snapshot:
    snapshot = Snapshot(**values)
    snapshot.snapshot_metadata = [SnapshotMetadata(key=k, value=v) for k, v in metadata.items()]
    session.add(snapshot)
    session.flush()
    return snapshot


def get(session: Session, snapshot_id: str, project_id: str | None = None) -> Snapshot:
    stmt = select(Snapshot).where(Snapshot.id == snapshot_id)
    if project_id is not None:
        stmt = stmt.where(Snapshot.project_id == project_id)
    snapshot = session.scalars(stmt).first()
    if snapshot is None:
        raise exc.SnapshotNotFound(snapshot_id=snapshot_id)
    return snapshot


def list_(
    session: Session,
    project_id: str | None,
    params: ListParams,
    availability_zone: str | None = None,
) -> tuple[list[Snapshot], int | None]:
    stmt = select(Snapshot)
    if project_id is not None:
        stmt = stmt.where(Snapshot.project_id == project_id)
    for key, value in params.filters.items():
        column = FILTER_COLUMNS[key]
        if isinstance(value, list | tuple | set):
            stmt = stmt.where(column.in_(list(value)))
        else:
            stmt = stmt.where(column == value)
    for key, value in params.like_filters.items():
        stmt = stmt.where(FILTER_COLUMNS[key].contains(value, autoescape=True))
    if availability_zone is not None:
        stmt = stmt.where(
            exists().where(
                Volume.id == Snapshot.volume_id, Volume.availability_zone == availability_zone
            )
        )
    for key, value in params.metadata.items():
        stmt = stmt.where(
            exists().where(
                SnapshotMetadata.snapshot_id == Snapshot.id,
                SnapshotMetadata.key == key,
                SnapshotMetadata.value == value,
            )
        )
    stmt, count = page(session, stmt, Snapshot, project_id, params, SORT_COLUMNS)
    return list(session.scalars(stmt)), count


def of_volume(session: Session, volume_id: str) -> list[Snapshot]:
    return list(session.scalars(select(Snapshot).where(Snapshot.volume_id == volume_id)))


def latest_of_volume(session: Session, volume_id: str) -> Snapshot | None:
    stmt = (
        select(Snapshot)
        .where(Snapshot.volume_id == volume_id)
        .order_by(Snapshot.created_at.desc(), Snapshot.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def on_host(session: Session, host_prefix: str, statuses: Iterable[str]) -> list[Snapshot]:
    stmt = (
        select(Snapshot)
        .join(Volume, Volume.id == Snapshot.volume_id)
        .where(
            (Volume.host == host_prefix)
            | Volume.host.startswith(host_prefix + "#", autoescape=True),
            Snapshot.status.in_(list(statuses)),
        )
    )
    return list(session.scalars(stmt))


def compare_and_swap(
    session: Session,
    snapshot_id: str,
    expected: Mapping[str, Iterable[Any] | Any],
    values: Mapping[str, Any],
) -> bool:
    stmt = update(Snapshot).where(Snapshot.id == snapshot_id)
    for key, allowed in expected.items():
        column = getattr(Snapshot, key)
        if isinstance(allowed, list | tuple | set | frozenset):
            stmt = stmt.where(column.in_(list(allowed)))
        else:
            stmt = stmt.where(column == allowed)
    values = {"updated_at": utcnow(), **values}
    result = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def delete_row(session: Session, snapshot_id: str) -> None:
    session.execute(delete(SnapshotMetadata).where(SnapshotMetadata.snapshot_id == snapshot_id))
    session.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))
    # Whatever the row was charged goes back to its project's quota, in this transaction.
    quotas.release(session, snapshot_id)


def metadata_of(snapshot: Snapshot) -> dict[str, str]:
    return {m.key: m.value for m in snapshot.snapshot_metadata}


def set_metadata(
    session: Session, snapshot: Snapshot, metadata: Mapping[str, str], *, replace: bool
) -> dict[str, str]:
    keyvalue.lock_owner(session, snapshot, "snapshot_metadata")
    return keyvalue.set_items(
        session,
        snapshot,
        snapshot.snapshot_metadata,
        lambda k, v: SnapshotMetadata(key=k, value=v),
        metadata,
        replace=replace,
    )


def delete_metadata_key(session: Session, snapshot: Snapshot, key: str) -> None:
    keyvalue.lock_owner(session, snapshot, "snapshot_metadata")
    if not keyvalue.delete_item(session, snapshot, snapshot.snapshot_metadata, key):
        raise exc.SnapshotMetadataNotFound(snapshot_id=snapshot.id, key=key)
