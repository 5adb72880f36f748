"""Attachment rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.db.models import VolumeAttachment, utcnow


def create(session: Session, values: Mapping[str, Any]) -> VolumeAttachment:
    row = VolumeAttachment(**values)
    session.add(row)
    session.flush()
    return row


def get(session: Session, attachment_id: str, project_id: str | None = None) -> VolumeAttachment:
    stmt = select(VolumeAttachment).where(VolumeAttachment.id == attachment_id)
    if project_id is not None:
        stmt = stmt.where(VolumeAttachment.project_id == project_id)
    row = session.scalars(stmt).first()
    if row is None:
        raise exc.NotFound(f"Volume attachment {attachment_id} could not be found.")
    return row


def of_volume(session: Session, volume_id: str) -> list[VolumeAttachment]:
    stmt = (
        select(VolumeAttachment)
        .where(VolumeAttachment.volume_id == volume_id)
        .order_by(VolumeAttachment.created_at, VolumeAttachment.id)
    )
    return list(session.scalars(stmt))


def of_volumes(session: Session, volume_ids: list[str]) -> dict[str, list[VolumeAttachment]]:
    out: dict[str, list[VolumeAttachment]] = {}
    for start in range(0, len(volume_ids), 500):
        chunk = volume_ids[start : start + 500]
        stmt = select(VolumeAttachment).where(VolumeAttachment.volume_id.in_(chunk))
        for row in session.scalars(stmt):
            out.setdefault(row.volume_id, []).append(row)
    return out


def list_(
    session: Session, project_id: str | None, filters: Mapping[str, Any], limit: int | None
) -> list[VolumeAttachment]:
    stmt = select(VolumeAttachment)
    if project_id is not None:
        stmt = stmt.where(VolumeAttachment.project_id == project_id)
    columns = {
        "volume_id": VolumeAttachment.volume_id,
        "instance_id": VolumeAttachment.instance_uuid,
        "attach_status": VolumeAttachment.attach_status,
        "status": VolumeAttachment.attach_status,
    }
    for key, value in filters.items():
        stmt = stmt.where(columns[key] == value)
    stmt = stmt.order_by(VolumeAttachment.created_at.desc(), VolumeAttachment.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def compare_and_swap(
    session: Session, attachment_id: str, expected: Mapping[str, Any], values: Mapping[str, Any]
) -> bool:
    stmt = update(VolumeAttachment).where(VolumeAttachment.id == attachment_id)
    for key, allowed in expected.items():
        column = getattr(VolumeAttachment, key)
        if isinstance(allowed, list | tuple | set):
            stmt = stmt.where(column.in_(list(allowed)))
        else:
            stmt = stmt.where(column == allowed)
    result = session.execute(
        stmt.values(updated_at=utcnow(), **values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def delete_row(session: Session, attachment_id: str) -> None:
    session.execute(delete(VolumeAttachment).where(VolumeAttachment.id == attachment_id))


def delete_of_volume(session: Session, volume_id: str) -> None:
    session.execute(delete(VolumeAttachment).where(VolumeAttachment.volume_id == volume_id))


def loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
