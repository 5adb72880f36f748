"""The crash harness's final checks, after the last restart: nothing transitional,
no unknown or missing backend file, data intact, quota usage exact, audit agreeing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from .crash_support import (
    DB_SNAPSHOT_TRANSITIONAL,
    DB_VOLUME_TRANSITIONAL,
    DEAD_ENDS,
    SEED_MARK_AT,
    SETTLE,
    SNAPSHOT_MUST_EXIST,
    VOLUME_MUST_EXIST,
    GiB,
    Service,
    read_at,
    seed_mark,
    seedsnap_mark,
)
from .crash_worker import (
    Worker,
)
from .support import client_env, server_command


# --- the final checks ---------------------------------------------------------------------
def settle_database(service: Service, failures: list[str]) -> float:
    began = time.monotonic()
    vq = ",".join("?" * len(DB_VOLUME_TRANSITIONAL))
    sq = ",".join("?" * len(DB_SNAPSHOT_TRANSITIONAL))
    while True:
        volumes = service.rows(
            f"SELECT id, status FROM volumes WHERE status IN ({vq})",
            tuple(DB_VOLUME_TRANSITIONAL),
        )
        snapshots = service.rows(
            f"SELECT id, status FROM snapshots WHERE status IN ({sq})",
            tuple(DB_SNAPSHOT_TRANSITIONAL),
        )
        if not volumes and not snapshots:
            return time.monotonic() - began
        if time.monotonic() - began > SETTLE:
            for row in volumes:
                failures.append(f"volume {row['id']} left in {row['status']}")
            for row in snapshots:
                failures.append(f"snapshot {row['id']} left in {row['status']}")
            return time.monotonic() - began
        time.sleep(0.2)


def check_final_state(service: Service, workers: list[Worker], failures: list[str]) -> Counter[str]:
    checked: Counter[str] = Counter()
    vdir = service.volumes_dir
    volumes = {r["id"]: r for r in service.rows("SELECT * FROM volumes")}
    snapshots = {r["id"]: r for r in service.rows("SELECT * FROM snapshots")}
    claims = service.rows("SELECT * FROM manage_claims")
    checked["volume rows"] = len(volumes)
    checked["snapshot rows"] = len(snapshots)
    statuses = Counter(f"volume {r['status']}" for r in volumes.values())
    statuses.update(f"snapshot {r['status']}" for r in snapshots.values())
    sys.stdout.write(f"\n  final statuses: {dict(sorted(statuses.items()))}\n")
    for kind, rows in (("volume", volumes), ("snapshot", snapshots)):
        for row in rows.values():
            if row["status"] in DEAD_ENDS:
                failures.append(f"{kind} {row['id']} ({row['display_name']}) is {row['status']}")
    for claim in claims:
        failures.append(f"manage claim left behind: {dict(claim)}")

    def volume_file(row: sqlite3.Row) -> str:
        return str(row["provider_location"] or f"volume-{row['id']}")

    def snapshot_file(row: sqlite3.Row) -> str:
        if row["provider_location"]:
            return str(row["provider_location"])
        return f"{volume_file(volumes[row['volume_id']])}@snapshot-{row['id']}"

    known_volume_files = {volume_file(r): r for r in volumes.values()}
    known_snapshot_files = {snapshot_file(r): r for r in snapshots.values()}
    files = sorted(os.listdir(vdir))
    checked["files in the backend directory"] = len(files)
    seeds = {s for w in workers for s in w.seeds}
    foreign: list[str] = []
    for name in files:
        if name.startswith(".tmp-"):
            failures.append(f"temp file left behind: {name}")
            continue
        if name.startswith(".") or name in known_volume_files or name in known_snapshot_files:
            continue
        parent, _, snap_part = name.partition("@")
        if not snap_part and name in seeds:
            foreign.append(name)
            continue
        if snap_part.startswith("seedsnap-") and (parent in seeds or parent in known_volume_files):
            foreign.append(name)
            continue
        failures.append(f"file no row knows (orphan): {name}")
    checked["seeded foreign files still unmanaged"] = len(foreign)

    for row in volumes.values():
        path = vdir / volume_file(row)
        if row["status"] in VOLUME_MUST_EXIST:
            checked["volume rows whose file must exist"] += 1
            if not path.is_file():
                failures.append(f"volume {row['id']} is {row['status']} but {path.name} is missing")
            elif path.stat().st_size < row["size"] * GiB:
                failures.append(
                    f"volume {row['id']} file is {path.stat().st_size} bytes < {row['size']} GiB"
                )
    for row in snapshots.values():
        if row["status"] in SNAPSHOT_MUST_EXIST:
            checked["snapshot rows whose file must exist"] += 1
            if not (vdir / snapshot_file(row)).is_file():
                failures.append(f"snapshot {row['id']} is available but its file is missing")

    for worker in workers:
        for volume_id, pattern in worker.patterns.items():
            row = volumes.get(volume_id)
            if row is None or row["status"] not in VOLUME_MUST_EXIST:
                continue
            checked["volume data patterns"] += 1
            got = read_at(vdir / volume_file(row), 0)
            if got != pattern:
                failures.append(f"volume {volume_id} data changed: {got!r} != {pattern!r}")
        for snap_id, data in worker.snap_expect.items():
            row = snapshots.get(snap_id)
            if row is None or row["status"] not in SNAPSHOT_MUST_EXIST:
                continue
            checked["snapshot data"] += 1
            got = read_at(vdir / snapshot_file(row), 0)
            if got != data:
                failures.append(f"snapshot {snap_id} data changed: {got!r} != {data!r}")
        by_name = {
            r["display_name"]: r for r in volumes.values() if r["project_id"] == worker.project
        }
        snaps_by_name = {
            r["display_name"]: r for r in snapshots.values() if r["project_id"] == worker.project
        }
        for seed in worker.seeds:
            checked["seeded files accounted for"] += 1
            places = []
            if (vdir / seed).is_file():
                places.append(vdir / seed)
            row = by_name.get(seed)
            if row is not None and (vdir / volume_file(row)).is_file():
                places.append(vdir / volume_file(row))
            if len(places) > 1:
                failures.append(f"{seed} is both a managed volume and a foreign file: {places}")
            if not places and seed not in worker.delete_asked:
                status = row["status"] if row is not None else "no row"
                failures.append(f"data of seeded file {seed} is gone ({status})")
            for place in places:
                if read_at(place, SEED_MARK_AT) != seed_mark(seed):
                    failures.append(f"seed data of {seed} not in {place.name}")
            suffix = worker.seedsnaps.get(seed)
            if suffix is None:
                continue
            original = f"{seed}@{suffix}"
            checked["seeded snapshot files accounted for"] += 1
            candidates = [vdir / original]
            if row is not None:
                candidates.append(vdir / f"{volume_file(row)}@{suffix}")
            snap_row = snaps_by_name.get(original)
            if snap_row is not None and snap_row["status"] in SNAPSHOT_MUST_EXIST:
                candidates.append(vdir / snapshot_file(snap_row))
            found = [p for p in candidates if p.is_file()]
            asked = original in worker.delete_asked or seed in worker.delete_asked
            if not found and not asked:
                failures.append(f"seeded snapshot file {original} is gone")
            for place in found:
                if read_at(place, 0) != seedsnap_mark(original):
                    failures.append(f"data of {original} not in {place.name}")
    check_quota_usage(service, workers, volumes, snapshots, failures, checked)
    return checked


def check_quota_usage(
    service: Service,
    workers: list[Worker],
    volumes: dict[str, sqlite3.Row],
    snapshots: dict[str, sqlite3.Row],
    failures: list[str],
    checked: Counter[str],
) -> None:
    """Where the schema has quota usage counters: they match the rows, nothing reserved."""
    tables = {r["name"] for r in service.rows("SELECT name FROM sqlite_master")}
    if "quota_usages" not in tables:
        return
    for worker in workers:
        usage = {
            r["resource"]: (r["in_use"], r["reserved"])
            for r in service.rows(
                "SELECT * FROM quota_usages WHERE project_id = ?", (worker.project,)
            )
        }
        vols = [r for r in volumes.values() if r["project_id"] == worker.project]
        snaps = [r for r in snapshots.values() if r["project_id"] == worker.project]
        expected = {
            "volumes": len(vols),
            "snapshots": len(snaps),
            "gigabytes": sum(r["size"] for r in vols) + sum(r["volume_size"] for r in snaps),
        }
        checked["quota usage counters"] += len(expected)
        for resource, want in expected.items():
            in_use, reserved = usage.get(resource, (0, 0))
            if (in_use, reserved) != (want, 0):
                failures.append(
                    f"project of worker {worker.index}: quota {resource} in_use={in_use} "
                    f"reserved={reserved}, rows say {want}"
                )


def run_audit(service: Service, expected_foreign: set[str], failures: list[str]) -> str:
    """`cinderblock audit` must agree: the only drift is the foreign files."""
    cmd = server_command(service.config)
    cmd = [*cmd[: cmd.index("serve")], "audit", "--config", str(service.config), "--json"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=client_env(), timeout=120, check=False
    )
    if result.returncode not in (0, 1):
        failures.append(f"audit exited {result.returncode}: {result.stderr[-2000:]}")
        return result.stdout
    report = json.loads(result.stdout)
    kinds = Counter(item["kind"] for item in report["drift"])
    foreign = {item["object"] for item in report["drift"] if item["kind"] == "foreign"}
    if foreign != expected_foreign:
        failures.append(
            f"audit foreign {sorted(foreign ^ expected_foreign)} differ from the harness's view"
        )
    other = [item for item in report["drift"] if item["kind"] != "foreign"]
    for item in other:
        failures.append(f"audit reports drift: {item}")
    if (result.returncode == 0) != (not report["drift"]):
        failures.append(f"audit exit code {result.returncode} with {dict(kinds)}")
    return result.stdout
