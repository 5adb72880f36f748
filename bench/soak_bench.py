#!/usr/bin/env python3
"""Soak benchmark: many clients mixing every volume operation against one embedded server.

Starts ``cinderblock serve`` itself (see bench/embedded.py: sqlite, noauth, one backend,
no quotas), then runs ``--clients`` (50) threads for ``--minutes`` (10). Each client owns
a handful of volumes in one shared project and keeps picking an operation at random:
create, list, show, metadata, extend, snapshot create/delete, clone, attach/detach
(attachments API: reserve, connect, complete; delete), delete. Asynchronous operations
are followed by polling the resource until it settles.

Once a minute it prints the requests of that minute, their errors by status, p50/p99
latency, and the server's resident set size (VmRSS from /proc/<pid>/status). At the end:
errors in total, latency per operation, and a verdict on whether RSS stayed flat (last
minute vs minute 2; minute 1 is warm-up).

    .venv/bin/python bench/soak_bench.py                 # memory driver, 10 minutes
    .venv/bin/python bench/soak_bench.py --driver file --minutes 3 --json soak.json

With ``--driver file`` attachments are exported over iSCSI by a private tgtd the service
starts on free ports (tgtd and tgtadm must be installed).

Figures, not assertions; see bench/README.md. Exit status 1 when any request got a 5xx or
a resource ended in an error status (those are bugs), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import datapath_bench
import embedded

VERSION = "volume 3.71"
POLL_SLEEP = 0.05
SETTLE_TIMEOUT = 120.0
MAX_VOLUMES = 4  # per client
MAX_SNAPSHOTS = 2  # per volume


@dataclass
class Sample:
    at: float  # seconds since the start of the run
    op: str
    status: int  # HTTP status; 0 for a transport error
    latency: float  # seconds


@dataclass
class Recorder:
    start: float
    samples: list[Sample] = field(default_factory=list)
    bad_outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: str, status: int, latency: float) -> None:
        sample = Sample(time.monotonic() - self.start, op, status, latency)
        with self.lock:
            self.samples.append(sample)

    def outcome(self, what: str) -> None:
        with self.lock:
            self.bad_outcomes[what] += 1


class Stop(Exception):
    """The run's time is up (raised only between whole operations)."""


@dataclass
class Vol:
    id: str
    size: int
    snapshots: list[str] = field(default_factory=list)
    attachment: str | None = None


class Client:
    """One simulated user: its own connection, its own volumes, random operations."""

    def __init__(self, n: int, base: str, project: str, rec: Recorder, rng: random.Random):
        self.n = n
        self.rec = rec
        self.rng = rng
        self.base = f"{base}/v3/{project}"
        self.http = httpx.Client(
            timeout=60,
            headers={
                "X-Auth-Token": f"admin:{project}",
                "OpenStack-API-Version": VERSION,
                "Accept": "application/json",
            },
        )
        self.volumes: list[Vol] = []
        self.counter = 0

    # --- HTTP with recording -------------------------------------------------------------
    def call(self, op: str, method: str, path: str, body: Any = None) -> httpx.Response | None:
        started = time.monotonic()
        try:
            resp = self.http.request(method, self.base + path, json=body)
        except httpx.HTTPError:
            self.rec.add(op, 0, time.monotonic() - started)
            return None
        self.rec.add(op, resp.status_code, time.monotonic() - started)
        return resp

    def settle(self, kind: str, rid: str, want: str) -> dict[str, Any] | None:
        """Poll until the resource has status `want` ("gone" = 404); None if it did not."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        op = "poll_gone" if want == "gone" else "poll"  # where a 404 is the answer hoped for
        while time.monotonic() < deadline:
            resp = self.call(op, "GET", f"/{kind}s/{rid}")
            if resp is not None and resp.status_code == 404 and want == "gone":
                return {}
            if resp is not None and resp.status_code == 200:
                item = resp.json()[kind]
                if item["status"] == want:
                    return item  # type: ignore[no-any-return]
                if item["status"].startswith("error"):
                    self.rec.outcome(f"{kind} {item['status']}")
                    return None
            time.sleep(POLL_SLEEP)
        self.rec.outcome(f"{kind} stuck (wanted {want})")
        return None

    def name(self) -> str:
        self.counter += 1
        return f"soak-{self.n}-{self.counter}"

    # --- operations ----------------------------------------------------------------------
    def create(self, source: Vol | None = None) -> None:
        body: dict[str, Any] = {"size": 1, "name": self.name()}
        op = "create"
        if source is not None:
            body.update(size=source.size, source_volid=source.id)
            op = "clone"
        resp = self.call(op, "POST", "/volumes", {"volume": body})
        if resp is not None and resp.status_code == 202:
            vid = resp.json()["volume"]["id"]
            if self.settle("volume", vid, "available") is not None:
                self.volumes.append(Vol(vid, body["size"]))
            elif self.call("delete", "DELETE", f"/volumes/{vid}") is not None:
                self.settle("volume", vid, "gone")  # counted above; do not leave it behind

    def delete(self, vol: Vol) -> None:
        resp = self.call("delete", "DELETE", f"/volumes/{vol.id}")
        if resp is not None and resp.status_code == 202:
            self.volumes.remove(vol)
            self.settle("volume", vol.id, "gone")

    def extend(self, vol: Vol) -> None:
        body = {"os-extend": {"new_size": vol.size + 1}}
        resp = self.call("extend", "POST", f"/volumes/{vol.id}/action", body)
        if resp is not None and resp.status_code == 202:
            want = "in-use" if vol.attachment else "available"
            if self.settle("volume", vol.id, want) is not None:
                vol.size += 1

    def snapshot_create(self, vol: Vol) -> None:
        body = {"snapshot": {"volume_id": vol.id, "name": self.name(), "force": True}}
        resp = self.call("snapshot_create", "POST", "/snapshots", body)
        if resp is not None and resp.status_code == 202:
            sid = resp.json()["snapshot"]["id"]
            vol.snapshots.append(sid)
            self.settle("snapshot", sid, "available")

    def snapshot_delete(self, vol: Vol) -> None:
        sid = vol.snapshots[-1]
        resp = self.call("snapshot_delete", "DELETE", f"/snapshots/{sid}")
        if resp is not None and resp.status_code == 202:
            vol.snapshots.remove(sid)
            self.settle("snapshot", sid, "gone")

    def attach(self, vol: Vol) -> None:
        host = f"soak-compute-{self.n}"
        body = {"attachment": {"volume_uuid": vol.id, "instance_uuid": str(uuid.uuid4())}}
        resp = self.call("attach_reserve", "POST", "/attachments", body)
        if resp is None or resp.status_code != 200:
            return
        aid = resp.json()["attachment"]["id"]
        vol.attachment = aid
        connector = {"host": host, "initiator": f"iqn.2004-10.org.soak:{host}", "ip": "192.0.2.9"}
        resp = self.call(
            "attach_connect", "PUT", f"/attachments/{aid}", {"attachment": {"connector": connector}}
        )
        if resp is not None and resp.status_code == 200:
            self.call("attach_complete", "POST", f"/attachments/{aid}/action", {"os-complete": {}})
            self.settle("volume", vol.id, "in-use")

    def detach(self, vol: Vol) -> None:
        resp = self.call("detach", "DELETE", f"/attachments/{vol.attachment}")
        if resp is not None and resp.status_code == 200:
            vol.attachment = None
            self.settle("volume", vol.id, "available")

    def step(self) -> None:
        rng = self.rng
        if len(self.volumes) < 2:
            self.create()
            return
        vol = rng.choice(self.volumes)
        free = [v for v in self.volumes if not v.attachment and not v.snapshots]
        choices: list[tuple[str, int]] = [("list", 3), ("show", 4), ("metadata", 3)]
        if len(self.volumes) < MAX_VOLUMES:
            choices += [("create", 2), ("clone", 1)]
        if vol.size < 4:
            choices.append(("extend", 1))
        if len(vol.snapshots) < MAX_SNAPSHOTS:
            choices.append(("snapshot_create", 2))
        if vol.snapshots:
            choices.append(("snapshot_delete", 2))
        choices.append(("detach" if vol.attachment else "attach", 2))
        if free and len(self.volumes) > 2:
            choices.append(("delete", 2))
        op = rng.choices([c[0] for c in choices], weights=[c[1] for c in choices])[0]
        if op == "list":
            query = rng.choice(["/volumes/detail?limit=50", "/volumes?limit=100", "/snapshots"])
            self.call("list", "GET", query)
        elif op == "show":
            self.call("show", "GET", f"/volumes/{vol.id}")
        elif op == "metadata":
            meta = {"metadata": {"k": str(rng.randrange(1000)), f"n{self.counter % 5}": "v"}}
            self.call("metadata", "POST", f"/volumes/{vol.id}/metadata", meta)
            self.counter += 1
        elif op == "create":
            self.create()
        elif op == "clone":
            self.create(source=vol)
        elif op == "extend":
            self.extend(vol)
        elif op == "snapshot_create":
            self.snapshot_create(vol)
        elif op == "snapshot_delete":
            self.snapshot_delete(vol)
        elif op == "attach":
            self.attach(vol)
        elif op == "detach":
            self.detach(vol)
        elif op == "delete":
            self.delete(rng.choice(free))

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.step()

    def cleanup(self) -> None:
        for vol in list(self.volumes):
            if vol.attachment:
                self.detach(vol)
            for sid in list(vol.snapshots):
                self.snapshot_delete(vol)
                del sid
            self.delete(vol)
        self.http.close()


def low_free_port() -> int:
    """A free TCP port below 32768 (tgtadm's control port must fit in a signed short)."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 32768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class InProcessServer:
    """The service in this process (for --tracemalloc): uvicorn in a thread, like the
    functional tests run it. RSS then includes the clients too; the allocation diff does
    not depend on that."""

    def __init__(self, config: Path) -> None:
        import types

        import uvicorn

        from cinderblock.config import load_settings
        from cinderblock.embedded import build

        settings = load_settings(config)
        self.service = build(settings)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.service.app,
                host="127.0.0.1",
                port=settings.bind_port,
                log_level="warning",
                lifespan="off",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.proc = types.SimpleNamespace(pid=os.getpid())

    def wait_ready(self, url: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                return "the in-process server did not start"
            time.sleep(0.05)
        return None

    def print_logs(self, header: str) -> None:
        print(header, file=sys.stderr)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.service.stop()


def allocation_growth(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot) -> None:
    """Where the Python heap grew between two snapshots, largest first."""
    stats = last.compare_to(first, "traceback")
    grown = sum(s.size_diff for s in stats)
    print(f"\ntracemalloc: Python heap {grown / 1024:+.0f} KiB from minute 2 to the end; top:")
    for stat in stats[:8]:
        print(f"  {stat.size_diff / 1024:+8.0f} KiB in {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format()[-8:]:
            print(f"      {line}")


# --- figures -------------------------------------------------------------------------------
def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]  # nearest rank


def is_error(s: Sample) -> bool:
    if s.op == "poll_gone" and s.status == 404:
        return False
    return s.status >= 400 or s.status == 0  # 0: no HTTP answer at all


def minute_line(minute: int, samples: list[Sample], rss: int | None) -> dict[str, Any]:
    errors = Counter(s.status for s in samples if is_error(s))
    lat = [s.latency * 1000 for s in samples]
    row = {
        "minute": minute,
        "requests": len(samples),
        "errors": dict(sorted(errors.items())),
        "p50_ms": round(percentile(lat, 0.50), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "rss_mib": round(rss / 1024, 1) if rss else None,
    }
    errs = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "none"
    print(
        f"minute {minute:>3}: {row['requests']:>6} requests  errors {errs:<20} "
        f"p50 {row['p50_ms']:>7.1f} ms  p99 {row['p99_ms']:>7.1f} ms  RSS {row['rss_mib']} MiB",
        flush=True,
    )
    return row


def monitor(
    rec: Recorder,
    pid: int,
    minutes: int,
    done: threading.Event,
    rows: list[dict[str, Any]],
    snapshots: list[tracemalloc.Snapshot],
) -> None:
    seen = 0
    for minute in range(1, minutes + 1):
        if done.wait(max(0.0, rec.start + 60 * minute - time.monotonic())):
            return
        rss = rss_kib(pid)
        if tracemalloc.is_tracing() and minute in (2, minutes):
            snapshots.append(tracemalloc.take_snapshot())
        with rec.lock:
            new = rec.samples[seen:]
            seen = len(rec.samples)
        rows.append(minute_line(minute, new, rss))


def summary(rec: Recorder, rows: list[dict[str, Any]], growth_limit: float) -> dict[str, Any]:
    by_status = Counter(s.status for s in rec.samples)
    errors = dict(sorted(Counter(s.status for s in rec.samples if is_error(s)).items()))
    per_op: dict[str, list[float]] = defaultdict(list)
    for s in rec.samples:
        per_op[s.op].append(s.latency * 1000)
    print(f"\nrequests: {len(rec.samples)}  by status: {dict(sorted(by_status.items()))}")
    print(f"errors by status: {errors or 'none'}")
    print(f"resources that ended badly: {dict(rec.bad_outcomes) or 'none'}")
    print(f"{'operation':<18}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    ops = {}
    for op, lat in sorted(per_op.items()):
        ops[op] = {
            "count": len(lat),
            "p50_ms": round(percentile(lat, 0.5), 1),
            "p99_ms": round(percentile(lat, 0.99), 1),
            "mean_ms": round(statistics.fmean(lat), 1),
        }
        o = ops[op]
        print(f"{op:<18}{o['count']:>8}{o['p50_ms']:>10}{o['p99_ms']:>10}{o['mean_ms']:>10}")
    rss = [r["rss_mib"] for r in rows if r["rss_mib"]]
    verdict: dict[str, Any] = {"flat": None}
    if len(rss) >= 3:
        growth = (rss[-1] - rss[1]) / rss[1] * 100
        flat = growth <= growth_limit
        verdict = {"flat": flat, "growth_pct": round(growth, 1), "limit_pct": growth_limit}
        print(
            f"RSS verdict: {'FLAT' if flat else 'GROWING'}: minute 2 {rss[1]} MiB -> "
            f"minute {len(rss)} {rss[-1]} MiB ({growth:+.1f} %, limit {growth_limit:+.1f} %)"
        )
    else:
        print("RSS verdict: run too short (needs 3 minutes or more)")
    return {"errors": errors, "bad_outcomes": dict(rec.bad_outcomes), "ops": ops, "rss": verdict}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=int, default=10, help="duration of the mixed load")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients")
    p.add_argument("--driver", choices=embedded.DRIVERS, default="memory")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--rss-growth-limit", type=float, default=10.0, help="flat means <= this %%")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--server-command", help="as for bench/embedded.py")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="leak hunting: run the service in this process under tracemalloc and print "
        "where the heap grew from minute 2 to the end (slower; RSS includes the clients)",
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep config, database and logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    workdir = Path(tempfile.mkdtemp(prefix="cinderblock-soak-"))
    (workdir / "volumes").mkdir()
    port = embedded.free_port()
    config = workdir / "cinderblock.conf"
    overrides = embedded._parse_set(args.set)
    control = low_free_port()
    if args.driver == "memory":
        # The memory driver reports every provisioned GiB as used (free = capacity -
        # provisioned), so its default 1000 GiB fills up within minutes of 50 clients.
        overrides = [(embedded.BACKEND, "memory_capacity_gb", "1000000"), *overrides]
    if args.driver == "file":
        # Attach needs a target: a private tgtd on free ports, started by the service.
        overrides = [
            (embedded.BACKEND, "target_protocol", "iscsi"),
            (embedded.BACKEND, "tgt_manage_daemon", "true"),
            (embedded.BACKEND, "tgt_control_port", str(control)),
            (embedded.BACKEND, "target_port", str(embedded.free_port())),
            *overrides,
        ]
    config.write_text(embedded.render_config(workdir, port, args.driver, overrides))
    prefix, env = embedded.server_command(args.server_command)
    base = f"http://127.0.0.1:{port}"
    server: embedded.Server | InProcessServer
    if args.tracemalloc:
        tracemalloc.start(8)
        server = InProcessServer(config)
    else:
        server = embedded.Server([*prefix, "serve", "--config", str(config)], env, workdir)
    failed = True
    try:
        problem = server.wait_ready(f"{base}/", 60)
        if problem:
            server.print_logs(problem)
            return embedded.EXIT_SERVER_FAILED
        project = uuid.uuid4().hex
        print(
            f"soak: {args.clients} clients, {args.minutes} min, driver {args.driver}, "
            f"seed {seed}, server pid {server.proc.pid}, RSS at start "
            f"{(rss_kib(server.proc.pid) or 0) / 1024:.1f} MiB",
            flush=True,
        )
        rec = Recorder(time.monotonic())
        master = random.Random(seed)
        clients = [
            Client(n, base, project, rec, random.Random(master.random()))
            for n in range(args.clients)
        ]
        deadline = rec.start + 60 * args.minutes
        threads = [threading.Thread(target=c.run, args=(deadline,)) for c in clients]
        rows: list[dict[str, Any]] = []
        snapshots: list[tracemalloc.Snapshot] = []
        done = threading.Event()
        mon = threading.Thread(
            target=monitor, args=(rec, server.proc.pid, args.minutes, done, rows, snapshots)
        )
        mon.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        mon.join()  # it prints the last minute at the deadline
        done.set()
        cleanup = [threading.Thread(target=c.cleanup) for c in clients]
        for t in cleanup:
            t.start()
        for t in cleanup:
            t.join()
        left = httpx.get(
            f"{base}/v3/{project}/volumes",
            headers={"X-Auth-Token": f"admin:{project}", "OpenStack-API-Version": VERSION},
        ).json()["volumes"]
        print(f"cleanup: {len(left)} volumes left in the project")
        result = summary(rec, rows, args.rss_growth_limit)
        if len(snapshots) == 2:
            allocation_growth(*snapshots)
        server_errors = sum(v for k, v in result["errors"].items() if k >= 500 or k == 0)
        failed = bool(server_errors or rec.bad_outcomes or left)
        if args.json:
            result.update(minutes=rows, seed=seed, clients=args.clients, driver=args.driver)
            args.json.write_text(json.dumps(result, indent=2, default=str))
        return 1 if failed else 0
    finally:
        server.stop()
        if args.driver == "file":
            datapath_bench.shutdown_tgtd(control)  # in case the service left it running
        if failed or args.keep_tmp:
            print(f"kept {workdir} (config, database, server logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
