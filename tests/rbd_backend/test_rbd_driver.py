"""What only the RBD driver does, checked on a real Ceph cluster.

Clones are copy-on-write children that survive their parent; depth limits
flatten; manage refuses watched images and round-trips names and data;
connection info is Cinder's `rbd` shape; the NBD export serves the image.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.refs import GiB, SnapshotRef, VolumeRef
from cinderblock.exceptions import (
    BackendObjectNotFound,
    ManageExistingInvalidReference,
    VolumeBackendAPIException,
)
from contract.ceph_cluster import CephCluster, RbdProbe, watching

MiB = 1024**2
A = b"A" * 4096
B = b"B" * 4096


def applied(ref: Any, update: Any) -> Any:
    return dataclasses.replace(ref, **(update or {}))


def volume(driver: Any, vid: str, size: int = 1) -> VolumeRef:
    vol = VolumeRef(id=vid, size=size)
    return applied(vol, driver.create_volume(vol))


def parent_of(cluster: CephCluster, namespace: str, image: str) -> dict[str, Any] | None:
    info = json.loads(cluster.rbd("info", "--format", "json", image, namespace=namespace))
    return info.get("parent")


def snapshots_of(cluster: CephCluster, namespace: str, image: str) -> list[str]:
    out = cluster.rbd("snap", "ls", "--all", "--format", "json", image, namespace=namespace)
    return [s["name"] for s in json.loads(out)]


def test_clone_shares_data_and_survives_parent_delete(
    driver: Any, probe: RbdProbe, ceph_cluster: CephCluster, namespace: str
) -> None:
    src = volume(driver, "src")
    probe.write("volume-src", 0, A)
    clone = applied(
        VolumeRef(id="cl", size=1), driver.create_cloned_volume(VolumeRef(id="cl", size=1), src)
    )
    # Copy-on-write: the clone is a child of a hidden snapshot of the source.
    parent = parent_of(ceph_cluster, namespace, "volume-cl")
    assert parent is not None
    assert parent["image"] == "volume-src"
    assert parent["snapshot"] == ".clone-cl"
    assert probe.read("volume-cl", 0, 4096) == A
    assert probe.names() == {"volume-src", "volume-cl"}  # the hidden snapshot is not listed

    driver.delete_volume(src)  # flattens the clone first
    assert not driver.volume_exists(src)
    assert parent_of(ceph_cluster, namespace, "volume-cl") is None
    assert probe.read("volume-cl", 0, 4096) == A
    assert probe.names() == {"volume-cl"}
    driver.delete_volume(clone)
    assert probe.names() == set()


def test_deleting_a_clone_drops_the_hidden_snapshot(
    driver: Any, ceph_cluster: CephCluster, namespace: str
) -> None:
    src = volume(driver, "src")
    clone = applied(
        VolumeRef(id="cl", size=2), driver.create_cloned_volume(VolumeRef(id="cl", size=2), src)
    )
    assert snapshots_of(ceph_cluster, namespace, "volume-src") == [".clone-cl"]
    driver.delete_volume(clone)
    assert snapshots_of(ceph_cluster, namespace, "volume-src") == []
    driver.delete_volume(src)


def test_clone_deeper_than_the_limit_is_flattened(
    make_driver: Any, probe: RbdProbe, ceph_cluster: CephCluster, namespace: str
) -> None:
    driver = make_driver(rbd_max_clone_depth="1")
    v0 = volume(driver, "v0")
    probe.write("volume-v0", MiB, A)
    v1 = applied(
        VolumeRef(id="v1", size=1), driver.create_cloned_volume(VolumeRef(id="v1", size=1), v0)
    )
    assert parent_of(ceph_cluster, namespace, "volume-v1") is not None  # depth 1: kept
    applied(VolumeRef(id="v2", size=1), driver.create_cloned_volume(VolumeRef(id="v2", size=1), v1))
    assert parent_of(ceph_cluster, namespace, "volume-v2") is None  # depth 2: flattened
    assert snapshots_of(ceph_cluster, namespace, "volume-v1") == []  # its snapshot went too
    assert probe.read("volume-v2", MiB, 4096) == A


def test_volume_from_snapshot_is_a_clone_and_survives_the_snapshot(
    driver: Any, probe: RbdProbe, ceph_cluster: CephCluster, namespace: str
) -> None:
    src = volume(driver, "src")
    probe.write("volume-src", 0, A)
    snap = SnapshotRef(id="s1", volume=src, size=1)
    snap = applied(snap, driver.create_snapshot(snap))
    new = applied(
        VolumeRef(id="new", size=2),
        driver.create_volume_from_snapshot(VolumeRef(id="new", size=2), snap),
    )
    assert parent_of(ceph_cluster, namespace, "volume-new")["snapshot"] == "snapshot-s1"
    driver.delete_snapshot(snap)  # flattens the new volume
    assert parent_of(ceph_cluster, namespace, "volume-new") is None
    assert probe.read("volume-new", 0, 4096) == A
    assert probe.size("volume-new") == 2 * GiB
    driver.delete_volume(new)
    driver.delete_volume(src)
    assert probe.names() == set()


def test_flatten_volume_from_snapshot_option(
    make_driver: Any, probe: RbdProbe, ceph_cluster: CephCluster, namespace: str
) -> None:
    driver = make_driver(rbd_flatten_volume_from_snapshot="true")
    src = volume(driver, "src")
    probe.write("volume-src", 0, A)
    snap = applied(
        SnapshotRef(id="s1", volume=src, size=1),
        driver.create_snapshot(SnapshotRef(id="s1", volume=src, size=1)),
    )
    driver.create_volume_from_snapshot(VolumeRef(id="new", size=1), snap)
    assert parent_of(ceph_cluster, namespace, "volume-new") is None
    assert probe.read("volume-new", 0, 4096) == A
    driver.delete_snapshot(snap)


def test_manage_of_a_watched_image_is_refused(
    driver: Any, probe: RbdProbe, ceph_cluster: CephCluster, namespace: str
) -> None:
    probe.seed_volume("vm-disk", GiB, A)
    with watching(ceph_cluster, namespace, "vm-disk"):
        (entry,) = driver.get_manageable_volumes([], None, 10, 0, [], [])
        assert entry["extra_info"] == {"reason_code": mg.IN_USE}
        with pytest.raises(ManageExistingInvalidReference) as err:
            driver.manage_existing(VolumeRef(id="m1", size=1), {"source-name": "vm-disk"})
        assert mg.reason_code_of(err.value) == mg.IN_USE
        assert probe.names() == {"vm-disk"}


def test_manage_unmanage_round_trip_keeps_data_and_name(
    driver: Any, probe: RbdProbe, ceph_cluster: CephCluster, namespace: str, tmp_path: Any
) -> None:
    probe.seed_volume("legacy", 3 * MiB, A, offset=MiB)
    ceph_cluster.rbd("export", "legacy", str(tmp_path / "before"), namespace=namespace)
    vol = VolumeRef(id="m1", size=1)
    update = driver.manage_existing(vol, {"source-name": "legacy"})
    assert update["admin_metadata"]["manage_original_size_bytes"] == str(3 * MiB)
    vol = applied(vol, {k: v for k, v in update.items() if k != "admin_metadata"})
    assert probe.names() == {"volume-m1"}
    assert probe.size("volume-m1") == GiB  # grown to whole GiB
    probe.write("volume-m1", 2 * MiB, B)
    driver.unmanage(vol)
    assert probe.names() == {"legacy"}
    ceph_cluster.rbd("export", "legacy", str(tmp_path / "after"), namespace=namespace)
    before = (tmp_path / "before").read_bytes()
    after = (tmp_path / "after").read_bytes()
    assert len(after) == GiB
    expected = before[: 2 * MiB] + B + before[2 * MiB + len(B) :]
    assert after[: 3 * MiB] == expected
    assert after[MiB : MiB + 4096] == A


def test_connection_info_is_cinders_rbd_shape(
    driver: Any, ceph_cluster: CephCluster, namespace: str
) -> None:
    vol = volume(driver, "v1")
    info = driver.initialize_connection(vol, {"host": "compute1", "initiator": "iqn.x"})
    assert info["driver_volume_type"] == "rbd"
    data = info["data"]
    assert data["name"] == f"{ceph_cluster.pool}/volume-v1"
    assert data["namespace"] == namespace
    conf = Path(ceph_cluster.conf).read_text()
    assert data["hosts"] == ["127.0.0.1"]
    assert f"v1:127.0.0.1:{data['ports'][0]}" in conf
    assert data["auth_enabled"] is True
    assert data["auth_username"] == ceph_cluster.user
    assert data["secret_type"] == "ceph"
    assert data["secret_uuid"] == ceph_cluster.driver_options(namespace)["rbd_secret_uuid"]
    assert data["volume_id"] == "v1"
    assert data["discard"] is True
    with pytest.raises(BackendObjectNotFound):
        driver.initialize_connection(VolumeRef(id="nope", size=1), {})


def test_stats_come_from_the_cluster(driver: Any) -> None:
    volume(driver, "v1", size=5)
    (pool,) = driver.get_volume_stats(refresh=True)["pools"]
    # The test cluster's OSD is an 8 GiB memstore: thin provisioning shows.
    assert 0 < pool["total_capacity_gb"] <= 8
    assert 0 < pool["free_capacity_gb"] <= pool["total_capacity_gb"]
    assert pool["provisioned_capacity_gb"] == 5
    assert pool["thin_provisioning_support"] is True


def test_vendor_errors_become_driver_errors(driver: Any, probe: RbdProbe) -> None:
    volume(driver, "v1")
    with pytest.raises(VolumeBackendAPIException, match="create_volume failed"):
        driver.create_volume(VolumeRef(id="v1", size=1))  # the image exists
    with pytest.raises(BackendObjectNotFound):
        driver.extend_volume(VolumeRef(id="gone", size=1), 2)
    with pytest.raises(BackendObjectNotFound):
        driver.create_snapshot(SnapshotRef(id="s", volume=VolumeRef(id="gone", size=1), size=1))


@pytest.mark.skipif(shutil.which("qemu-io") is None, reason="qemu-io (qemu-utils) not installed")
def test_nbd_export_writes_reach_the_image(
    make_driver: Any, ceph_cluster: CephCluster, namespace: str, tmp_path: Any
) -> None:
    driver = make_driver(
        target_protocol="nbd", nbd_state_dir=str(tmp_path / "nbd"), nbd_port_range="20000-40000"
    )
    vol = volume(driver, "v1")
    driver.create_export(vol, None)
    try:
        info = driver.initialize_connection(vol, {"host": "h"})
        assert info["driver_volume_type"] == "nbd"
        data = info["data"]
        url = f"nbd://{data['host']}:{data['port']}/{data['export_name']}"
        subprocess.run(
            ["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 2M", url],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        driver.remove_export(vol)
    exported = tmp_path / "export.raw"
    ceph_cluster.rbd("export", "volume-v1", str(exported), namespace=namespace, timeout=120)
    assert exported.stat().st_size == GiB
    with exported.open("rb") as f:
        assert f.read(MiB) == bytes(MiB)
        assert f.read(2 * MiB) == b"\x5a" * (2 * MiB)
        while chunk := f.read(16 * MiB):  # the rest was never written
            assert chunk.count(0) == len(chunk)
