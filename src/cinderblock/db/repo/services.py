"""Service registry rows: which volume services exist and when they last reported."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from cinderblock.db.models import Service, utcnow


def register(session: Session, host: str, binary: str, topic: str, zone: str) -> Service:
    service = session.scalars(
        select(Service).where(Service.host == host, Service.binary == binary)
    ).first()
    now = utcnow()
    if service is None:
        service = Service(
            uuid=str(uuid.uuid4()),
            host=host,
            binary=binary,
            topic=topic,
            availability_zone=zone,
            disabled=False,
            report_count=0,
            created_at=now,
        )
        session.add(service)
    service.availability_zone = zone
    service.updated_at = now
    session.flush()
    return service


def heartbeat(session: Session, service_id: int) -> None:
    service = session.get(Service, service_id)
    if service is not None:
        service.report_count += 1
        service.updated_at = utcnow()


def get_by_host(session: Session, host: str, binary: str) -> Service | None:
    return session.scalars(
        select(Service).where(Service.host == host, Service.binary == binary)
    ).first()


def list_(session: Session, binary: str | None = None) -> list[Service]:
    stmt = select(Service)
    if binary:
        stmt = stmt.where(Service.binary == binary)
    return list(session.scalars(stmt.order_by(Service.id)))


def is_up(service: Service, down_after: int) -> bool:
    last = service.updated_at or service.created_at
    return utcnow() - last <= dt.timedelta(seconds=down_after)


def save_stats(session: Session, host: str, binary: str, stats: dict[str, object]) -> None:
    service = get_by_host(session, host, binary)
    if service is not None:
        service.stats = json.dumps(stats, default=str)
        service.stats_updated_at = utcnow()


def stats_of(service: Service) -> dict[str, object] | None:
    if not service.stats:
        return None
    try:
        value = json.loads(service.stats)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def set_disabled(session: Session, service: Service, disabled: bool, reason: str | None) -> None:
    service.disabled = disabled
    service.disabled_reason = reason if disabled else None
