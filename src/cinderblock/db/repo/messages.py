"""User messages (API 3.3): why an asynchronous operation failed."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.db.models import Message, utcnow
from cinderblock.db.query import ListParams, apply_sort_and_marker, normalise_sort

SORT_COLUMNS: dict[str, Any] = {
    "id": Message.id,
    "created_at": Message.created_at,
    "event_id": Message.event_id,
    "resource_type": Message.resource_type,
    "resource_uuid": Message.resource_uuid,
    "message_level": Message.message_level,
    "request_id": Message.request_id,
}
FILTER_COLUMNS = SORT_COLUMNS


def create(
    session: Session,
    *,
    project_id: str,
    request_id: str | None,
    resource_type: str,
    resource_uuid: str | None,
    event_id: str,
    user_message: str,
    ttl_seconds: int,
    level: str = "ERROR",
) -> Message:
    now = utcnow()
    message = Message(
        id=str(uuid.uuid4()),
        project_id=project_id,
        request_id=request_id,
        resource_type=resource_type,
        resource_uuid=resource_uuid,
        event_id=event_id,
        message_level=level,
        user_message=user_message,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    session.add(message)
    session.flush()
    return message


def get(session: Session, message_id: str, project_id: str | None) -> Message:
    stmt = select(Message).where(Message.id == message_id, Message.expires_at > utcnow())
    if project_id is not None:
        stmt = stmt.where(Message.project_id == project_id)
    message = session.scalars(stmt).first()
    if message is None:
        raise exc.MessageNotFound(message_id=message_id)
    return message


def list_(session: Session, project_id: str | None, params: ListParams) -> list[Message]:
    stmt = select(Message).where(Message.expires_at > utcnow())
    if project_id is not None:
        stmt = stmt.where(Message.project_id == project_id)
    for key, value in params.filters.items():
        stmt = stmt.where(FILTER_COLUMNS[key] == value)
    order = normalise_sort(params.sort_keys, params.sort_dirs, SORT_COLUMNS)
    marker_row = None
    if params.marker is not None:
        marker_row = session.get(Message, params.marker)
        if (
            marker_row is not None
            and project_id is not None
            and (marker_row.project_id != project_id)
        ):
            marker_row = None  # another project's message is not a marker here
        if marker_row is None:
            raise exc.NotFound(f"Marker {params.marker} could not be found.")
    stmt = apply_sort_and_marker(stmt, order, marker_row)
    if params.offset:
        stmt = stmt.offset(params.offset)
    if params.limit is not None:
        stmt = stmt.limit(params.limit)
    return list(session.scalars(stmt))


def delete_one(session: Session, message: Message) -> None:
    session.delete(message)
    session.flush()


def delete_expired(session: Session) -> int:
    result = session.execute(delete(Message).where(Message.expires_at <= utcnow()))
    return result.rowcount or 0  # type: ignore[attr-defined]
