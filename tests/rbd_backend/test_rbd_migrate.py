"""Migration between rbd backends of one Ceph cluster (here: two namespaces of the test
pool), through the driver and through the whole service; data read back with librbd
and `rbd export`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cinderblock.config import load_settings
from cinderblock.drivers.refs import VolumeRef
from cinderblock.embedded import build
from conftest import free_port, serve_in_thread, stop_serving
from contract.ceph_cluster import CephCluster, RbdProbe

MiB = 1024**2
MARK = b"rbd migration \xfe\xff" * 256


def _dest(driver: Any, host: str) -> dict[str, Any]:
    return {"host": host, "capabilities": driver.get_volume_stats(refresh=True)}


def test_driver_moves_an_image_to_another_namespace(
    make_driver: Callable[..., Any], probe: RbdProbe, ceph_cluster: CephCluster
) -> None:
    source = make_driver()
    other_ns = ceph_cluster.new_namespace()
    target = make_driver(rbd_namespace=other_ns)
    target_probe = RbdProbe(ceph_cluster, other_ns)
    try:
        volume = VolumeRef(id=str(uuid.uuid4()), size=1)
        source.create_volume(volume)
        probe.write(volume.name, 3 * MiB, MARK)

        # Not reachable: another cluster, or not an rbd backend at all -> nothing moves.
        stats = source.get_volume_stats()
        fsid, pool = stats["location_info"].split(":")[1:3]
        for info in (
            f"RBDDriver:{uuid.uuid4()}:{pool}:{other_ns}",
            f"FileDriver:somehost:/srv/{fsid}",
            stats["location_info"],  # our own place
        ):
            host = {"host": "h@x#x", "capabilities": {"location_info": info}}
            assert source.migrate_volume(volume, host) == (False, None)
        assert probe.names() == {volume.name}

        moved, update = source.migrate_volume(volume, _dest(target, "host@rbd2#rbd2"))
        assert moved is True
        assert update == {"provider_location": volume.name}
        assert probe.names() == set()  # the source is gone
        assert target_probe.names() == {volume.name}  # no temporary image left
        assert target_probe.size(volume.name) == 1024 * MiB
        assert target_probe.read(volume.name, 3 * MiB, len(MARK)) == MARK
        assert target_probe.read(volume.name, 0, 4096) == bytes(4096)
        assert target.volume_exists(volume)
        assert source.migration_destination_holds(volume, _dest(target, "host@rbd2#rbd2"))
        assert not source.volume_exists(volume)
    finally:
        target_probe.close()


@pytest.fixture
def two_backend_service(ceph_cluster: CephCluster, tmp_path: Path) -> Iterator[dict[str, Any]]:
    namespaces = {"ceph": ceph_cluster.new_namespace(), "ceph2": ceph_cluster.new_namespace()}
    port = free_port()
    sections = ""
    for backend, namespace in namespaces.items():
        options = "\n".join(f"{k} = {v}" for k, v in ceph_cluster.driver_options(namespace).items())
        sections += (
            f"\n[{backend}]\nvolume_driver = rbd\nvolume_backend_name = {backend}\n{options}\n"
        )
    config = tmp_path / "cinderblock.conf"
    config.write_text(
        f"""[DEFAULT]
host = rbdmig
enabled_backends = ceph, ceph2
bind_host = 127.0.0.1
bind_port = {port}
state_path = {tmp_path}
report_interval = 2

[database]
connection = sqlite:///{tmp_path / "cinderblock.sqlite"}
{sections}"""
    )
    svc = build(load_settings(config))
    server, thread = serve_in_thread(svc.app, port)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "namespaces": namespaces}
    finally:
        stop_serving(server, thread)
        svc.stop()


def test_migrate_through_the_service(
    two_backend_service: dict[str, Any], ceph_cluster: CephCluster, tmp_path: Path
) -> None:
    project = uuid.uuid4().hex
    base = f"{two_backend_service['url']}/v3/{project}"
    namespaces = two_backend_service["namespaces"]
    headers = {"X-Auth-Token": f"admin:{project}", "OpenStack-API-Version": "volume 3.71"}
    with httpx.Client(timeout=60, headers=headers) as http:

        def show(volume_id: str) -> dict[str, Any]:
            resp = http.get(f"{base}/volumes/{volume_id}")
            assert resp.status_code == 200, resp.text
            return dict(resp.json()["volume"])

        resp = http.post(f"{base}/volumes", json={"volume": {"size": 1}})
        assert resp.status_code == 202, resp.text
        vid = resp.json()["volume"]["id"]
        deadline = time.monotonic() + 120
        while (volume := show(vid))["status"] != "available":
            assert volume["status"] != "error" and time.monotonic() < deadline, volume
            time.sleep(0.05)
        here = volume["os-vol-host-attr:host"].partition("@")[2].partition("#")[0]
        there = "ceph2" if here == "ceph" else "ceph"
        name = f"volume-{vid}"
        src_probe = RbdProbe(ceph_cluster, namespaces[here])
        try:
            src_probe.write(name, 7 * MiB, MARK)
        finally:
            src_probe.close()

        body = {"os-migrate_volume": {"host": f"rbdmig@{there}", "force_host_copy": False}}
        resp = http.post(f"{base}/volumes/{vid}/action", json=body)
        assert resp.status_code == 202, resp.text
        deadline = time.monotonic() + 120
        while (volume := show(vid))["migration_status"] not in ("success", "error"):
            assert time.monotonic() < deadline, volume
            time.sleep(0.05)
        assert volume["migration_status"] == "success", volume
        assert volume["os-vol-host-attr:host"] == f"rbdmig@{there}#{there}"
        assert volume["status"] == "available"

    exported = tmp_path / "exported.raw"
    ceph_cluster.rbd("export", name, str(exported), namespace=namespaces[there])
    with exported.open("rb") as f:
        f.seek(7 * MiB)
        assert f.read(len(MARK)) == MARK
    assert exported.stat().st_size == 1024 * MiB
    # The copy skipped what was never written: a few objects, not 1 GiB.
    du = json.loads(ceph_cluster.rbd("du", "--format", "json", name, namespace=namespaces[there]))
    used = sum(image["used_size"] for image in du["images"])
    assert 0 < used < 64 * MiB, du
    listed = ceph_cluster.rbd("ls", namespace=namespaces[here]).split()
    assert name not in listed
