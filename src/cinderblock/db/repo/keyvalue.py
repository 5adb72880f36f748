"""Key/value child rows (volume and snapshot metadata) kept in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cinderblock.db.models import utcnow


def lock_owner(session: Session, owner: Any, collection: str) -> None:
    """Serialise writers of one owner's rows: lock the owner's row, then re-read the rows
    whoever held the lock before us committed. Without it two writers of a new key both
    insert it and one dies on the unique constraint (PostgreSQL/MariaDB; SQLite already
    runs one write transaction at a time)."""
    cls = type(owner)
    session.execute(select(cls.id).where(cls.id == owner.id).with_for_update())
    session.refresh(owner, [collection])


def set_items(
    session: Session,
    owner: Any,
    rows: list[Any],
    make_row: Callable[[str, str], Any],
    items: Mapping[str, str],
    *,
    replace: bool,
) -> dict[str, str]:
    """Merge `items` into the owner's rows, or make them exactly `items` with replace."""
    current = {row.key: row for row in rows}
    if replace:
        for key, row in list(current.items()):
            if key not in items:
                rows.remove(row)
                session.delete(row)
    for key, value in items.items():
        if key in current:
            current[key].value = value
        else:
            rows.append(make_row(key, value))
    owner.updated_at = utcnow()
    session.flush()
    return {row.key: row.value for row in rows}


def delete_item(session: Session, owner: Any, rows: list[Any], key: str) -> bool:
    """Remove one key; False when the owner has no such key."""
    for row in rows:
        if row.key == key:
            rows.remove(row)
            session.delete(row)
            owner.updated_at = utcnow()
            session.flush()
            return True
    return False
