"""Sorting, keyset pagination and filter helpers shared by list queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, or_, select
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc

_EPOCH = dt.datetime(1970, 1, 1)


@dataclass
class ListParams:
    """What an API list call asks for, already validated for syntax."""

    filters: dict[str, Any] = field(default_factory=dict)
    like_filters: dict[str, str] = field(default_factory=dict)
    time_filters: list[tuple[str, str, dt.datetime]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    marker: str | None = None
    limit: int | None = None
    offset: int = 0
    sort_keys: list[str] = field(default_factory=list)
    sort_dirs: list[str] = field(default_factory=list)
    with_count: bool = False


def _sortable(column: Any) -> Any:
    """Nullable sort columns sort as '' / epoch so keyset comparisons stay total."""
    if not column.nullable:
        return column
    python_type = column.type.python_type
    if python_type is dt.datetime:
        return func.coalesce(column, literal(_EPOCH, column.type))
    if python_type is bool:
        return func.coalesce(column, False)
    if python_type is int:
        return func.coalesce(column, 0)
    return func.coalesce(column, "")


def normalise_sort(
    sort_keys: Sequence[str],
    sort_dirs: Sequence[str],
    columns: Mapping[str, Any],
) -> list[tuple[Any, str]]:
    """Resolve keys to columns and append created_at, id as tie-breakers."""
    keys = list(sort_keys) or ["created_at"]
    dirs = list(sort_dirs) or ["desc"]
    default_dir = dirs[0]
    while len(dirs) < len(keys):
        dirs.append(default_dir)
    for tiebreak in ("created_at", "id"):
        if tiebreak not in keys:
            keys.append(tiebreak)
            dirs.append(default_dir)
    resolved = []
    for key, direction in zip(keys, dirs, strict=True):
        if key not in columns:
            raise exc.InvalidSortKey()
        resolved.append((columns[key], direction))
    return resolved


def apply_sort_and_marker(
    stmt: Select[Any],
    order: list[tuple[Any, str]],
    marker_row: Any | None,
) -> Select[Any]:
    """ORDER BY the keys and, after a marker row, keep only rows that sort later."""
    exprs = [_sortable(col) for col, _ in order]
    directions = [d for _, d in order]
    stmt = stmt.order_by(
        *[e.asc() if d == "asc" else e.desc() for e, d in zip(exprs, directions, strict=True)]
    )
    if marker_row is None:
        return stmt
    values = [getattr(marker_row, col.key) for col, _ in order]
    values = [_marker_value(col, v) for (col, _), v in zip(order, values, strict=True)]
    # Bound parameters, not Python True/False: SQLAlchemy refuses `column < True`.
    values = [
        literal(v, col.type) if isinstance(v, bool) else v
        for (col, _), v in zip(order, values, strict=True)
    ]
    clauses: list[ColumnElement[bool]] = []
    for i, (expr, (_, direction)) in enumerate(zip(exprs, order, strict=True)):
        equal_prefix = [exprs[j] == values[j] for j in range(i)]
        beyond = expr > values[i] if direction == "asc" else expr < values[i]
        clauses.append(and_(*equal_prefix, beyond))
    return stmt.where(or_(false(), *clauses))


def _marker_value(column: Any, value: Any) -> Any:
    if value is not None or not column.nullable:
        return value
    python_type = column.type.python_type
    if python_type is dt.datetime:
        return _EPOCH
    if python_type is bool:
        return False
    if python_type is int:
        return 0
    return ""


def page(
    session: Session,
    stmt: Select[Any],
    model: Any,
    project_id: str | None,
    params: ListParams,
    sort_columns: Mapping[str, Any],
) -> tuple[Select[Any], int | None]:
    """Count (when asked), sort, continue after the marker, offset and limit a filtered
    select over `model`; the marker must be a row of the same project."""
    count = None
    if params.with_count:
        count = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    order = normalise_sort(params.sort_keys, params.sort_dirs, sort_columns)
    marker_row = None
    if params.marker is not None:
        marker_stmt = select(model).where(model.id == params.marker)
        if project_id is not None:
            marker_stmt = marker_stmt.where(model.project_id == project_id)
        marker_row = session.scalars(marker_stmt).first()
        if marker_row is None:
            raise exc.NotFound(f"Marker {params.marker} could not be found.")
    stmt = apply_sort_and_marker(stmt, order, marker_row)
    if params.offset:
        stmt = stmt.offset(params.offset)
    if params.limit is not None:
        stmt = stmt.limit(params.limit)
    return stmt, count
