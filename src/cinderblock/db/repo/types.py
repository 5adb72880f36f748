"""Volume types and their extra specs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from cinderblock import exceptions as exc
from cinderblock.db.models import VolumeType, VolumeTypeExtraSpec, utcnow
from cinderblock.db.query import apply_sort_and_marker, normalise_sort

SORT_COLUMNS: dict[str, Any] = {
    "id": VolumeType.id,
    "name": VolumeType.name,
    "description": VolumeType.description,
    "is_public": VolumeType.is_public,
    "created_at": VolumeType.created_at,
    "updated_at": VolumeType.updated_at,
}


def extra_specs_of(volume_type: VolumeType) -> dict[str, str | None]:
    return {spec.key: spec.value for spec in volume_type.extra_specs}


def get(session: Session, type_id: str) -> VolumeType:
    volume_type = session.get(VolumeType, type_id)
    if volume_type is None:
        raise exc.VolumeTypeNotFound(volume_type_id=type_id)
    return volume_type


def get_by_name(session: Session, name: str) -> VolumeType | None:
    """The type with its extra specs, in one statement (every volume create asks)."""
    stmt = (
        select(VolumeType)
        .options(joinedload(VolumeType.extra_specs))
        .where(VolumeType.name == name)
    )
    return session.scalars(stmt).unique().first()


def get_by_name_or_id(session: Session, ident: str) -> VolumeType:
    volume_type = session.get(VolumeType, ident) or get_by_name(session, ident)
    if volume_type is None:
        raise exc.VolumeTypeNotFoundByName(volume_type_name=ident)
    return volume_type


def list_(
    session: Session,
    is_public: bool | None,
    sort_keys: list[str],
    sort_dirs: list[str],
    marker: str | None,
    limit: int | None,
    offset: int,
) -> list[VolumeType]:
    stmt = select(VolumeType)
    if is_public is not None:
        stmt = stmt.where(VolumeType.is_public == is_public)
    order = normalise_sort(sort_keys or ["created_at"], sort_dirs or ["asc"], SORT_COLUMNS)
    marker_row = None
    if marker is not None:
        marker_row = session.get(VolumeType, marker)
        if marker_row is None:
            raise exc.NotFound(f"Marker {marker} could not be found.")
    stmt = apply_sort_and_marker(stmt, order, marker_row)
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def create(
    session: Session,
    name: str,
    description: str | None,
    is_public: bool,
    extra_specs: Mapping[str, str | None],
    type_id: str | None = None,
) -> VolumeType:
    if get_by_name(session, name) is not None:
        raise exc.VolumeTypeExists(name=name)
    volume_type = VolumeType(
        id=type_id or str(uuid.uuid4()), name=name, description=description, is_public=is_public
    )
    volume_type.extra_specs = [VolumeTypeExtraSpec(key=k, value=v) for k, v in extra_specs.items()]
    session.add(volume_type)
    try:
        session.flush()
    except IntegrityError as err:
        raise exc.VolumeTypeExists(name=name) from err
    return volume_type


def set_extra_specs(
    session: Session, volume_type: VolumeType, specs: Mapping[str, str | None]
) -> None:
    current = {s.key: s for s in volume_type.extra_specs}
    for key, value in specs.items():
        if key in current:
            current[key].value = value
        else:
            volume_type.extra_specs.append(VolumeTypeExtraSpec(key=key, value=value))
    volume_type.updated_at = utcnow()
    session.flush()


def delete_extra_spec(session: Session, volume_type: VolumeType, key: str) -> None:
    for spec in volume_type.extra_specs:
        if spec.key == key:
            volume_type.extra_specs.remove(spec)
            session.delete(spec)
            session.flush()
            return
    raise exc.VolumeTypeExtraSpecsNotFound(volume_type_id=volume_type.id, key=key)
