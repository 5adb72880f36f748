#!/usr/bin/env python3
"""RBD backend benchmark on a real single-node Ceph cluster, through the whole service.

Prints figures; it is not a test. Brings up a throw-away cluster with
scripts/ceph-cluster.sh (or uses one given by --cluster-env, the env file
that script writes), runs cinderblock in this process (API over HTTP on
127.0.0.1, embedded scheduler and volume service, SQLite, noauth) with one
`rbd` backend, and measures from the API request until the object is usable:

* ``create``: POST /volumes (1 GiB) -> status available;
* ``snapshot``: POST /snapshots -> available;
* ``clone``: POST /volumes with source_volid (COW clone of a volume) -> available;
* ``from_snapshot``: POST /volumes with snapshot_id -> available;
* ``delete``: DELETE /volumes/<id> of a clone -> 404;
* ``delete_parent``: DELETE of a volume with a clone (flattens the clone) -> 404;
* ``manageable_*``: GET /manageable_volumes/detail with 1,000 foreign images in
  the pool: first page (limit 100, default sort), all 1,000 (limit 1000),
  first page sorted by size (every image's size is read).

    .venv/bin/python bench/rbd_bench.py [--runs 20] [--images 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cinderblock.config import load_settings  # noqa: E402
from cinderblock.embedded import build  # noqa: E402

HOST = "rbdbench@ceph"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    def __init__(self, base: str) -> None:
        project = uuid.uuid4().hex
        self.base = f"{base}/v3/{project}"
        self.http = httpx.Client(
            timeout=120,
            headers={"X-Auth-Token": f"admin:{project}", "OpenStack-API-Version": "volume 3.71"},
        )

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.post(self.base + path, json=body)
        resp.raise_for_status()
        return dict(resp.json())

    def wait(self, kind: str, oid: str, status: str) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            resp = self.http.get(f"{self.base}/{kind}s/{oid}")
            if status == "deleted" and resp.status_code == 404:
                return
            if resp.status_code == 200:
                got = resp.json()[kind]["status"]
                if got == status:
                    return
                if got.startswith("error"):
                    why = self.http.get(f"{self.base}/messages?resource_uuid={oid}").text
                    raise RuntimeError(f"{kind} {oid} went to {got}: {why}")
            time.sleep(0.005)
        raise RuntimeError(f"{kind} {oid} never became {status}")

    def volume(self, **fields: Any) -> str:
        vid = self.post("/volumes", {"volume": {"size": 1, **fields}})["volume"]["id"]
        self.wait("volume", vid, "available")
        return str(vid)

    def delete(self, kind: str, oid: str) -> None:
        self.http.delete(f"{self.base}/{kind}s/{oid}").raise_for_status()
        self.wait(kind, oid, "deleted")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--listing-runs", type=int, default=10)
    parser.add_argument("--cluster-env", type=Path, help="env file of a running cluster")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import rados
    import rbd

    work = Path(tempfile.mkdtemp(prefix="cb-rbd-bench-"))
    own_cluster = args.cluster_env is None
    script = ROOT / "scripts" / "ceph-cluster.sh"
    figures: dict[str, Any] = {}
    try:
        if own_cluster:
            start = time.monotonic()
            out = subprocess.run(
                [str(script), "up", str(work / "ceph")], check=True, capture_output=True, text=True
            )
            figures["cluster_up_s"] = round(time.monotonic() - start, 1)
            env = read_env(Path(out.stdout.strip().splitlines()[-1]))
        else:
            env = read_env(args.cluster_env)
        namespace = f"bench{uuid.uuid4().hex[:8]}"
        port = free_port()
        config = work / "cinderblock.conf"
        config.write_text(
            f"""[DEFAULT]
host = rbdbench
enabled_backends = ceph
bind_host = 127.0.0.1
bind_port = {port}
state_path = {work}
auth_strategy = noauth
quota_volumes = -1
quota_snapshots = -1
quota_gigabytes = -1

[database]
connection = sqlite:///{work / "cb.sqlite"}

[ceph]
volume_driver = rbd
volume_backend_name = ceph
rbd_pool = {env["CEPH_POOL"]}
rbd_ceph_conf = {env["CEPH_CONF"]}
rbd_user = {env["CEPH_USER"]}
rbd_keyring = {env["CEPH_USER_KEYRING"]}
rbd_namespace = {namespace}
"""
        )
        import uvicorn

        service = build(load_settings(config))
        server = uvicorn.Server(
            uvicorn.Config(service.app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        api = Api(f"http://127.0.0.1:{port}")
        try:
            samples: dict[str, list[float]] = {
                k: []
                for k in ("create", "snapshot", "clone", "from_snapshot", "delete", "delete_parent")
            }
            for _ in range(args.runs):
                ms, vid = timed(api.volume)
                samples["create"].append(ms)
                ms, body = timed(
                    lambda vid=vid: api.post("/snapshots", {"snapshot": {"volume_id": vid}})
                )
                sid = body["snapshot"]["id"]
                ms2, _ = timed(lambda sid=sid: api.wait("snapshot", sid, "available"))
                samples["snapshot"].append(ms + ms2)
                ms, clone = timed(lambda vid=vid: api.volume(source_volid=vid))
                samples["clone"].append(ms)
                ms, child = timed(lambda sid=sid: api.volume(snapshot_id=sid))
                samples["from_snapshot"].append(ms)
                ms, _ = timed(lambda child=child: api.delete("volume", child))
                samples["delete"].append(ms)
                api.delete("snapshot", sid)
                ms, _ = timed(lambda vid=vid: api.delete("volume", vid))  # flattens `clone`
                samples["delete_parent"].append(ms)
                api.delete("volume", clone)
            for key, values in samples.items():
                figures[key] = summary(values)

            # 1,000 foreign images, made directly as the admin (not measured).
            client = rados.Rados(
                conffile=env["CEPH_CONF"],
                rados_id="admin",
                conf={"keyring": env["CEPH_ADMIN_KEYRING"]},
            )
            client.connect()
            ioctx = client.open_ioctx(env["CEPH_POOL"])
            ioctx.set_namespace(namespace)
            start = time.monotonic()
            for i in range(args.images):
                rbd.RBD().create(ioctx, f"legacy-{i:05d}", (1 + i % 7) * 1024**3)
            figures["seed_images_s"] = round(time.monotonic() - start, 1)
            ioctx.close()
            client.shutdown()
            listing = f"{api.base}/manageable_volumes/detail?host={HOST}"
            for name, query in (
                ("manageable_first_page", "&limit=100"),
                ("manageable_all", f"&limit={args.images}"),
                ("manageable_size_page", "&limit=100&sort=size:desc"),
            ):
                values = []
                for _ in range(args.listing_runs):
                    ms, resp = timed(lambda q=query: api.http.get(listing + q))
                    resp.raise_for_status()
                    values.append(ms)
                figures[name] = summary(values)
                figures[name]["entries"] = len(resp.json()["manageable-volumes"])
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            service.stop()
    finally:
        if own_cluster:
            subprocess.run([str(script), "down", str(work / "ceph")], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)

    width = max(len(k) for k in figures)
    print(f"RBD backend, whole service (API -> available), runs={args.runs}")
    for key, value in figures.items():
        if isinstance(value, dict):
            extra = f"  entries={value['entries']}" if "entries" in value else ""
            print(
                f"  {key:<{width}}  median {value['median_ms']:8.1f} ms  "
                f"p90 {value['p90_ms']:8.1f} ms  max {value['max_ms']:8.1f} ms{extra}"
            )
        else:
            print(f"  {key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
