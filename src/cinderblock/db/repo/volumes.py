"""Volume rows: create, fetch, list, compare-and-swap status changes, metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, insert, literal, select, union_all, update
from sqlalchemy.orm import Session, lazyload

from cinderblock import exceptions as exc
from cinderblock.db.models import (
    Snapshot,
    Volume,
    VolumeAdminMetadata,
    VolumeAttachment,
    VolumeMetadata,
    VolumeType,
    utcnow,
)
from cinderblock.db.query import ListParams, page
from cinderblock.db.repo import keyvalue, quotas

SORT_COLUMNS: dict[str, Any] = {
    "id": Volume.id,
    "name": Volume.display_name,
    "display_name": Volume.display_name,
    "status": Volume.status,
    "size": Volume.size,
    "availability_zone": Volume.availability_zone,
    "created_at": Volume.created_at,
    "updated_at": Volume.updated_at,
    "bootable": Volume.bootable,
    "volume_type_id": Volume.volume_type_id,
    "host": Volume.host,
    "project_id": Volume.project_id,
    "user_id": Volume.user_id,
    "description": Volume.display_description,
    "display_description": Volume.display_description,
}

# Filter keys (API names) and their columns; admins may use all of them.
FILTER_COLUMNS: dict[str, Any] = {
    **SORT_COLUMNS,
    "migration_status": Volume.migration_status,
    "group_id": Volume.group_id,
    "consumes_quota": Volume.consumes_quota,
    "attach_status": Volume.attach_status,
    "snapshot_id": Volume.snapshot_id,
    "source_volid": Volume.source_volid,
    "multiattach": Volume.multiattach,
    "cluster_name": Volume.cluster_name,
    "provider_id": Volume.provider_id,
}


def create(session: Session, values: Mapping[str, Any], metadata: Mapping[str, str]) -> Volume:
    """Insert a volume row (and its metadata) with plain INSERTs: creates are the hottest
    write and the ORM's unit of work costs more than the statements. Returns a Volume that
    is not attached to the session, holding what was written: give every column that the
    caller's views read, since model defaults are not applied to it."""
    row = {"created_at": utcnow(), **values}
    session.execute(insert(Volume.__table__).values(**row))
    if metadata:
        session.execute(
            insert(VolumeMetadata.__table__),
            [{"volume_id": row["id"], "key": k, "value": v} for k, v in metadata.items()],
        )
    volume = Volume(**row)
    volume.volume_metadata = [
        VolumeMetadata(volume_id=row["id"], key=k, value=v) for k, v in metadata.items()
    ]
    volume.volume_admin_metadata = []
    return volume


def get(
    session: Session, volume_id: str, project_id: str | None = None, *, bare: bool = False
) -> Volume:
    """The volume with its metadata and attachments loaded; `bare` leaves those to load
    only if touched (for callers that look at the row's own columns)."""
    stmt = select(Volume).where(Volume.id == volume_id)
    if bare:
        stmt = stmt.options(
            lazyload(Volume.volume_metadata),
            lazyload(Volume.volume_admin_metadata),
            lazyload(Volume.volume_attachments),
        )
    if project_id is not None:
        stmt = stmt.where(Volume.project_id == project_id)
    volume = session.scalars(stmt).first()
    if volume is None:
        raise exc.VolumeNotFound(volume_id=volume_id)
    return volume


def owner_of(session: Session, volume_id: str, project_id: str | None = None) -> Any:
    """(id, project_id, user_id) of a volume, enough to decide a policy on it; raises
    VolumeNotFound like get() (also for another project's volume when project_id is set)."""
    stmt = select(Volume.id, Volume.project_id, Volume.user_id).where(Volume.id == volume_id)
    if project_id is not None:
        stmt = stmt.where(Volume.project_id == project_id)
    row = session.execute(stmt).first()
    if row is None:
        raise exc.VolumeNotFound(volume_id=volume_id)
    return row


def status_of(session: Session, volume_id: str) -> str | None:
    """The volume's status alone (None: no such volume)."""
    return session.scalar(select(Volume.status).where(Volume.id == volume_id))


def lock(session: Session, volume_id: str) -> None:
    """Hold the volume's row until the transaction ends. Statements after this one see what
    earlier holders committed (e.g. a snapshot inserted under the same row lock), which a
    NOT EXISTS inside an UPDATE that merely waited for the lock does not on PostgreSQL."""
    session.execute(select(Volume.id).where(Volume.id == volume_id).with_for_update())


def get_many(session: Session, volume_ids: Iterable[str]) -> list[Volume]:
    return list(session.scalars(select(Volume).where(Volume.id.in_(list(volume_ids)))))


def list_(
    session: Session, project_id: str | None, params: ListParams
) -> tuple[list[Volume], int | None]:
    """Matching volumes as ORM objects (fine for small pages and internal use)."""
    ids, count = list_ids(session, project_id, params)
    by_id = {v.id: v for v in get_many(session, ids)}
    return [by_id[i] for i in ids if i in by_id], count


def list_ids(
    session: Session, project_id: str | None, params: ListParams
) -> tuple[list[str], int | None]:
    """Ids of the matching page in order, and the total count when asked."""
    stmt, count = _page_statement(session, select(Volume.id), project_id, params)
    return list(session.scalars(stmt)), count


def _page_statement(
    session: Session, stmt: Any, project_id: str | None, params: ListParams
) -> tuple[Any, int | None]:
    """Filter, sort and page `stmt` (a select over volumes); also count when asked."""
    if project_id is not None:
        stmt = stmt.where(Volume.project_id == project_id)
    for key, value in params.filters.items():
        column = FILTER_COLUMNS[key]
        if isinstance(value, list | tuple | set):
            stmt = stmt.where(column.in_(list(value)))
        else:
            stmt = stmt.where(column == value)
    for key, value in params.like_filters.items():
        stmt = stmt.where(FILTER_COLUMNS[key].contains(value, autoescape=True))
    for key, op, when in params.time_filters:
        stmt = stmt.where(_compare(FILTER_COLUMNS[key], op, when))
    for key, value in params.metadata.items():
        stmt = stmt.where(
            exists().where(
                VolumeMetadata.volume_id == Volume.id,
                VolumeMetadata.key == key,
                VolumeMetadata.value == value,
            )
        )
    stmt, count = page(session, stmt, Volume, project_id, params, SORT_COLUMNS)
    return stmt, count


@dataclass(slots=True)
class VolumePage:
    """A page of volumes read without the ORM: the hot path of list/detail."""

    rows: list[Any]  # Row objects with the volumes table's columns as attributes
    metadata: dict[str, dict[str, str]]
    admin_metadata: dict[str, dict[str, str]]
    type_names: dict[str, str]
    count: int | None
    attachments: dict[str, list[Any]]


def list_page(session: Session, project_id: str | None, params: ListParams) -> VolumePage:
    stmt, count = _page_statement(session, select(Volume.__table__), project_id, params)
    return _page_of_rows(session, list(session.execute(stmt)), count)


def page_of_one(session: Session, volume_id: str, project_id: str | None) -> VolumePage:
    """One volume the way list_page reads them (no ORM objects: show is polled hard);
    no rows if it does not exist or belongs to another project. The type's name comes
    with the row, so a volume without metadata or attachments costs one statement."""
    stmt = (
        select(
            Volume.__table__,
            VolumeType.name.label("volume_type_name"),
            exists()
            .where(VolumeMetadata.volume_id == Volume.id)
            .correlate(Volume)
            .label("has_metadata"),
            exists()
            .where(VolumeAdminMetadata.volume_id == Volume.id)
            .correlate(Volume)
            .label("has_admin_metadata"),
        )
        .outerjoin(VolumeType, VolumeType.id == Volume.volume_type_id)
        .where(Volume.id == volume_id)
    )
    if project_id is not None:
        stmt = stmt.where(Volume.project_id == project_id)
    rows = list(session.execute(stmt))
    types = {r.volume_type_id: r.volume_type_name for r in rows if r.volume_type_name}
    bare = all(not (r.has_metadata or r.has_admin_metadata) for r in rows)
    return _page_of_rows(session, rows, None, types, with_metadata=not bare)


def _page_of_rows(
    session: Session,
    rows: list[Any],
    count: int | None,
    type_names: dict[str, str] | None = None,
    *,
    with_metadata: bool = True,
) -> VolumePage:
    metadata: dict[str, dict[str, str]] = {}
    admin: dict[str, dict[str, str]] = {}
    ids = [row.id for row in rows] if with_metadata else []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        both = union_all(
            select(
                literal(False).label("admin"),
                VolumeMetadata.volume_id,
                VolumeMetadata.key,
                VolumeMetadata.value,
            ).where(VolumeMetadata.volume_id.in_(chunk)),
            select(
                literal(True).label("admin"),
                VolumeAdminMetadata.volume_id,
                VolumeAdminMetadata.key,
                VolumeAdminMetadata.value,
            ).where(VolumeAdminMetadata.volume_id.in_(chunk)),
        )
        for is_admin, vid, key, value in session.execute(both):
            (admin if is_admin else metadata).setdefault(vid, {})[key] = value
    type_ids = {row.volume_type_id for row in rows}
    type_names = type_names or {}
    if type_ids and not type_ids <= type_names.keys():
        query = select(VolumeType.id, VolumeType.name).where(VolumeType.id.in_(type_ids))
        type_names = {type_id: name for type_id, name in session.execute(query)}
    attached_ids = [row.id for row in rows if row.attach_status != "detached"]
    attachments: dict[str, list[Any]] = {}
    for start in range(0, len(attached_ids), 500):
        chunk = attached_ids[start : start + 500]
        for att in session.scalars(
            select(VolumeAttachment).where(VolumeAttachment.volume_id.in_(chunk))
        ):
            attachments.setdefault(att.volume_id, []).append(att)
    return VolumePage(rows, metadata, admin, type_names, count, attachments)


def _compare(column: Any, op: str, when: Any) -> Any:
    return {
        "gt": column > when,
        "gte": column >= when,
        "lt": column < when,
        "lte": column <= when,
        "eq": column == when,
        "neq": column != when,
    }[op]


def compare_and_swap(
    session: Session,
    volume_id: str,
    expected: Mapping[str, Iterable[Any] | Any],
    values: Mapping[str, Any],
    *,
    no_snapshots: bool = False,
) -> bool:
    """UPDATE the row only if it still matches `expected`; True if this call won.
    (A plain table UPDATE: the ORM's bulk-update machinery costs more than the statement.)"""
    table = Volume.__table__
    stmt = update(table).where(table.c.id == volume_id)
    for key, allowed in expected.items():
        column = table.c[key]
        if isinstance(allowed, list | tuple | set | frozenset):
            allowed = list(allowed)
            if None in allowed:
                allowed.remove(None)
                stmt = stmt.where(column.in_(allowed) | column.is_(None))
            else:
                stmt = stmt.where(column.in_(allowed))
        elif allowed is None:
            stmt = stmt.where(column.is_(None))
        else:
            stmt = stmt.where(column == allowed)
    if no_snapshots:
        stmt = stmt.where(~exists().where(Snapshot.volume_id == table.c.id))
    values = {"updated_at": utcnow(), **values}
    result = session.execute(stmt.values(**values))
    return result.rowcount == 1  # type: ignore[attr-defined]


def delete_row(session: Session, volume_id: str) -> None:
    session.execute(delete(VolumeMetadata).where(VolumeMetadata.volume_id == volume_id))
    session.execute(delete(VolumeAdminMetadata).where(VolumeAdminMetadata.volume_id == volume_id))
    session.execute(delete(VolumeAttachment).where(VolumeAttachment.volume_id == volume_id))
    session.execute(delete(Volume).where(Volume.id == volume_id))
    # Whatever the row was charged goes back to its project's quota, in this transaction.
    quotas.release(session, volume_id)


def ids_on_host(session: Session, host_prefix: str, statuses: Iterable[str]) -> list[Volume]:
    """Volumes owned by a backend (host@backend, any pool) in the given statuses."""
    stmt = select(Volume).where(
        (Volume.host == host_prefix) | Volume.host.startswith(host_prefix + "#", autoescape=True),
        Volume.status.in_(list(statuses)),
    )
    return list(session.scalars(stmt))


def all_on_host(session: Session, host_prefix: str) -> list[Volume]:
    stmt = select(Volume).where(
        (Volume.host == host_prefix) | Volume.host.startswith(host_prefix + "#", autoescape=True)
    )
    return list(session.scalars(stmt))


def count_using_type(session: Session, type_id: str) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Volume).where(Volume.volume_type_id == type_id)
        )
        or 0
    )


# --- metadata -----------------------------------------------------------------
def metadata_of(volume: Volume) -> dict[str, str]:
    return {m.key: m.value for m in volume.volume_metadata}


def admin_metadata_of(volume: Volume) -> dict[str, str]:
    return {m.key: m.value for m in volume.volume_admin_metadata}


def set_metadata(
    session: Session, volume: Volume, metadata: Mapping[str, str], *, replace: bool
) -> dict[str, str]:
    keyvalue.lock_owner(session, volume, "volume_metadata")
    return keyvalue.set_items(
        session,
        volume,
        volume.volume_metadata,
        lambda k, v: VolumeMetadata(key=k, value=v),
        metadata,
        replace=replace,
    )


def delete_metadata_key(session: Session, volume: Volume, key: str) -> None:
    keyvalue.lock_owner(session, volume, "volume_metadata")
    if not keyvalue.delete_item(session, volume, volume.volume_metadata, key):
        raise exc.VolumeMetadataNotFound(volume_id=volume.id, key=key)


def set_admin_metadata(session: Session, volume_id: str, items: Mapping[str, str]) -> None:
    existing = {
        row.key: row
        for row in session.scalars(
            select(VolumeAdminMetadata).where(VolumeAdminMetadata.volume_id == volume_id)
        )
    }
    for key, value in items.items():
        if key in existing:
            existing[key].value = value
        else:
            session.add(VolumeAdminMetadata(volume_id=volume_id, key=key, value=value))
    session.flush()


def unplaced(session: Session, status: str) -> list[Volume]:
    return list(
        session.scalars(select(Volume).where(Volume.host.is_(None), Volume.status == status))
    )
