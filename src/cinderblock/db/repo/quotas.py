"""Quota rows: per-project limits, usage counters and the charge ledger.

How a charge stays race-free on every database:

1. `lock()` takes the usage rows of the resources involved, in sorted order, with an
   upsert that creates a missing row and leaves the caller holding its row lock
   (PostgreSQL `ON CONFLICT DO UPDATE`, MariaDB/MySQL `ON DUPLICATE KEY UPDATE`, which
   locks exclusively; SQLite's `BEGIN IMMEDIATE` already serialises writers).
2. With the locks held, the caller reads the limits (a fresh statement, so it sees any
   limit an admin committed while it waited; the admin path takes the same locks) and
   decides.
3. `apply()` adds to the counters and records one ledger row per resource for the object.

Everything runs in the caller's transaction, so a refused charge rolls back the row
that would have used it. Releases lock the object's ledger rows first, then the usage
rows in sorted order; a release of an already released object finds nothing.

`ensure()` creates missing usage rows ahead of time in its own short transaction:
on MariaDB two transactions that both wait on a third's uncommitted insert of the same
key can deadlock once that third rolls back, so the long transactions should find
their rows already there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from cinderblock.db.models import Quota, QuotaCharge, QuotaUsage, utcnow

# The hot statements use the plain tables: the ORM's statement handling costs more than
# the round trips they make.
_USAGE = QuotaUsage.__table__


@dataclass(frozen=True)
class Usage:
    in_use: int = 0
    reserved: int = 0

    @property
    def consumed(self) -> int:
        return self.in_use + self.reserved


def _upsert_of(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect in ("mysql", "mariadb"):
        return mysql.insert
    return sqlite.insert


def ensure(session: Session, project_id: str, resources: Iterable[str]) -> None:
    """Create the usage rows that are missing (zero); existing rows are left alone."""
    wanted = sorted(set(resources))
    if not wanted:
        return
    have = set(
        session.scalars(
            select(QuotaUsage.resource).where(
                QuotaUsage.project_id == project_id, QuotaUsage.resource.in_(wanted)
            )
        )
    )
    upsert = _upsert_of(session)
    for resource in wanted:
        if resource in have:
            continue
        stmt = upsert(QuotaUsage).values(
            project_id=project_id, resource=resource, in_use=0, reserved=0
        )
        if upsert is mysql.insert:
            stmt = stmt.prefix_with("IGNORE")
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["project_id", "resource"])
        session.execute(stmt)


def lock(session: Session, project_id: str, resources: Iterable[str]) -> dict[str, Usage]:
    """Lock (creating if needed) the usage rows; the locks last until the transaction ends."""
    wanted = sorted(set(resources))
    upsert = _upsert_of(session)
    table = QuotaUsage.__table__
    for resource in wanted:
        stmt = upsert(QuotaUsage).values(
            project_id=project_id, resource=resource, in_use=0, reserved=0
        )
        if upsert is mysql.insert:
            stmt = stmt.on_duplicate_key_update(in_use=table.c.in_use)
        else:
            stmt = stmt.on_conflict_do_update(
                index_elements=["project_id", "resource"], set_={"in_use": table.c.in_use}
            )
        session.execute(stmt)
    if not wanted:
        return {}
    rows = session.execute(
        select(QuotaUsage.resource, QuotaUsage.in_use, QuotaUsage.reserved)
        .where(QuotaUsage.project_id == project_id, QuotaUsage.resource.in_(wanted))
        .with_for_update()
    ).all()
    return {r.resource: Usage(r.in_use, r.reserved) for r in rows}


def lock_existing(
    session: Session, project_id: str, resources: Iterable[str]
) -> dict[str, Usage] | None:
    """Lock usage rows known to exist with one statement, in sorted order (the order every
    charge and release takes them). None when a row is missing: use `lock()` then."""
    wanted = sorted(set(resources))
    usage = _USAGE.c
    rows = session.execute(
        select(usage.resource, usage.in_use, usage.reserved)
        .where(usage.project_id == project_id, usage.resource.in_(wanted))
        .order_by(usage.resource)
        .with_for_update()
    ).all()
    if len(rows) != len(wanted):
        return None
    return {r.resource: Usage(r.in_use, r.reserved) for r in rows}


def record(
    session: Session,
    project_id: str,
    object_id: str,
    deltas: Mapping[str, int],
    *,
    reserved: bool = False,
) -> None:
    """Write the ledger rows of a charge (one statement); the counters are `add_all`'s."""
    now = utcnow()
    session.execute(
        insert(QuotaCharge.__table__),
        [
            {
                "object_id": object_id,
                "project_id": project_id,
                "resource": resource,
                "amount": amount,
                "reserved": reserved,
                "created_at": now,
            }
            for resource, amount in sorted(deltas.items())
        ],
    )


def add_all(
    session: Session, project_id: str, deltas: Mapping[str, int], *, reserved: bool = False
) -> None:
    """Add `deltas` to the counters of rows the caller holds, in one statement (a counter
    never goes below zero, as in `_add`)."""
    usage = _USAGE.c
    column = usage.reserved if reserved else usage.in_use
    total = column + case(dict(deltas), value=usage.resource, else_=0)
    session.execute(
        update(_USAGE)
        .where(usage.project_id == project_id, usage.resource.in_(sorted(deltas)))
        .values({column.key: case((total < 0, 0), else_=total), "updated_at": utcnow()})
    )


def usages(session: Session, project_id: str) -> dict[str, Usage]:
    rows = session.execute(
        select(QuotaUsage.resource, QuotaUsage.in_use, QuotaUsage.reserved).where(
            QuotaUsage.project_id == project_id
        )
    ).all()
    return {r.resource: Usage(r.in_use, r.reserved) for r in rows}


def hard_limits(session: Session, project_id: str) -> dict[str, int]:
    """The limits set for this project (resources without a row use the defaults)."""
    limits = Quota.__table__.c
    rows = session.execute(
        select(limits.resource, limits.hard_limit).where(limits.project_id == project_id)
    ).all()
    return {r.resource: r.hard_limit for r in rows}


def set_limits(session: Session, project_id: str, limits: Mapping[str, int]) -> None:
    have = hard_limits(session, project_id)
    now = utcnow()
    for resource, limit in sorted(limits.items()):
        if resource in have:
            session.execute(
                update(Quota)
                .where(Quota.project_id == project_id, Quota.resource == resource)
                .values(hard_limit=limit, updated_at=now)
            )
        else:
            session.add(
                Quota(project_id=project_id, resource=resource, hard_limit=limit, created_at=now)
            )
    session.flush()


def delete_limits(session: Session, project_id: str) -> None:
    session.execute(delete(Quota).where(Quota.project_id == project_id))


def _add(session: Session, project_id: str, resource: str, in_use: int, reserved: int) -> None:
    """Change the counters (callers hold the row or pass through `lock` first)."""
    values: dict[str, Any] = {"updated_at": utcnow()}
    if in_use:
        values["in_use"] = case(
            (QuotaUsage.in_use + in_use < 0, 0), else_=QuotaUsage.in_use + in_use
        )
    if reserved:
        values["reserved"] = case(
            (QuotaUsage.reserved + reserved < 0, 0), else_=QuotaUsage.reserved + reserved
        )
    session.execute(
        update(QuotaUsage)
        .where(QuotaUsage.project_id == project_id, QuotaUsage.resource == resource)
        .values(**values)
    )


def apply(
    session: Session,
    project_id: str,
    object_id: str,
    deltas: Mapping[str, int],
    *,
    reserved: bool = False,
) -> None:
    """Charge `deltas` for `object_id` without checking limits: lock (creating missing
    usage rows), then ledger and counters."""
    deltas = {r: n for r, n in deltas.items() if n}
    if not deltas:
        return
    lock(session, project_id, deltas)
    record(session, project_id, object_id, deltas, reserved=reserved)
    add_all(session, project_id, deltas, reserved=reserved)


def _take(session: Session, object_id: str, reserved_only: bool) -> list[Any]:
    """The object's ledger rows, locked (a concurrent release then finds them gone)."""
    stmt = select(
        QuotaCharge.id,
        QuotaCharge.project_id,
        QuotaCharge.resource,
        QuotaCharge.amount,
        QuotaCharge.reserved,
    ).where(QuotaCharge.object_id == object_id)
    if reserved_only:
        stmt = stmt.where(QuotaCharge.reserved.is_(True))
    return list(session.execute(stmt.order_by(QuotaCharge.id).with_for_update()).all())


def _totals(charges: list[Any]) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for charge in charges:
        out[(charge.project_id, charge.resource)][1 if charge.reserved else 0] += charge.amount
    return out


def release(session: Session, object_id: str) -> None:
    """Give back everything charged or reserved for the object (its row is going away)."""
    charges = _take(session, object_id, reserved_only=False)
    if not charges:
        return
    session.execute(
        delete(QuotaCharge)
        .where(QuotaCharge.id.in_([c.id for c in charges]))
        .execution_options(synchronize_session=False)
    )
    for (project_id, resource), (in_use, reserved) in sorted(_totals(charges).items()):
        _add(session, project_id, resource, -in_use, -reserved)


def commit_reserved(session: Session, object_id: str) -> None:
    """The reserved work succeeded: its reservations become usage."""
    charges = _take(session, object_id, reserved_only=True)
    if not charges:
        return
    session.execute(
        update(QuotaCharge)
        .where(QuotaCharge.id.in_([c.id for c in charges]))
        .values(reserved=False)
        .execution_options(synchronize_session=False)
    )
    for (project_id, resource), (_, reserved) in sorted(_totals(charges).items()):
        _add(session, project_id, resource, reserved, -reserved)


def rollback_reserved(session: Session, object_id: str) -> None:
    """The reserved work failed or never ran: give its reservations back."""
    charges = _take(session, object_id, reserved_only=True)
    if not charges:
        return
    session.execute(
        delete(QuotaCharge)
        .where(QuotaCharge.id.in_([c.id for c in charges]))
        .execution_options(synchronize_session=False)
    )
    for (project_id, resource), (_, reserved) in sorted(_totals(charges).items()):
        _add(session, project_id, resource, 0, -reserved)


def rename_type(session: Session, old_name: str, new_name: str) -> None:
    """A volume type was renamed: its per-type limits, usage and charges follow it.

    Rows under the new name can only be left over from a deleted type of that name; they
    are dropped first. One resource kind at a time, in the order charges lock them.
    """
    if old_name == new_name:
        return
    for kind in sorted(("gigabytes", "snapshots", "volumes")):
        old, new = f"{kind}_{old_name}", f"{kind}_{new_name}"
        for model in (Quota, QuotaUsage, QuotaCharge):
            session.execute(
                delete(model)
                .where(model.resource == new)
                .execution_options(synchronize_session=False)
            )
        for model in (QuotaUsage, Quota, QuotaCharge):
            session.execute(
                update(model)
                .where(model.resource == old)
                .values(resource=new)
                .execution_options(synchronize_session=False)
            )


def charged(session: Session, object_id: str, resource: str) -> int:
    """What the object is charged (in use or reserved) for one resource."""
    total = session.scalar(
        select(func.coalesce(func.sum(QuotaCharge.amount), 0)).where(
            QuotaCharge.object_id == object_id, QuotaCharge.resource == resource
        )
    )
    return int(total or 0)
