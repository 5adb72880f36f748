"""The crash harness's client: one thread driving a mixed workload in its own project,
surviving kills of the service and checking what it can while running.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .crash_support import (
    BACKEND,
    DELETABLE_ERRORS,
    MAX_SIZE,
    MAX_SNAPSHOTS,
    MAX_VOLUMES,
    SEED,
    SEED_MARK_AT,
    SETTLE,
    SNAPSHOT_BUSY,
    VOLUME_BUSY,
    Expect,
    GiB,
    Interrupted,
    Service,
    Stopped,
    pattern_of,
    read_at,
    seed_mark,
    seedsnap_mark,
    write_at,
)


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
