"""Memory-driver specifics: data helpers, failure injection, seeding, thread safety."""

from __future__ import annotations

import threading

import pytest

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.memory.driver import CHUNK, MemoryDriver
from cinderblock.drivers.refs import GiB, SnapshotRef, VolumeRef
from cinderblock.drivers.registry import load_driver
from cinderblock.exceptions import ManageExistingInvalidReference, VolumeBackendAPIException


def make(**options: str) -> MemoryDriver:
    config = BackendConfig(
        name="mem", volume_driver="memory", volume_backend_name="mem", options=options
    )
    driver = load_driver(config, "host@mem")
    assert isinstance(driver, MemoryDriver)
    driver.do_setup()
    return driver


def test_read_write_across_chunks_and_holes() -> None:
    driver = make()
    driver.create_volume(VolumeRef(id="v", size=1))
    data = bytes(range(256)) * 1024  # 256 KiB, spans several chunks
    driver.write("volume-v", CHUNK - 10, data)
    assert driver.read("volume-v", CHUNK - 10, len(data)) == data
    assert driver.read("volume-v", 0, 16) == bytes(16)
    assert driver.read("volume-v", GiB - 16, 16) == bytes(16)
    with pytest.raises(ValueError):
        driver.write("volume-v", GiB - 1, b"xx")
    with pytest.raises(ValueError):
        driver.read("volume-v", GiB, 1)


def test_memory_is_sparse_and_snapshots_share_chunks() -> None:
    driver = make()
    vol = VolumeRef(id="v", size=1024, provider_location="volume-v")
    driver.create_volume(vol)
    driver.write("volume-v", 0, b"x")
    driver.create_snapshot(SnapshotRef(id="s", volume=vol, size=1024))
    objects = driver._objects
    assert len(objects["volume-v"].chunks) == 1
    assert objects["volume-v@snapshot-s"].chunks[0] is objects["volume-v"].chunks[0]


def test_fail_on_makes_chosen_operations_fail() -> None:
    driver = make(memory_fail_on="create_snapshot, extend_volume")
    vol = VolumeRef(id="v", size=1, provider_location="volume-v")
    driver.create_volume(vol)
    with pytest.raises(VolumeBackendAPIException, match="injected"):
        driver.create_snapshot(SnapshotRef(id="s", volume=vol, size=1))
    with pytest.raises(VolumeBackendAPIException, match="injected"):
        driver.extend_volume(vol, 2)
    assert driver.object_names() == {"volume-v"}
    assert driver.object_size("volume-v") == GiB
    driver.fail_on.clear()
    driver.extend_volume(vol, 2)
    assert driver.object_size("volume-v") == 2 * GiB


def test_stats_follow_capacity_option() -> None:
    driver = make(memory_capacity_gb="10")
    driver.create_volume(VolumeRef(id="v", size=4))
    pool = driver.get_volume_stats(refresh=True)["pools"][0]
    assert (pool["total_capacity_gb"], pool["allocated_capacity_gb"]) == (10.0, 4.0)
    assert pool["free_capacity_gb"] == 6.0
    assert driver.get_volume_stats()["storage_protocol"] == "memory"


def test_in_use_foreign_volume_is_listed_unsafe_and_refused() -> None:
    driver = make()
    driver.seed_foreign_volume("busy", GiB, in_use=True)
    (entry,) = driver.get_manageable_volumes([], None, 10, 0, [], [])
    assert (entry["safe_to_manage"], entry["reason_not_safe"]) == (False, "volume in use")
    assert entry["extra_info"] == {"reason_code": "in_use"}
    with pytest.raises(ManageExistingInvalidReference, match="'busy' is in use") as err:
        driver.manage_existing(VolumeRef(id="m", size=1), {"source-name": "busy"})
    assert mg.reason_code_of(err.value) == "in_use"
    assert driver.object_names() == {"busy"}


def test_in_use_foreign_snapshot_is_listed_unsafe_and_refused() -> None:
    driver = make()
    driver.seed_foreign_volume("vol", GiB)
    name = driver.seed_foreign_snapshot("vol", "snap", GiB, in_use=True)
    (entry,) = driver.get_manageable_snapshots([], None, 10, 0, [], [])
    assert (entry["reason_not_safe"], entry["extra_info"]) == (
        "snapshot in use",
        {"reason_code": "in_use"},
    )
    parent = VolumeRef(id="p", size=1, provider_location="vol")
    snap = SnapshotRef(id="s", volume=parent, size=1)
    with pytest.raises(ManageExistingInvalidReference) as err:
        driver.manage_existing_snapshot(snap, {"source-name": name})
    assert mg.reason_code_of(err.value) == "in_use"
    driver.set_in_use(name, False)
    driver.manage_existing_snapshot(snap, {"source-name": name})
    assert driver.object_names() == {"vol", "vol@snapshot-s"}


def test_seeded_snapshot_is_cut_to_its_size() -> None:
    driver = make()
    driver.seed_foreign_volume("vol", GiB)
    driver.write("vol", CHUNK + 100, b"beyond")
    driver.write("vol", 10, b"inside")
    name = driver.seed_foreign_snapshot("vol", "snap", CHUNK + 50)
    assert name == "vol@snap"
    assert driver.read(name, 10, 6) == b"inside"
    driver._objects[name].size = GiB  # as if grown later: the cut data must not reappear
    assert driver.read(name, CHUNK + 100, 6) == bytes(6)


def test_concurrent_creates_and_writes_are_safe() -> None:
    driver = make()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(50):
                vol = VolumeRef(id=f"{worker}-{i}", size=1)
                driver.create_volume(vol)
                driver.write(vol.name, i * CHUNK, bytes([worker]) * 10)
                driver.create_snapshot(SnapshotRef(id=f"{worker}-{i}", volume=vol, size=1))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(driver.object_names()) == 8 * 50 * 2
    assert driver.read("volume-3-7", 7 * CHUNK, 10) == bytes([3]) * 10
