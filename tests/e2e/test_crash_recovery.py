"""Crash safety: `kill -9` a busy `cinderblock serve` again and again, then check the result.

One `cinderblock serve` (file backend in a temporary directory, SQLite) runs as a
subprocess. Several client threads, each in a project of its own, drive a mixed
workload through the HTTP API: create, snapshot, volume from snapshot, clone of
a volume, extend, manage of pre-seeded foreign files (some with foreign snapshot
files beside them), manage of those snapshot files, unmanage of both, delete.
The main thread kills the service with SIGKILL at random moments and restarts
it; the clients notice, wait until it answers and carry on from what the API
then shows. The last kill comes with the stop signal, so the final start-up
has interrupted work to recover too.

Every random choice (kill delays, operations, their targets) comes from RNGs
seeded with CINDERBLOCK_CRASH_SEED, so a failing run can be replayed (the
timing of the kills relative to the work still varies from machine to machine).

After the final restart and a settle time, the checks are:
- no volume or snapshot row in a transitional status, no manage claim left;
- no file in the backend directory that no row knows, other than the seeded
  foreign files still unmanaged (and their foreign snapshot files), no temp file;
- no row whose file is missing (volumes available/in-use/error_extending,
  snapshots available), no volume file smaller than its recorded size;
- data: each volume got a known pattern written into its file when it became
  available; every such volume still has it, every snapshot holds what its
  volume held when it was taken, volumes made from a snapshot or another
  volume held their source's data, each seeded file's data is where the
  database says (or its deletion was asked for);
- `cinderblock audit` run against the same config reports only the foreign files.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .support import client_env, free_port, server_answers, server_command

SEED = int(os.environ.get("CINDERBLOCK_CRASH_SEED", "20250611"))
CYCLES = int(os.environ.get("CINDERBLOCK_CRASH_CYCLES", "9"))
WORKERS = int(os.environ.get("CINDERBLOCK_CRASH_WORKERS", "4"))
KILL_AFTER = (2.0, 9.0)  # seconds of work between a start and the next kill
SETTLE = 60.0  # seconds the final state may take to settle
# Per worker (one project each); the default quotas allow 10 of each.
MAX_VOLUMES = 8
MAX_SNAPSHOTS = 8
MAX_SIZE = 4  # GiB
GiB = 1024**3
MiB = 1024**2
SEED_MARK_AT = MiB  # seeded files carry their mark here; volume patterns go at 0
HOST = "crash"
BACKEND = f"{HOST}@files"

VOLUME_BUSY = {
    "creating",
    "deleting",
    "extending",
    "unmanaging",
    "reverting",
    "attaching",
    "detaching",
    "retyping",
    "downloading",
    "uploading",
    "backing-up",
    "restoring-backup",
    "maintenance",
}
SNAPSHOT_BUSY = {"creating", "deleting", "restoring", "unmanaging", "updating", "backing-up"}
# Internal (database) statuses that mean work in flight.
DB_VOLUME_TRANSITIONAL = VOLUME_BUSY | {"managing", "error_managing_deleting"}
DB_SNAPSHOT_TRANSITIONAL = SNAPSHOT_BUSY
VOLUME_MUST_EXIST = {"available", "in-use", "error_extending"}
SNAPSHOT_MUST_EXIST = {"available"}
DELETABLE_ERRORS = {"error", "error_extending", "error_restoring"}
# Where a crash must not leave anything: the user can neither retry nor delete it.
DEAD_ENDS = {"error_unmanaging", "error_deleting"}


def pattern_of(volume_id: str) -> bytes:
    return f"VOL:{volume_id}:".encode().ljust(64, b".")


def seed_mark(name: str) -> bytes:
    return f"SEED:{name}:".encode().ljust(64, b".")


def seedsnap_mark(name: str) -> bytes:
    return f"SEEDSNAP:{name}:".encode().ljust(64, b".")


def read_at(path: Path, offset: int, length: int = 64) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


# --- the service under test -------------------------------------------------------------
class Service:
    """`cinderblock serve` in a subprocess that can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.volumes_dir = directory / "volumes"
        self.db_path = directory / "cinderblock.sqlite"
        self.config = directory / "cinderblock.conf"
        self.log = directory / "server.log"
        self.config.write_text(
            f"""[DEFAULT]
host = {HOST}
enabled_backends = files
bind_host = 127.0.0.1
bind_port = {self.port}
state_path = {directory}
report_interval = 1

[database]
connection = sqlite:///{self.db_path}

[files]
volume_driver = file
volume_backend_name = files
file_volumes_dir = {self.volumes_dir}
"""
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.up = threading.Event()
        self.start_times: list[float] = []

    def start(self) -> None:
        began = time.monotonic()
        with self.log.open("ab") as log:
            log.write(f"\n===== start {len(self.start_times) + 1} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                server_command(self.config),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=client_env(),
            )
        deadline = time.monotonic() + 60
        while not server_answers(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"cinderblock exited:\n{self.log.read_text()[-5000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cinderblock did not answer:\n{self.log.read_text()[-5000:]}")
            time.sleep(0.05)
        self.start_times.append(time.monotonic() - began)
        self.up.set()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, in-flight work is cut wherever it is."""
        self.up.clear()
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.up.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def rows(self, query: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(query, args))
        finally:
            conn.close()


class Interrupted(Exception):
    """The service went away under a request (killed): what happened is unknown."""


class Stopped(Exception):
    pass


@dataclass
class Expect:
    """What a volume or snapshot made by a request should hold at offset 0 (None: unknown)."""

    data: bytes | None
    what: str


@dataclass
class Worker:
    """One client thread: a project of its own, its seeded foreign files, a seeded RNG."""

    index: int
    service: Service
    stop: threading.Event
    failures: list[str]
    rng: random.Random = field(init=False)
    project: str = field(init=False)
    client: httpx.Client = field(init=False)
    seeds: list[str] = field(default_factory=list)  # foreign volume files seeded for us
    seedsnaps: dict[str, str] = field(default_factory=dict)  # seed -> its snapshot file suffix
    vols: dict[str, dict[str, Any]] = field(default_factory=dict)
    snaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    patterns: dict[str, bytes] = field(default_factory=dict)  # volume id -> written pattern
    snap_expect: dict[str, bytes] = field(default_factory=dict)  # snapshot id -> offset 0
    pending: dict[str, Expect] = field(default_factory=dict)  # by name: made by a request
    delete_asked: set[str] = field(default_factory=set)  # seed / seedsnap names
    ops: Counter[str] = field(default_factory=Counter)  # completed operations
    interrupted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    refusal_samples: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(SEED * 1000 + self.index)
        self.project = uuid.UUID(int=self.rng.getrandbits(128)).hex
        self.client = httpx.Client(
            timeout=30,
            headers={
                "X-Auth-Token": f"admin:{self.project}",
                "OpenStack-API-Version": "volume 3.71",
                "Accept": "application/json",
            },
        )

    # --- seeding (before the first start) --------------------------------------------------
    def seed_files(self) -> None:
        for k in range(4):
            name = f"seed-w{self.index}-{k}"
            size = GiB + 256 * 1024 if k % 2 == 0 else GiB
            path = self.service.volumes_dir / name
            with path.open("wb") as f:
                f.truncate(size)
            write_at(path, SEED_MARK_AT, seed_mark(name))
            self.seeds.append(name)
            if k < 2:
                suffix = f"seedsnap-{k}"
                snap = self.service.volumes_dir / f"{name}@{suffix}"
                with snap.open("wb") as f:
                    f.truncate(GiB)
                write_at(snap, 0, seedsnap_mark(f"{name}@{suffix}"))
                self.seedsnaps[name] = suffix

    # --- HTTP ----------------------------------------------------------------------------------
    def fail(self, text: str) -> None:
        self.failures.append(f"worker {self.index}: {text}")

    def http(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        if self.stop.is_set() and not self.service.up.is_set():
            raise Stopped()
        try:
            resp = self.client.request(
                method,
                f"{self.service.url}/v3/{self.project}{path}",
                json=body,
                params=params,
            )
        except httpx.TransportError as err:
            raise Interrupted(str(err)) from err
        if resp.status_code >= 500:
            self.fail(f"{method} {path} -> {resp.status_code}: {resp.text[:300]}")
            raise Interrupted(f"{resp.status_code}")
        return resp

    def name(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}-w{self.index}-{self.counter}"

    def show(self, kind: str, obj_id: str) -> dict[str, Any] | None:
        resp = self.http("GET", f"/{kind}s/{obj_id}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            self.fail(f"GET {kind} {obj_id} -> {resp.status_code} {resp.text[:200]}")
            return None
        return resp.json()[kind]  # type: ignore[no-any-return]

    def settle(self, kind: str, obj_id: str, timeout: float = SETTLE) -> dict[str, Any] | None:
        """Poll until the object is in a stable status (None: it is gone)."""
        busy = VOLUME_BUSY if kind == "volume" else SNAPSHOT_BUSY
        deadline = time.monotonic() + timeout
        while True:
            obj = self.show(kind, obj_id)
            if obj is None or obj["status"] not in busy:
                return obj
            if time.monotonic() > deadline:
                self.fail(f"{kind} {obj_id} stuck in {obj['status']} for {timeout:.0f}s")
                return obj
            time.sleep(0.05)

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        try:
            if not self.recover_from_crash():  # the first look at the project
                return
            while not self.stop.is_set():
                op = self.choose()
                try:
                    op()
                except Interrupted:
                    self.interrupted[op.__name__] += 1
                    if not self.recover_from_crash():
                        return
        except Stopped:
            return
        except Exception:
            self.fail(f"crashed:\n{traceback.format_exc()}")

    def recover_from_crash(self) -> bool:
        """Wait until the service answers again, then resync; False once told to stop."""
        while True:
            if self.stop.is_set():
                return False
            if not self.service.up.wait(timeout=0.2):
                continue
            try:
                self.resync()
                return True
            except Interrupted:
                continue

    def resync(self) -> None:
        """Rebuild what we know from the API after a crash cut a request short."""
        for kind, busy in (("volume", VOLUME_BUSY), ("snapshot", SNAPSHOT_BUSY)):
            listing = self.http("GET", f"/{kind}s/detail").json()[f"{kind}s"]
            for obj in listing:
                if obj["status"] in busy:
                    self.settle(kind, obj["id"])
        volumes = self.http("GET", "/volumes/detail").json()["volumes"]
        snapshots = self.http("GET", "/snapshots/detail").json()["snapshots"]
        self.vols = {v["id"]: v for v in volumes}
        self.snaps = {s["id"]: s for s in snapshots}
        for volume in volumes:
            if volume["status"] == "available" and volume["id"] not in self.patterns:
                self.became_available(volume)
        for snap in snapshots:
            expect = self.pending.pop(snap["name"] or "", None)
            known = snap["id"] in self.snap_expect
            if not known and expect and expect.data is not None and snap["status"] == "available":
                self.check_snapshot_file(snap, expect)

    # --- what to do next ----------------------------------------------------------------
    def choose(self):  # type: ignore[no-untyped-def]
        """The next operation, weighted; volume and snapshot counts stay under the quotas."""
        vols = list(self.vols.values())
        snaps = list(self.snaps.values())
        available = [v for v in vols if v["status"] == "available"]
        broken = [v for v in vols if v["status"] in DELETABLE_ERRORS] + [
            s for s in snaps if s["status"] == "error"
        ]
        room = len(vols) < MAX_VOLUMES
        snap_room = len(snaps) < MAX_SNAPSHOTS
        crowded = len(vols) >= MAX_VOLUMES - 2 or len(snaps) >= MAX_SNAPSHOTS - 2
        options: list[tuple[Any, float]] = []
        if room:
            options.append((self.op_create, 3))
        if broken:
            options.append((self.op_cleanup, 4))
        if available:
            options += [(self.op_extend, 2), (self.op_delete_volume, 4 if crowded else 1.5)]
            if snap_room:
                options.append((self.op_snapshot, 3))
            if room:
                options.append((self.op_clone_volume, 1.5))
        if any(s["status"] == "available" for s in snaps):
            options.append((self.op_delete_snapshot, 3 if crowded else 2))
            if room:
                options.append((self.op_clone_snapshot, 2))
        if room and self.free_seeds():
            options.append((self.op_manage, 3))
        if self.managed_volumes():
            options.append((self.op_unmanage, 1.5))
        if snap_room and self.foreign_snapshot_files():
            options.append((self.op_manage_snapshot, 2))
        if self.managed_snapshots():
            options.append((self.op_unmanage_snapshot, 1.5))
        if not options:
            return self.op_idle
        ops, weights = zip(*options, strict=True)
        return self.rng.choices(ops, weights=weights)[0]

    def op_idle(self) -> None:
        time.sleep(0.1)
        self.resync()

    def free_seeds(self) -> list[str]:
        names = {v["name"] for v in self.vols.values()}
        return [
            s for s in self.seeds if s not in names and (self.service.volumes_dir / s).is_file()
        ]

    def managed_volumes(self) -> list[dict[str, Any]]:
        with_snaps = {s["volume_id"] for s in self.snaps.values()}
        return [
            v
            for v in self.vols.values()
            if v["name"] in self.seeds and v["status"] == "available" and v["id"] not in with_snaps
        ]

    def foreign_snapshot_files(self) -> list[tuple[dict[str, Any], str]]:
        found = []
        for v in self.vols.values():
            suffix = self.seedsnaps.get(v["name"])
            if v["status"] != "available" or suffix is None:
                continue
            name = f"volume-{v['id']}@{suffix}"
            if (self.service.volumes_dir / name).is_file():
                found.append((v, name))
        return found

    def managed_snapshots(self) -> list[dict[str, Any]]:
        return [
            s
            for s in self.snaps.values()
            if s["status"] == "available" and (s["name"] or "").startswith("seed-")
        ]

    # --- checks while running -------------------------------------------------------------
    def volume_path(self, volume_id: str) -> Path:
        return self.service.volumes_dir / f"volume-{volume_id}"

    def became_available(self, volume: dict[str, Any], expect: Expect | None = None) -> None:
        """First sight of a volume as available: check what it was made from, then mark it."""
        path = self.volume_path(volume["id"])
        expect = expect or self.pending.pop(volume["name"] or "", None)
        if not path.is_file():
            self.fail(f"available volume {volume['id']} ({volume['name']}) has no file")
            return
        if path.stat().st_size < volume["size"] * GiB:
            self.fail(f"volume {volume['id']} file is smaller than {volume['size']} GiB")
        if expect is not None and expect.data is not None:
            self.checks["source data in new volume"] += 1
            got = read_at(path, 0)
            if got != expect.data:
                self.fail(
                    f"volume {volume['id']} ({expect.what}) holds {got!r}, not {expect.data!r}"
                )
        if volume["name"] in self.seeds:
            self.checks["seed data in managed volume"] += 1
            got = read_at(path, SEED_MARK_AT)
            if got != seed_mark(volume["name"]):
                self.fail(f"managed volume {volume['id']} lost the data of {volume['name']}")
        write_at(path, 0, pattern_of(volume["id"]))
        self.patterns[volume["id"]] = pattern_of(volume["id"])

    def check_snapshot_file(self, snap: dict[str, Any], expect: Expect) -> None:
        path = self.service.volumes_dir / f"volume-{snap['volume_id']}@snapshot-{snap['id']}"
        self.checks["snapshot data"] += 1
        got = read_at(path, 0)
        if got != expect.data:
            self.fail(f"snapshot {snap['id']} ({expect.what}) holds {got!r}, not {expect.data!r}")
        if expect.data is not None:
            self.snap_expect[snap["id"]] = expect.data

    def pick(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return self.rng.choice(sorted(items, key=lambda o: o["id"]))

    def accepted(self, op: str, resp: httpx.Response, *codes: int) -> bool:
        if resp.status_code in (codes or (202,)):
            return True
        # Refusals are legitimate (e.g. the volume's state changed); counted, not failed.
        self.refused[op] += 1
        self.refusal_samples.setdefault(op, f"{resp.status_code} {resp.text[:200]}")
        return False

    def wait_new_volume(self, op: str, volume_id: str, name: str) -> None:
        volume = self.settle("volume", volume_id)
        if volume is None:
            self.fail(f"volume {volume_id} made by {op} vanished")
            return
        self.vols[volume_id] = volume
        if volume["status"] == "available":
            self.became_available(volume, self.pending.pop(name, None))
            self.ops[op] += 1
        else:
            self.pending.pop(name, None)
            self.ops[f"{op} -> {volume['status']}"] += 1

    # --- operations -------------------------------------------------------------------
    def op_create(self) -> None:
        name = self.name("vol")
        resp = self.http("POST", "/volumes", {"volume": {"size": 1, "name": name}})
        if self.accepted("create", resp):
            self.wait_new_volume("create", resp.json()["volume"]["id"], name)

    def op_snapshot(self) -> None:
        volume = self.pick([v for v in self.vols.values() if v["status"] == "available"])
        name = self.name("snap")
        expect = Expect(self.patterns.get(volume["id"]), f"snapshot of {volume['id']}")
        self.pending[name] = expect
        body = {"snapshot": {"volume_id": volume["id"], "name": name}}
        resp = self.http("POST", "/snapshots", body)
        if not self.accepted("snapshot", resp):
            return
        snap = self.settle("snapshot", resp.json()["snapshot"]["id"])
        self.pending.pop(name, None)
        if snap is None:
            return
        self.snaps[snap["id"]] = snap
        if snap["status"] == "available":
            self.check_snapshot_file(snap, expect)
            self.ops["snapshot"] += 1
        else:
            self.ops[f"snapshot -> {snap['status']}"] += 1

    def op_clone_snapshot(self) -> None:
        snap = self.pick([s for s in self.snaps.values() if s["status"] == "available"])
        name = self.name("fromsnap")
        self.pending[name] = Expect(self.snap_expect.get(snap["id"]), f"from snapshot {snap['id']}")
        size = snap["size"] + self.rng.choice((0, 0, 1))
        body = {"volume": {"size": size, "snapshot_id": snap["id"], "name": name}}
        resp = self.http("POST", "/volumes", body)
        if self.accepted("volume from snapshot", resp):
            self.wait_new_volume("volume from snapshot", resp.json()["volume"]["id"], name)
        else:
            self.pending.pop(name, None)

    def op_clone_volume(self) -> None:
        src = self.pick([v for v in self.vols.values() if v["status"] == "available"])
        name = self.name("clone")
        self.pending[name] = Expect(self.patterns.get(src["id"]), f"clone of {src['id']}")
        body = {"volume": {"size": src["size"], "source_volid": src["id"], "name": name}}
        resp = self.http("POST", "/volumes", body)
        if self.accepted("clone", resp):
            self.wait_new_volume("clone", resp.json()["volume"]["id"], name)
        else:
            self.pending.pop(name, None)

    def op_extend(self) -> None:
        candidates = [
            v for v in self.vols.values() if v["status"] == "available" and v["size"] < MAX_SIZE
        ]
        if not candidates:
            return
        volume = self.pick(candidates)
        new_size = volume["size"] + 1
        resp = self.http(
            "POST", f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": new_size}}
        )
        if not self.accepted("extend", resp):
            return
        after = self.settle("volume", volume["id"])
        if after is None:
            self.fail(f"volume {volume['id']} vanished while extending")
            self.vols.pop(volume["id"], None)
            return
        self.vols[volume["id"]] = after
        if after["status"] == "available":
            self.checks["extended size"] += 1
            if after["size"] != new_size:
                self.fail(f"extend of {volume['id']} ended with size {after['size']}")
            st = self.volume_path(volume["id"]).stat()
            if st.st_size < new_size * GiB:
                self.fail(f"extended volume {volume['id']} file is {st.st_size} bytes")
            self.ops["extend"] += 1
        else:
            self.ops[f"extend -> {after['status']}"] += 1

    def op_manage(self) -> None:
        seed = self.rng.choice(self.free_seeds())
        self.pending[seed] = Expect(None, f"managed {seed}")
        body = {"volume": {"host": BACKEND, "ref": {"source-name": seed}, "name": seed}}
        resp = self.http("POST", "/manageable_volumes", body)
        if self.accepted("manage", resp):
            self.wait_new_volume("manage", resp.json()["volume"]["id"], seed)
        else:
            self.pending.pop(seed, None)

    def op_manage_snapshot(self) -> None:
        volume, file_name = self.rng.choice(self.foreign_snapshot_files())
        original = f"{volume['name']}@{file_name.split('@', 1)[1]}"
        expect = Expect(seedsnap_mark(original), f"managed {original}")
        self.pending[original] = expect
        body = {
            "snapshot": {
                "volume_id": volume["id"],
                "ref": {"source-name": file_name},
                "name": original,
            }
        }
        resp = self.http("POST", "/manageable_snapshots", body)
        if not self.accepted("manage snapshot", resp):
            self.pending.pop(original, None)
            return
        snap = self.settle("snapshot", resp.json()["snapshot"]["id"])
        self.pending.pop(original, None)
        if snap is None:
            return
        self.snaps[snap["id"]] = snap
        if snap["status"] == "available":
            self.check_snapshot_file(snap, expect)
            self.ops["manage snapshot"] += 1
        else:
            self.ops[f"manage snapshot -> {snap['status']}"] += 1

    def op_unmanage(self) -> None:
        volume = self.pick(self.managed_volumes())
        resp = self.http("POST", f"/volumes/{volume['id']}/action", {"os-unmanage": {}})
        if not self.accepted("unmanage", resp):
            return
        after = self.settle("volume", volume["id"])
        if after is not None:
            self.vols[volume["id"]] = after
            self.ops[f"unmanage -> {after['status']}"] += 1
            return
        self.vols.pop(volume["id"], None)
        self.patterns.pop(volume["id"], None)
        self.checks["unmanaged file back under its name"] += 1
        back = self.service.volumes_dir / volume["name"]
        if read_at(back, SEED_MARK_AT) != seed_mark(volume["name"]):
            self.fail(f"unmanaged volume {volume['id']} is not back as {volume['name']}")
        self.ops["unmanage"] += 1

    def op_unmanage_snapshot(self) -> None:
        snap = self.pick(self.managed_snapshots())
        resp = self.http("POST", f"/snapshots/{snap['id']}/action", {"os-unmanage": {}})
        if not self.accepted("unmanage snapshot", resp):
            return
        after = self.settle("snapshot", snap["id"])
        if after is not None:
            self.snaps[snap["id"]] = after
            self.ops[f"unmanage snapshot -> {after['status']}"] += 1
            return
        self.snaps.pop(snap["id"], None)
        self.snap_expect.pop(snap["id"], None)
        suffix = snap["name"].split("@", 1)[1]
        back = self.service.volumes_dir / f"volume-{snap['volume_id']}@{suffix}"
        self.checks["unmanaged snapshot file back under its name"] += 1
        if read_at(back, 0) != seedsnap_mark(snap["name"]):
            self.fail(f"unmanaged snapshot {snap['id']} is not back as {back.name}")
        self.ops["unmanage snapshot"] += 1

    def op_delete_snapshot(self) -> None:
        snap = self.pick([s for s in self.snaps.values() if s["status"] == "available"])
        self.delete_snapshot(snap, "delete snapshot")

    def delete_snapshot(self, snap: dict[str, Any], op: str) -> None:
        if (snap["name"] or "").startswith("seed-"):
            self.delete_asked.add(snap["name"])
        resp = self.http("DELETE", f"/snapshots/{snap['id']}")
        if not self.accepted(op, resp):
            return
        after = self.settle("snapshot", snap["id"])
        if after is None:
            self.snaps.pop(snap["id"], None)
            self.ops[op] += 1
        else:
            self.snaps[snap["id"]] = after
            self.ops[f"{op} -> {after['status']}"] += 1

    def op_delete_volume(self) -> None:
        volume = self.pick([v for v in self.vols.values() if v["status"] == "available"])
        self.delete_volume(volume, "delete")

    def delete_volume(self, volume: dict[str, Any], op: str) -> None:
        has_snapshots = any(s["volume_id"] == volume["id"] for s in self.snaps.values())
        cascade = has_snapshots or self.rng.random() < 0.3
        if volume["name"] in self.seeds:
            self.delete_asked.add(volume["name"])
        if cascade:
            for snap in self.snaps.values():
                if snap["volume_id"] == volume["id"] and (snap["name"] or "").startswith("seed-"):
                    self.delete_asked.add(snap["name"])
        resp = self.http(
            "DELETE", f"/volumes/{volume['id']}", params={"cascade": str(cascade).lower()}
        )
        if not self.accepted(op, resp):
            return
        after = self.settle("volume", volume["id"])
        if after is None:
            self.vols.pop(volume["id"], None)
            for snap_id in [s for s, v in self.snaps.items() if v["volume_id"] == volume["id"]]:
                self.snaps.pop(snap_id)
            self.ops[op + (" (cascade)" if cascade else "")] += 1
        else:
            # Busy (it keeps foreign snapshot files); a cascade removed its snapshots first.
            self.ops[f"{op} -> {after['status']}"] += 1
            self.resync()

    def op_cleanup(self) -> None:
        snaps = [s for s in self.snaps.values() if s["status"] == "error"]
        if snaps:
            self.delete_snapshot(self.pick(snaps), "delete failed snapshot")
            return
        vols = [v for v in self.vols.values() if v["status"] in DELETABLE_ERRORS]
        self.delete_volume(self.pick(vols), "delete failed volume")


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


def test_kill_9_under_load_leaves_a_consistent_service(tmp_path: Path) -> None:
    began = time.monotonic()
    service = Service(tmp_path)
    service.volumes_dir.mkdir()
    failures: list[str] = []
    stop = threading.Event()
    workers = [Worker(i, service, stop, failures) for i in range(WORKERS)]
    for worker in workers:
        worker.seed_files()
    kills = random.Random(SEED)
    threads = [
        threading.Thread(target=w.run, name=f"crash-worker-{w.index}", daemon=True) for w in workers
    ]
    service.start()
    try:
        for thread in threads:
            thread.start()
        delays = []
        for cycle in range(CYCLES):
            delay = kills.uniform(*KILL_AFTER)
            delays.append(delay)
            time.sleep(delay)
            if cycle == CYCLES - 1:
                stop.set()  # the last kill cuts work that only the final start-up recovers
            service.kill()
            service.start()
        for thread in threads:
            thread.join(timeout=SETTLE + 30)
            assert not thread.is_alive(), f"{thread.name} did not stop"
        settle_time = settle_database(service, failures)
        checked = check_final_state(service, workers, failures)
        expected_foreign = set()
        files = set(os.listdir(service.volumes_dir))
        for worker in workers:
            for seed in worker.seeds:
                if seed in files:
                    expected_foreign.add(seed)
            for name in files:
                if "@seedsnap-" in name:
                    expected_foreign.add(name)
        audit_output = run_audit(service, expected_foreign, failures)
    finally:
        stop.set()
        service.stop()

    ops: Counter[str] = Counter()
    interrupted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    run_checks: Counter[str] = Counter()
    for worker in workers:
        ops.update(worker.ops)
        interrupted.update(worker.interrupted)
        refused.update(worker.refused)
        run_checks.update(worker.checks)
    elapsed = time.monotonic() - began
    out = sys.stdout
    out.write(
        f"\ncrash harness: seed {SEED}, {WORKERS} workers, {CYCLES} kill -9/restart cycles "
        f"in {elapsed:.1f}s (kills after {', '.join(f'{d:.1f}' for d in delays)}s of work)\n"
    )
    out.write("  start-up times: " + ", ".join(f"{t:.2f}s" for t in service.start_times) + "\n")
    out.write(f"  final settle: {settle_time:.1f}s\n")
    out.write(f"  operations completed ({sum(ops.values())}):\n")
    for name, count in sorted(ops.items()):
        out.write(f"    {name}: {count}\n")
    out.write(f"  operations cut by a kill ({sum(interrupted.values())}):\n")
    for name, count in sorted(interrupted.items()):
        out.write(f"    {name.removeprefix('op_')}: {count}\n")
    if refused:
        out.write(f"  refused by the API: {dict(refused)}\n")
        samples: dict[str, str] = {}
        for worker in workers:
            for op, text in worker.refusal_samples.items():
                samples.setdefault(op, text)
        for op, text in sorted(samples.items()):
            out.write(f"    e.g. {op}: {text}\n")
    out.write("  checked while running:\n")
    for name, count in sorted(run_checks.items()):
        out.write(f"    {name}: {count}\n")
    out.write("  checked after the final restart:\n")
    for name, count in sorted(checked.items()):
        out.write(f"    {name}: {count}\n")
    out.write(f"  audit output:\n{audit_output}\n")
    if failures:
        out.write(f"  FAILURES ({len(failures)}):\n")
        for text in failures:
            out.write(f"    - {text}\n")
        out.write(f"  server log: {service.log}\n")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    assert not failures, "\n".join(failures[:50])
