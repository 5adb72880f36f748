"""The whole service on an `rbd` backend: API -> scheduler -> volume service -> Ceph.

A real cinderblock (API over HTTP, embedded services, the test database)
whose only backend is the RBD driver on the test cluster.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cinderblock.config import load_settings
from cinderblock.embedded import build
from conftest import free_port, serve_in_thread, stop_serving
from contract.ceph_cluster import CephCluster, RbdProbe

HOST = "rbdhost@ceph"


class Client:
    def __init__(self, base: str) -> None:
        self.project = uuid.uuid4().hex
        self.base = f"{base}/v3/{self.project}"
        self.http = httpx.Client(
            timeout=60,
            headers={
                "X-Auth-Token": f"admin:{self.project}",
                "OpenStack-API-Version": "volume 3.71",
            },
        )

    def call(self, method: str, path: str, body: Any = None, status: int = 202) -> Any:
        resp = self.http.request(method, self.base + path, json=body)
        assert resp.status_code == status, resp.text
        return resp.json() if resp.content else None

    def wait(self, kind: str, oid: str, status: str = "available") -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while True:
            resp = self.http.get(f"{self.base}/{kind}s/{oid}")
            if status == "deleted" and resp.status_code == 404:
                return {}
            if resp.status_code == 200:
                obj = resp.json()[kind]
                if obj["status"] == status:
                    return dict(obj)
                assert obj["status"] not in ("error", "error_deleting"), obj
            assert time.monotonic() < deadline, f"{kind} {oid} never became {status}"
            time.sleep(0.05)


@pytest.fixture
def service(ceph_cluster: CephCluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    # Its own SQLite database: a scheduler sharing the session database would also
    # see the other tests' (file, memory) backends and might place volumes there.
    database_url = f"sqlite:///{tmp_path / 'cinderblock.sqlite'}"
    port = free_port()
    options = "\n".join(f"{k} = {v}" for k, v in ceph_cluster.driver_options(namespace).items())
    config = tmp_path / "cinderblock.conf"
    config.write_text(
        f"""[DEFAULT]
host = rbdhost
enabled_backends = ceph
bind_host = 127.0.0.1
bind_port = {port}
state_path = {tmp_path}
report_interval = 2

[database]
connection = {database_url}

[ceph]
volume_driver = rbd
volume_backend_name = ceph
{options}
"""
    )
    svc = build(load_settings(config))
    server, thread = serve_in_thread(svc.app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_serving(server, thread)
        svc.stop()


def test_volume_lifecycle_through_the_api(
    service: str, probe: RbdProbe, ceph_cluster: CephCluster, namespace: str
) -> None:
    api = Client(service)
    vol = api.call("POST", "/volumes", {"volume": {"size": 1, "name": "v"}})["volume"]
    vol = api.wait("volume", vol["id"])
    assert vol["os-vol-host-attr:host"].startswith(HOST)
    image = f"volume-{vol['id']}"
    probe.write(image, 0, b"D" * 4096)

    snap = api.call("POST", "/snapshots", {"snapshot": {"volume_id": vol["id"]}})["snapshot"]
    api.wait("snapshot", snap["id"])
    from_snap = api.call("POST", "/volumes", {"volume": {"size": 2, "snapshot_id": snap["id"]}})
    from_snap = api.wait("volume", from_snap["volume"]["id"])
    clone = api.call("POST", "/volumes", {"volume": {"size": 1, "source_volid": vol["id"]}})
    clone = api.wait("volume", clone["volume"]["id"])
    for other in (from_snap, clone):
        assert probe.read(f"volume-{other['id']}", 0, 4096) == b"D" * 4096
    assert probe.size(f"volume-{from_snap['id']}") == 2 * 1024**3

    api.call("POST", f"/volumes/{vol['id']}/action", {"os-extend": {"new_size": 3}})
    api.wait("volume", vol["id"])
    assert probe.size(image) == 3 * 1024**3

    # The parent goes; its clones stay readable (they were flattened).
    api.call("DELETE", f"/snapshots/{snap['id']}")
    api.wait("snapshot", snap["id"], "deleted")
    api.call("DELETE", f"/volumes/{vol['id']}")
    api.wait("volume", vol["id"], "deleted")
    for other in (from_snap, clone):
        assert probe.read(f"volume-{other['id']}", 0, 4096) == b"D" * 4096
        info = json.loads(
            ceph_cluster.rbd(
                "info", "--format", "json", f"volume-{other['id']}", namespace=namespace
            )
        )
        assert "parent" not in info
        api.call("DELETE", f"/volumes/{other['id']}")
        api.wait("volume", other["id"], "deleted")
    assert probe.names() == set()


def test_manage_and_unmanage_through_the_api(service: str, probe: RbdProbe) -> None:
    api = Client(service)
    probe.seed_volume("legacy", 1024**3, b"L" * 4096)
    listed = api.call("GET", f"/manageable_volumes/detail?host={HOST}", status=200)
    (entry,) = listed["manageable-volumes"]
    assert entry["reference"] == {"source-name": "legacy"}
    assert entry["safe_to_manage"] is True
    body = {"volume": {"host": f"{HOST}#ceph", "ref": {"source-name": "legacy"}}}
    vol = api.call("POST", "/manageable_volumes", body)["volume"]
    api.wait("volume", vol["id"])
    assert probe.names() == {f"volume-{vol['id']}"}
    api.call("POST", f"/volumes/{vol['id']}/action", {"os-unmanage": None})
    api.wait("volume", vol["id"], "deleted")
    assert probe.names() == {"legacy"}
    assert probe.read("legacy", 0, 4096) == b"L" * 4096
