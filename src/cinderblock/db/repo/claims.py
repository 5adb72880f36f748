"""Manage claims: a primary key on (backend, reference) lets one manage request win."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.db.models import ManageClaim


def claim(session: Session, backend_host: str, reference: str, resource_id: str) -> None:
    """Claim in the caller's transaction; 400 when another request holds the object."""
    try:
        with session.begin_nested():
            session.add(
                ManageClaim(backend_host=backend_host, reference=reference, resource_id=resource_id)
            )
            session.flush()
    except IntegrityError as err:
        raise exc.InvalidInput(
            reason=f"{reference} on {backend_host} is already being managed by another request."
        ) from err


def release(session: Session, resource_id: str) -> None:
    session.execute(delete(ManageClaim).where(ManageClaim.resource_id == resource_id))
