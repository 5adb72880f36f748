"""`cinderblock audit`: compare the database with what each backend really holds.

    cinderblock audit [--config FILE] [--database-url URL] [--backend NAME] [--json]

Read-only: nothing is changed, neither in the database nor on a backend. For
each configured backend it reports, as drift:

- missing      a row whose status says its object exists, but the backend has no object;
- foreign      an object on the backend that no row knows;
- size         a volume (or snapshot) object smaller than the size its row records;
- transitional a row in a status that means work in flight (with its age: seconds
               on a busy service is normal work, hours is something stuck);
- unreadable   a row whose location the driver refuses (e.g. a corrupted
               provider_location).

Exit status: 0 no drift, 1 drift found, 2 the audit could not check everything
(configuration or database trouble, a backend that cannot be read or listed).

Backends are read without their start-up hook where that hook changes things:
the file driver's `do_setup` removes temp files, which on a running service
belong to operations in progress, so for files the directory is only listed.
Other drivers get `do_setup` (which must not change data) and are asked about
each row with `volume_exists`/`snapshot_exists`; objects no row knows can only
be found where the backend can be listed (the file driver). The in-memory
driver keeps its objects inside the serving process, so it cannot be audited
from outside and is skipped.

The database is read first, then the backends, so work that runs meanwhile can
show up as drift that is gone a moment later (a file being unmanaged appears as
foreign, for instance); run it again, or on a quiet service, before acting on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.engine import make_url

from cinderblock.config import Settings, load_settings
from cinderblock.drivers.base import BaseVD, SnapshotVD
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.refs import GiB
from cinderblock.states import (
    SNAPSHOT_TRANSITIONAL,
    VOLUME_TRANSITIONAL,
    SnapshotStatus,
    VolumeStatus,
)

# Work in flight: the recovery set, plus attach flows and snapshot unmanage.
VOLUME_BUSY = frozenset({*VOLUME_TRANSITIONAL, VolumeStatus.ATTACHING, VolumeStatus.DETACHING})
SNAPSHOT_BUSY = frozenset(SNAPSHOT_TRANSITIONAL)
# Statuses in which the object need not exist (never made, failed, being removed).
VOLUME_MAY_BE_ABSENT = frozenset(
    {
        VolumeStatus.CREATING,
        VolumeStatus.MANAGING,
        VolumeStatus.ERROR,
        VolumeStatus.ERROR_MANAGING,
        VolumeStatus.ERROR_MANAGING_DELETING,
        VolumeStatus.DELETING,
        VolumeStatus.ERROR_DELETING,
        VolumeStatus.UNMANAGING,
        VolumeStatus.ERROR_UNMANAGING,
    }
)
SNAPSHOT_MAY_BE_ABSENT = frozenset(
    {
        SnapshotStatus.CREATING,
        SnapshotStatus.ERROR,
        SnapshotStatus.DELETING,
        SnapshotStatus.ERROR_DELETING,
        SnapshotStatus.UNMANAGING,
    }
)
TMP_PREFIX = ".tmp-"  # the file driver's objects in the making


@dataclass
class Drift:
    backend: str
    kind: str  # missing | foreign | size | transitional | unreadable
    resource: str  # volume | snapshot | - (foreign objects have no row)
    id: str
    object: str
    status: str
    detail: str


@dataclass
class BackendReport:
    host: str
    driver: str
    checked: bool = True
    note: str = ""
    volumes: int = 0
    snapshots: int = 0
    objects: int | None = None  # objects listed (None: the backend cannot be listed)
    temp_files: int = 0


@dataclass
class Audit:
    backends: list[BackendReport] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    incomplete: bool = False
    other_rows: int = 0  # rows on backends this configuration does not name

    def as_dict(self) -> dict[str, Any]:
        return {
            "backends": [asdict(b) for b in self.backends],
            "drift": [asdict(d) for d in self.drift],
            "complete": not self.incomplete,
            "rows_on_other_backends": self.other_rows,
        }


class AuditError(Exception):
    """The audit cannot run at all (no database, no schema...)."""


@dataclass
class _Row:
    """What the audit needs of a volume or snapshot row, read in one transaction."""

    resource: str
    id: str
    status: str
    size: int
    updated: dt.datetime | None
    ref: Any  # VolumeRef | SnapshotRef


# --- reading the database --------------------------------------------------------------
def _open_database(settings: Settings) -> Any:
    from cinderblock.db.database import Database

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:") or not Path(path).is_file():
            raise AuditError(f"no database file at {path or '(memory)'}")
    return Database(settings.database_url)


def _read_rows(db: Any, hosts: Iterable[str]) -> tuple[dict[str, list[_Row]], list[_Row], int]:
    """Rows per backend host, unplaced busy rows, and the count of rows on other hosts."""
    from cinderblock.db.models import Snapshot, Volume
    from cinderblock.volume.refs import snapshot_ref, volume_ref

    wanted = set(hosts)
    per_host: dict[str, list[_Row]] = {h: [] for h in wanted}
    unplaced: list[_Row] = []
    elsewhere = 0
    try:
        with db.session() as session:
            volumes = {v.id: v for v in session.scalars(select(Volume))}
            snapshots = list(session.scalars(select(Snapshot)))
            for volume in volumes.values():
                row = _Row(
                    "volume",
                    volume.id,
                    volume.status,
                    volume.size,
                    volume.updated_at or volume.created_at,
                    volume_ref(volume),
                )
                backend = (volume.host or "").partition("#")[0]
                if not backend:
                    unplaced.append(row)
                elif backend in wanted:
                    per_host[backend].append(row)
                else:
                    elsewhere += 1
            for snapshot in snapshots:
                parent = volumes.get(snapshot.volume_id)
                if parent is None:
                    continue
                backend = (parent.host or "").partition("#")[0]
                if backend not in wanted:
                    elsewhere += bool(backend)
                    continue
                per_host[backend].append(
                    _Row(
                        "snapshot",
                        snapshot.id,
                        snapshot.status,
                        snapshot.volume_size,
                        snapshot.updated_at or snapshot.created_at,
                        snapshot_ref(snapshot, parent),
                    )
                )
    except Exception as err:
        raise AuditError(f"cannot read the database: {err}") from err
    return per_host, unplaced, elsewhere


# --- checks -----------------------------------------------------------------------------
def _age(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "for an unknown time"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"for {seconds}s"
    if seconds < 7200:
        return f"for {seconds // 60}m"
    if seconds < 172800:
        return f"for {seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"for {seconds // 86400}d"


def _transitional(backend: str, rows: Iterable[_Row], now: dt.datetime) -> list[Drift]:
    out = []
    for row in rows:
        busy = VOLUME_BUSY if row.resource == "volume" else SNAPSHOT_BUSY
        if row.status in busy:
            out.append(
                Drift(
                    backend,
                    "transitional",
                    row.resource,
                    row.id,
                    "",
                    row.status,
                    _age(row.updated, now),
                )
            )
    return out


def _may_be_absent(row: _Row) -> bool:
    if row.resource == "volume":
        return row.status in VOLUME_MAY_BE_ABSENT
    return row.status in SNAPSHOT_MAY_BE_ABSENT


def _size(nbytes: int) -> str:
    if nbytes < 1024**2:
        return f"{nbytes} bytes"
    if nbytes < GiB:
        return f"{nbytes / 1024**2:.1f} MiB"
    return f"{nbytes / GiB:.2f} GiB"


def _audit_file_backend(
    host: str, driver: Any, rows: list[_Row], report: BackendReport
) -> list[Drift]:
    """The file driver: list its directory, match every name against the rows."""
    from cinderblock.exceptions import CinderblockError

    directory = driver.volumes_dir
    if not directory or not os.path.isdir(directory):
        raise AuditError(f"{directory!r} is not a directory")
    drift: list[Drift] = []
    expected: dict[str, _Row] = {}
    for row in rows:
        try:
            if row.resource == "volume":
                name = driver._volume_file(row.ref)  # the driver's own naming (layout.py)
            else:
                name = driver._snapshot_file(row.ref)
        except CinderblockError as err:
            drift.append(Drift(host, "unreadable", row.resource, row.id, "", row.status, str(err)))
            continue
        expected[name] = row
    listing: dict[str, os.stat_result] = {}
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name.startswith(TMP_PREFIX):
                report.temp_files += 1
                continue
            if entry.name.startswith("."):
                continue  # the driver's own state (target state directories...)
            try:
                listing[entry.name] = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
    report.objects = len(listing)
    for name, row in sorted(expected.items()):
        st = listing.get(name)
        if st is None or not stat.S_ISREG(st.st_mode):
            if not _may_be_absent(row):
                what = "no such file" if st is None else "not a regular file"
                drift.append(Drift(host, "missing", row.resource, row.id, name, row.status, what))
            continue
        if st.st_size < row.size * GiB:
            drift.append(
                Drift(
                    host,
                    "size",
                    row.resource,
                    row.id,
                    name,
                    row.status,
                    f"file is {_size(st.st_size)}, the row says {row.size} GiB",
                )
            )
    volume_files = {n for n, r in expected.items() if r.resource == "volume"}
    for name, st in sorted(listing.items()):
        if name in expected:
            continue
        parent, sep, _ = name.partition("@")
        if not sep:
            what = "volume file"
        elif parent in volume_files:
            what = f"snapshot file of volume {expected[parent].id}"
        else:
            what = f"snapshot file of {parent!r}, which no row knows"
        if not stat.S_ISREG(st.st_mode):
            what = "not a regular file"
        drift.append(Drift(host, "foreign", "-", "-", name, "", f"{what}, {_size(st.st_size)}"))
    return drift


def _audit_generic_backend(
    host: str, driver: BaseVD, rows: list[_Row], report: BackendReport
) -> list[Drift]:
    """Any other driver: ask about each row; objects no row knows cannot be found."""
    driver.do_setup()
    driver.check_for_setup_error()
    report.note = "objects no row knows and sizes are not checked (the driver cannot list)"
    drift = []
    for row in rows:
        if row.resource == "volume":
            exists = driver.volume_exists(row.ref)
        elif isinstance(driver, SnapshotVD):
            exists = driver.snapshot_exists(row.ref)
        else:
            continue
        if not exists and not _may_be_absent(row):
            drift.append(
                Drift(host, "missing", row.resource, row.id, "", row.status, "not on the backend")
            )
    return drift


def _audit_backend(
    settings: Settings, backend: BackendConfig, rows: list[_Row], now: dt.datetime
) -> tuple[BackendReport, list[Drift]]:
    from cinderblock.drivers.file.driver import FileDriver
    from cinderblock.drivers.memory.driver import MemoryDriver
    from cinderblock.drivers.registry import load_driver

    host = f"{settings.host}@{backend.name}"
    report = BackendReport(host=host, driver=backend.volume_driver)
    report.volumes = sum(1 for r in rows if r.resource == "volume")
    report.snapshots = len(rows) - report.volumes
    drift = _transitional(host, rows, now)
    try:
        driver = load_driver(backend, host)
        if isinstance(driver, MemoryDriver):
            report.checked = False
            report.note = "skipped: the memory driver's objects live inside the serving process"
            return report, drift
        if isinstance(driver, FileDriver):
            drift += _audit_file_backend(host, driver, rows, report)
        else:
            drift += _audit_generic_backend(host, driver, rows, report)
    except Exception as err:
        report.checked = False
        report.note = f"cannot be read: {err}"
    return report, drift


def run_audit(settings: Settings, only: Iterable[str] = ()) -> Audit:
    only = set(only)
    backends = [b for b in settings.backends if not only or b.name in only]
    unknown = only - {b.name for b in settings.backends}
    if unknown:
        raise AuditError(f"no such backend in the configuration: {', '.join(sorted(unknown))}")
    db = _open_database(settings)
    try:
        hosts = [f"{settings.host}@{b.name}" for b in backends]
        per_host, unplaced, elsewhere = _read_rows(db, hosts)
    finally:
        db.dispose()
    now = dt.datetime.now(dt.UTC)
    audit = Audit(other_rows=elsewhere)
    for backend in backends:
        host = f"{settings.host}@{backend.name}"
        report, drift = _audit_backend(settings, backend, per_host[host], now)
        audit.backends.append(report)
        audit.drift += drift
        audit.incomplete |= not report.checked and not report.note.startswith("skipped")
    audit.drift += _transitional("-", unplaced, now)
    return audit


# --- output -----------------------------------------------------------------------------
def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def write_report(audit: Audit, out: TextIO) -> None:
    for b in audit.backends:
        listed = "" if b.objects is None else f", {b.objects} object(s) listed"
        temp = f", {b.temp_files} temp file(s) of work in progress" if b.temp_files else ""
        state = "" if b.checked and not b.note else f" ({b.note})"
        out.write(
            f"backend {b.host} [{b.driver}]: {b.volumes} volume row(s), "
            f"{b.snapshots} snapshot row(s){listed}{temp}{state}\n"
        )
    if audit.other_rows:
        out.write(f"{audit.other_rows} row(s) on backends not configured here: not checked\n")
    if audit.drift:
        out.write("\n")
        rows = [("BACKEND", "KIND", "RESOURCE", "ID", "STATUS", "OBJECT", "DETAIL")]
        order = {"missing": 0, "size": 1, "unreadable": 2, "foreign": 3, "transitional": 4}
        for d in sorted(audit.drift, key=lambda d: (d.backend, order.get(d.kind, 9), d.object)):
            rows.append(
                (d.backend, d.kind, d.resource, d.id, d.status or "-", d.object or "-", d.detail)
            )
        _table(rows, out)
        out.write(f"\n{len(audit.drift)} drift item(s)\n")
    else:
        out.write("no drift\n")
    if audit.incomplete:
        out.write("the audit is incomplete: some backends could not be checked\n")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        settings = load_settings(getattr(args, "config", None), getattr(args, "database_url", None))
        audit = run_audit(settings, args.backend or ())
    except AuditError as err:
        print(f"cinderblock audit: {err}", file=sys.stderr)
        return 2
    if args.json:
        out.write(json.dumps(audit.as_dict(), indent=2) + "\n")
    else:
        write_report(audit, out)
    if audit.incomplete:
        return 2
    return 1 if audit.drift else 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "audit", help="report drift between the database and the backends (changes nothing)"
    )
    parser.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    parser.add_argument("--database-url", dest="database_url", default=argparse.SUPPRESS)
    parser.add_argument("--backend", action="append", help="audit only this backend (repeatable)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)
