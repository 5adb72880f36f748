"""Per-project quotas: effective limits, checking and charging, and the quota-set API logic.

Limits: a project's own rows (PUT /os-quota-sets) over the [DEFAULT] quota_* defaults;
per-type limits (volumes_<type>, gigabytes_<type>, snapshots_<type>) default to -1.
-1 means unlimited. per_volume_gigabytes caps one request; it is not a usage.

What is charged, always inside the transaction that makes the change:

| operation | charge |
|---|---|
| volume create | volumes +1, gigabytes +size (+ the per-type pair), with the row insert |
| snapshot create | snapshots +1, gigabytes +volume size (+ per type), with the row insert |
| extend | gigabytes +delta reserved with the status change; the manager commits it |
|        | with the new size, or gives it back when the extend fails |
| manage volume | volumes +1 at the API; gigabytes reserved by the volume manager once |
|               | the driver reports the size, committed when the manage completes |
| manage snapshot | snapshots +1 at the API; gigabytes likewise in the manager |

Everything charged for an object is given back when its row is deleted (delete,
unmanage); an object in error keeps its charge until then, as in Cinder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cinderblock import exceptions as exc
from cinderblock.config import Settings
from cinderblock.db.database import Database
from cinderblock.db.models import Snapshot, Volume, VolumeType
from cinderblock.db.repo import quotas as quotas_repo

if TYPE_CHECKING:
    from cinderblock.services.common import ServiceDeps

PER_VOLUME = "per_volume_gigabytes"
BASE_RESOURCES = ("volumes", "snapshots", "gigabytes", "backups", "backup_gigabytes", "groups")
PER_TYPE = ("volumes", "snapshots", "gigabytes")
COUNTED = ("volumes", "snapshots", "gigabytes")  # what this service charges today
NON_QUOTA_KEYS = ("id", "tenant_id")
DB_MAX_INT = 2147483647


def typed(resource: str, type_name: str | None) -> str | None:
    return f"{resource}_{type_name}" if type_name else None


def volume_deltas(size: int, type_name: str | None, *, count: int = 1) -> dict[str, int]:
    """What one volume costs, in Cinder's order (the first over-quota key names the error)."""
    deltas = {"volumes": count, "gigabytes": size}
    if type_name:
        deltas[f"volumes_{type_name}"] = count
        deltas[f"gigabytes_{type_name}"] = size
    return {k: v for k, v in deltas.items() if v}


def snapshot_deltas(size: int, type_name: str | None, *, count: int = 1) -> dict[str, int]:
    deltas = {"snapshots": count, "gigabytes": size}
    if type_name:
        deltas[f"snapshots_{type_name}"] = count
        deltas[f"gigabytes_{type_name}"] = size
    return {k: v for k, v in deltas.items() if v}


class QuotaEngine:
    """Built once per process (it remembers which usage rows exist)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._known_rows: set[tuple[str, str]] = set()
        self._prepared: set[str] = set()
        self._guard = threading.Lock()

    @classmethod
    def for_deps(cls, deps: ServiceDeps) -> QuotaEngine:
        if deps.quotas is None:
            deps.quotas = cls(deps.settings)
        return deps.quotas

    # --- limits ------------------------------------------------------------------
    def base_defaults(self) -> dict[str, int]:
        s = self.settings
        return {
            "volumes": s.quota_volumes,
            "snapshots": s.quota_snapshots,
            "gigabytes": s.quota_gigabytes,
            "backups": s.quota_backups,
            "backup_gigabytes": s.quota_backup_gigabytes,
            "groups": s.quota_groups,
            PER_VOLUME: s.per_volume_size_limit,
        }

    @staticmethod
    def type_names(session: Session) -> list[str]:
        return sorted(session.scalars(select(VolumeType.name)))

    def defaults(self, session: Session) -> dict[str, int]:
        """Every key of a quota set with its default limit."""
        out = self.base_defaults()
        for name in self.type_names(session):
            for resource in PER_TYPE:
                out[f"{resource}_{name}"] = -1
        return out

    def _default_of(self, resource: str) -> int:
        return self.base_defaults().get(resource, -1)

    def limits(self, session: Session, project_id: str) -> dict[str, int]:
        """Every key of the project's quota set with its effective limit."""
        out = self.defaults(session)
        hard = quotas_repo.hard_limits(session, project_id)
        return {key: hard.get(key, default) for key, default in out.items()}

    def limit_of(self, session: Session, project_id: str, resource: str) -> int:
        hard = quotas_repo.hard_limits(session, project_id)
        return hard.get(resource, self._default_of(resource))

    # --- charging ----------------------------------------------------------------
    def prepare(self, db: Database, project_id: str, resources: Iterable[str] = ()) -> None:
        """Make sure the project's usage rows exist, in a transaction of their own, before
        a transaction that charges them starts (see repo/quotas.py: on MariaDB creating
        them inside the charging transactions can deadlock). SQLite needs none of this;
        its writers are serialised. Call it outside any open session. Free once this
        process has prepared the project (rows of a type made later are created by
        `charge`, also in a transaction of their own)."""
        if db.engine.dialect.name == "sqlite":
            return
        wanted = set(resources)
        with self._guard:
            if project_id in self._prepared and self._known(project_id, wanted):
                return
        with db.session() as session:
            names = self.type_names(session)
        wanted.update(COUNTED)
        wanted.update(f"{r}_{n}" for n in names for r in PER_TYPE)
        self._create_rows(db.engine, project_id, wanted)
        with self._guard:
            self._prepared.add(project_id)

    def _known(self, project_id: str, resources: Iterable[str]) -> bool:
        return all((project_id, r) in self._known_rows for r in resources)

    def _create_rows(self, bind: Engine, project_id: str, resources: Iterable[str]) -> None:
        """Create the missing usage rows in a short transaction on a connection of its own."""
        with self._guard:
            missing = {r for r in resources if (project_id, r) not in self._known_rows}
        if not missing:
            return
        with Session(bind) as session, session.begin():
            quotas_repo.ensure(session, project_id, missing)
        with self._guard:
            self._known_rows.update((project_id, r) for r in missing)

    def check_volume_size(self, session: Session, project_id: str, size: int) -> None:
        """per_volume_gigabytes: a cap on one volume, not a usage (413 like Cinder)."""
        limit = self.limit_of(session, project_id, PER_VOLUME)
        if limit >= 0 and size > limit:
            raise exc.VolumeSizeExceedsLimit(size=size, limit=limit)

    def charge(
        self,
        session: Session,
        project_id: str,
        object_id: str,
        deltas: Mapping[str, int],
        *,
        kind: str,
        requested: int,
        reserve: bool = False,
        size_cap: int | None = None,
    ) -> None:
        """Check and charge in the caller's transaction; raise the Cinder error when over.

        `kind` ("volumes" or "snapshots") picks the error for a count over quota;
        `requested` is the size named in a gigabytes error; `size_cap`, a new volume's
        size, is checked against per_volume_gigabytes first (read with the other limits).
        """
        deltas = {r: n for r, n in deltas.items() if n}
        if not deltas:
            if size_cap is not None:
                self.check_volume_size(session, project_id, size_cap)
            return
        bind = session.get_bind()
        if bind.dialect.name != "sqlite" and isinstance(bind, Engine):
            self._create_rows(bind, project_id, deltas)
        # The ledger needs no lock: written first, only the check and the counter update
        # (two statements and the commit) run under the usage rows' locks.
        quotas_repo.record(session, project_id, object_id, deltas, reserved=reserve)
        usage = quotas_repo.lock_existing(session, project_id, deltas)
        if usage is None:  # rows not made yet (SQLite) or gone: create them under the lock
            usage = quotas_repo.lock(session, project_id, deltas)
        # Read after the locks: a limit an admin changed while we waited is seen here.
        hard = quotas_repo.hard_limits(session, project_id)
        if size_cap is not None:
            cap = hard.get(PER_VOLUME, self._default_of(PER_VOLUME))
            if cap >= 0 and size_cap > cap:
                raise exc.VolumeSizeExceedsLimit(size=size_cap, limit=cap)
        for resource, amount in deltas.items():
            limit = hard.get(resource, self._default_of(resource))
            used = usage.get(resource, quotas_repo.Usage())
            if amount > 0 and limit >= 0 and used.consumed + amount > limit:
                raise _over_quota(kind, resource, limit, used.consumed, requested)
        quotas_repo.add_all(session, project_id, deltas, reserved=reserve)

    # --- quota sets (API) ----------------------------------------------------------
    def quota_set(self, session: Session, project_id: str, usage: bool) -> dict[str, Any]:
        limits = self.limits(session, project_id)
        body: dict[str, Any]
        if usage:
            used = quotas_repo.usages(session, project_id)
            body = {
                key: {
                    "limit": limit,
                    "in_use": used[key].in_use if key in used else 0,
                    "reserved": used[key].reserved if key in used else 0,
                }
                for key, limit in limits.items()
            }
        else:
            body = dict(limits)
        return body

    def update(self, db: Database, project_id: str, changes: Mapping[str, Any]) -> None:
        """Set limits (admin). Lowering a limit below what is in use is refused (400)."""
        if not project_id or len(project_id) > 255:
            raise exc.InvalidInput(reason="quota_set_name has more than 255 characters.")
        with db.session() as session:
            keys = self.defaults(session)
        bad = [k for k in changes if k not in keys and k not in NON_QUOTA_KEYS]
        if bad:
            raise exc.InvalidInput(reason=f"Bad key(s) in quota set: {', '.join(bad)}")
        limits = {
            key: _limit_value(key, value)
            for key, value in changes.items()
            if key not in NON_QUOTA_KEYS
        }
        counted = [k for k in limits if k != PER_VOLUME]
        self.prepare(db, project_id, counted)
        with db.session() as session:
            # The usage locks serialise this with every charge of these resources.
            usage = quotas_repo.lock(session, project_id, counted)
            for key in counted:
                consumed = usage[key].consumed if key in usage else 0
                if limits[key] >= 0 and limits[key] < consumed:
                    raise exc.Invalid(
                        f"Quota {key} limit must be equal or greater than existing resources."
                    )
            quotas_repo.set_limits(session, project_id, limits)

    def reset(self, db: Database, project_id: str) -> None:
        with db.session() as session:
            quotas_repo.delete_limits(session, project_id)


def settle_snapshot_gigabytes(session: Session, snapshot_id: str) -> None:
    """Charge a snapshot exactly its row's gigabytes, without a limit check: for recovery,
    which finishes an interrupted manage whether or not its reservation was made."""
    row = session.execute(
        select(Snapshot.project_id, Snapshot.volume_size, VolumeType.name)
        .join(Volume, Volume.id == Snapshot.volume_id)
        .join(VolumeType, VolumeType.id == Volume.volume_type_id)
        .where(Snapshot.id == snapshot_id)
    ).first()
    if row is None:
        return
    diff = row.volume_size - quotas_repo.charged(session, snapshot_id, "gigabytes")
    quotas_repo.apply(session, row.project_id, snapshot_id, volume_deltas(diff, row.name, count=0))


def _limit_value(key: str, value: Any) -> int:
    """Cinder's validate_integer(value, key, min_value=-1, max_value=MAX_INT)."""
    if isinstance(value, bool):
        raise exc.InvalidInput(reason=f"{key} must be an integer.")
    try:
        number = int(str(value))
    except ValueError as err:
        raise exc.InvalidInput(reason=f"{key} must be an integer.") from err
    if number < -1:
        raise exc.InvalidInput(reason=f"{key} must be >= -1")
    if number > DB_MAX_INT:
        raise exc.InvalidInput(reason=f"{key} must be <= {DB_MAX_INT}")
    return number


def _over_quota(kind: str, resource: str, limit: int, consumed: int, requested: int) -> Exception:
    """Cinder's process_reserve_over_quota: which error a resource over quota gives."""
    if resource == "gigabytes" or resource.startswith("gigabytes_"):
        return exc.VolumeSizeExceedsAvailableQuota(
            name=resource, requested=requested, quota=limit, consumed=consumed
        )
    if kind == "snapshots":
        return exc.SnapshotLimitExceeded(allowed=limit, name=resource)
    return exc.VolumeLimitExceeded(allowed=limit, name=resource)
