"""The driver contract: behaviour every volume driver shows, checked on each of them.

Tests act like the volume manager does: they pass refs, apply the returned
model update to the ref, and look at the data through the backend's probe.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.base import capabilities_of
from cinderblock.drivers.refs import GiB, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import (
    InvalidInput,
    ManageExistingInvalidReference,
    VolumeBackendAPIException,
    VolumeIsBusy,
)

# Fixture types (defined in conftest.py, which is not importable as a module).
Backend = Any
DataProbe = Any

MiB = 1024**2
A = b"A" * 4096
B = b"B" * 4096
C = b"C" * 4096


def applied(ref: Any, update: ModelUpdate | None) -> Any:
    """The ref as the manager would rebuild it after persisting the update."""
    return dataclasses.replace(ref, **(update or {}))


def name_of(ref: VolumeRef | SnapshotRef) -> str:
    assert ref.provider_location, "driver should have returned a provider_location"
    return ref.provider_location


def make_volume(driver: Any, vid: str, size: int = 1) -> VolumeRef:
    vol = VolumeRef(id=vid, size=size, project_id="p1")
    return applied(vol, driver.create_volume(vol))


def make_snapshot(driver: Any, sid: str, vol: VolumeRef) -> SnapshotRef:
    snap = SnapshotRef(id=sid, volume=vol, size=vol.size)
    return applied(snap, driver.create_snapshot(snap))


def code_of(exc_info: pytest.ExceptionInfo[ManageExistingInvalidReference]) -> str | None:
    return mg.reason_code_of(exc_info.value)


def listing(driver: Any, snapshots: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {
        "marker": None,
        "limit": 1000,
        "offset": 0,
        "sort_keys": ["reference"],
        "sort_dirs": ["asc"],
    }
    args.update(kwargs)
    if snapshots:
        return driver.get_manageable_snapshots(args.pop("cinder", []), **args)
    return driver.get_manageable_volumes(args.pop("cinder", []), **args)


class TestDriverContract:
    # --- lifecycle --------------------------------------------------------------
    def test_create_exists_with_size(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1", size=2)
        assert driver.volume_exists(vol)
        assert probe.size(name_of(vol)) == 2 * GiB
        assert probe.read(name_of(vol), GiB, 4096) == bytes(4096)

    def test_delete_twice_is_fine(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1")
        driver.delete_volume(vol)
        assert not driver.volume_exists(vol)
        assert name_of(vol) not in probe.names()
        driver.delete_volume(vol)
        driver.delete_volume(VolumeRef(id="never-created", size=1))

    def test_volume_with_snapshot_is_busy(self, driver: Any) -> None:
        vol = make_volume(driver, "v1")
        snap = make_snapshot(driver, "s1", vol)
        with pytest.raises(VolumeIsBusy):
            driver.delete_volume(vol)
        assert driver.volume_exists(vol)
        driver.delete_snapshot(snap)
        driver.delete_volume(vol)
        assert not driver.volume_exists(vol)

    # --- snapshots ---------------------------------------------------------------
    def test_snapshot_keeps_point_in_time_data(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1")
        probe.write(name_of(vol), 0, A)
        probe.write(name_of(vol), 700 * MiB, A)
        snap = make_snapshot(driver, "s1", vol)
        assert driver.snapshot_exists(snap)
        probe.write(name_of(vol), 0, B)
        probe.write(name_of(vol), 700 * MiB, B)
        probe.write(name_of(vol), 5 * MiB, B)
        assert probe.read(name_of(snap), 0, 4096) == A
        assert probe.read(name_of(snap), 700 * MiB, 4096) == A
        assert probe.read(name_of(snap), 5 * MiB, 4096) == bytes(4096)
        assert probe.size(name_of(snap)) == GiB
        driver.delete_snapshot(snap)
        assert not driver.snapshot_exists(snap)
        driver.delete_snapshot(snap)  # already gone: fine
        assert probe.read(name_of(vol), 0, 4096) == B

    def test_volume_from_snapshot_has_data_and_larger_size(
        self, driver: Any, probe: DataProbe
    ) -> None:
        vol = make_volume(driver, "v1")
        probe.write(name_of(vol), GiB - 4096, A)
        snap = make_snapshot(driver, "s1", vol)
        new = VolumeRef(id="v2", size=3)
        new = applied(new, driver.create_volume_from_snapshot(new, snap))
        assert driver.volume_exists(new)
        assert probe.size(name_of(new)) == 3 * GiB
        assert probe.read(name_of(new), GiB - 4096, 4096) == A
        assert probe.read(name_of(new), 2 * GiB, 4096) == bytes(4096)
        # The new volume is independent of the snapshot and of the source.
        probe.write(name_of(new), GiB - 4096, B)
        assert probe.read(name_of(snap), GiB - 4096, 4096) == A
        assert probe.read(name_of(vol), GiB - 4096, 4096) == A
        assert probe.size(name_of(snap)) == GiB

    def test_volume_from_snapshot_smaller_than_source_is_refused(
        self, driver: Any, probe: DataProbe
    ) -> None:
        vol = make_volume(driver, "v1", size=2)
        snap = make_snapshot(driver, "s1", vol)
        before = probe.names()
        with pytest.raises(VolumeBackendAPIException):
            driver.create_volume_from_snapshot(VolumeRef(id="v2", size=1), snap)
        assert probe.names() == before

    def test_clone_is_independent(self, driver: Any, probe: DataProbe) -> None:
        src = make_volume(driver, "v1")
        probe.write(name_of(src), 4096, A)
        clone = VolumeRef(id="v2", size=2)
        clone = applied(clone, driver.create_cloned_volume(clone, src))
        assert probe.size(name_of(clone)) == 2 * GiB
        assert probe.size(name_of(src)) == GiB
        assert probe.read(name_of(clone), 4096, 4096) == A
        probe.write(name_of(clone), 4096, B)
        probe.write(name_of(src), 8192, C)
        assert probe.read(name_of(src), 4096, 4096) == A
        assert probe.read(name_of(clone), 8192, 4096) == bytes(4096)

    def test_extend_keeps_data(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1")
        probe.write(name_of(vol), GiB - 4096, A)
        driver.extend_volume(vol, 3)
        assert probe.size(name_of(vol)) == 3 * GiB
        assert probe.read(name_of(vol), GiB - 4096, 4096) == A
        assert probe.read(name_of(vol), 2 * GiB, 4096) == bytes(4096)
        with pytest.raises(VolumeBackendAPIException):
            driver.extend_volume(vol, 2)
        assert probe.size(name_of(vol)) == 3 * GiB

    def test_revert_restores_snapshot_data(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1")
        probe.write(name_of(vol), 0, A)
        snap = make_snapshot(driver, "s1", vol)
        probe.write(name_of(vol), 0, B)
        probe.write(name_of(vol), MiB, B)
        driver.extend_volume(vol, 2)
        vol = dataclasses.replace(vol, size=2)
        driver.revert_to_snapshot(vol, snap)
        assert probe.read(name_of(vol), 0, 4096) == A
        assert probe.read(name_of(vol), MiB, 4096) == bytes(4096)
        assert probe.size(name_of(vol)) == 2 * GiB  # the larger size is kept
        assert probe.read(name_of(snap), 0, 4096) == A
        assert driver.snapshot_exists(snap)

    # --- stats and capabilities ---------------------------------------------------------
    def test_stats_have_cinder_shape(self, backend: Backend) -> None:
        stats = backend.driver.get_volume_stats(refresh=True)
        for key in ("volume_backend_name", "vendor_name", "driver_version", "storage_protocol"):
            assert stats[key], key
        assert stats["vendor_name"] == "cinderblock"
        (pool,) = stats["pools"]
        assert pool["pool_name"] == stats["volume_backend_name"]
        for key in (
            "total_capacity_gb",
            "free_capacity_gb",
            "allocated_capacity_gb",
            "provisioned_capacity_gb",
            "max_over_subscription_ratio",
            "reserved_percentage",
        ):
            assert isinstance(pool[key], int | float), key
        assert pool["thin_provisioning_support"] is True
        assert pool["QoS_support"] is False
        assert isinstance(pool["multiattach"], bool)
        assert backend.driver.get_volume_stats() == stats  # cached answer is the same

    def test_stats_count_allocated(self, driver: Any) -> None:
        make_volume(driver, "v1", size=3)
        pool = driver.get_volume_stats(refresh=True)["pools"][0]
        assert pool["allocated_capacity_gb"] >= 3

    def test_capabilities_match_declared_classes(self, backend: Backend) -> None:
        assert capabilities_of(backend.driver) == backend.capabilities

    # --- manage ---------------------------------------------------------------------------
    def test_manage_round_trip(self, driver: Any, probe: DataProbe) -> None:
        size = GiB + GiB // 2
        probe.seed_volume("legacy-disk", size, A, offset=MiB)
        (entry,) = listing(driver)
        assert entry["reference"] == {"source-name": "legacy-disk"}
        assert entry["size"] == 2
        assert entry["safe_to_manage"] is True
        assert entry["reason_not_safe"] is None
        assert entry["cinder_id"] is None
        assert entry["extra_info"] is None

        vol = VolumeRef(id="m1", size=0)
        ref = {"source-name": "legacy-disk"}
        assert driver.manage_existing_get_size(vol, ref) == 2
        vol = applied(dataclasses.replace(vol, size=2), driver.manage_existing(vol, ref))
        assert vol.provider_location == vol.name == "volume-m1"
        assert vol.provider_id == "legacy-disk"
        assert probe.names() == {"volume-m1"}
        assert probe.read("volume-m1", MiB, 4096) == A
        assert probe.size("volume-m1") == 2 * GiB
        assert driver.volume_exists(vol)

        (entry,) = listing(driver, cinder=[vol])
        assert entry["safe_to_manage"] is False
        assert entry["reason_not_safe"] == "already managed"
        assert entry["extra_info"] == {"reason_code": "already_managed"}
        assert entry["cinder_id"] == "m1"

        driver.unmanage(vol)
        assert probe.names() == {"legacy-disk"}
        assert probe.read("legacy-disk", MiB, 4096) == A

    def test_unmanage_keeps_name_of_volume_we_created(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1")
        driver.unmanage(vol)
        assert probe.names() == {"volume-v1"}

    def test_unmanage_keeps_name_when_original_is_taken(
        self, driver: Any, probe: DataProbe
    ) -> None:
        probe.seed_volume("old", GiB)
        vol = VolumeRef(id="m1", size=1)
        vol = applied(vol, driver.manage_existing(vol, {"source-name": "old"}))
        probe.seed_volume("old", GiB)  # someone reused the name meanwhile
        driver.unmanage(vol)
        assert probe.names() == {"old", "volume-m1"}

    def test_manage_moves_foreign_snapshots_with_their_volume(
        self, driver: Any, probe: DataProbe
    ) -> None:
        probe.seed_volume("old", GiB, A)
        snap_obj = probe.seed_snapshot("old", "daily", GiB)
        (entry,) = listing(driver, snapshots=True)
        assert entry["reference"] == {"source-name": snap_obj}
        assert entry["source_reference"] == {"source-name": "old"}
        vol = VolumeRef(id="m1", size=1)
        vol = applied(vol, driver.manage_existing(vol, {"source-name": "old"}))
        (entry,) = listing(driver, snapshots=True)
        assert entry["reference"] == {"source-name": "volume-m1@daily"}
        assert entry["source_reference"] == {"source-name": "volume-m1"}
        driver.unmanage(vol)
        assert probe.names() == {"old", snap_obj}

    def test_manage_snapshot_round_trip(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1")
        probe.write(name_of(vol), 0, A)
        foreign = probe.seed_snapshot(name_of(vol), "nightly", GiB // 2)
        probe.write(name_of(vol), 0, B)
        (entry,) = listing(driver, snapshots=True)
        assert entry["reference"] == {"source-name": foreign}
        assert entry["source_reference"] == {"source-name": name_of(vol)}
        assert entry["size"] == 1
        assert entry["safe_to_manage"] is True

        snap = SnapshotRef(id="s9", volume=vol, size=0)
        ref = {"source-name": foreign}
        assert driver.manage_existing_snapshot_get_size(snap, ref) == 1
        snap = applied(snap, driver.manage_existing_snapshot(snap, ref))
        assert snap.provider_location == f"{name_of(vol)}@snapshot-s9"
        assert snap.provider_id == foreign
        assert driver.snapshot_exists(snap)
        assert probe.read(name_of(snap), 0, 4096) == A
        (entry,) = listing(driver, snapshots=True, cinder=[snap])
        assert (entry["safe_to_manage"], entry["cinder_id"]) == (False, "s9")
        assert entry["reason_not_safe"] == "already managed"
        assert entry["extra_info"] == {"reason_code": "already_managed"}

        driver.unmanage_snapshot(snap)
        assert probe.names() == {name_of(vol), foreign}

    @pytest.mark.parametrize(
        ("ref", "code"),
        [
            ({}, "bad_reference"),
            ({"source-name": ""}, "bad_reference"),
            ({"source-name": "no-such-object"}, "not_found"),
            ({"other": "x"}, "bad_reference"),
        ],
        ids=["empty", "blank", "unknown", "wrong-key"],
    )
    def test_manage_refuses_bad_references(
        self, driver: Any, probe: DataProbe, ref: dict[str, Any], code: str
    ) -> None:
        probe.seed_volume("present", GiB)
        vol = VolumeRef(id="m1", size=1)
        snap = SnapshotRef(
            id="s1", volume=VolumeRef(id="x", size=1, provider_location="present"), size=1
        )
        before = probe.names()
        snap_code = "wrong_kind" if code == "not_found" else code  # not a snapshot of "present"
        for call, expected in (
            (lambda: driver.manage_existing_get_size(vol, ref), code),
            (lambda: driver.manage_existing(vol, ref), code),
            (lambda: driver.manage_existing_snapshot_get_size(snap, ref), snap_code),
            (lambda: driver.manage_existing_snapshot(snap, ref), snap_code),
        ):
            with pytest.raises(ManageExistingInvalidReference) as err:
                call()
            assert code_of(err) == expected
            assert "invalid backend reference" in str(err.value)
        missing = {"source-name": "present@gone"}
        with pytest.raises(ManageExistingInvalidReference) as err:
            driver.manage_existing_snapshot(snap, missing)
        assert code_of(err) == "not_found"
        assert probe.names() == before

    def test_manage_refuses_wrong_kind_or_parent(self, driver: Any, probe: DataProbe) -> None:
        a = make_volume(driver, "a")
        b = make_volume(driver, "b")
        snap_obj = probe.seed_snapshot(name_of(a), "x", GiB)
        before = probe.names()
        with pytest.raises(ManageExistingInvalidReference) as err:  # a snapshot is not a volume
            driver.manage_existing(VolumeRef(id="m", size=1), {"source-name": snap_obj})
        assert code_of(err) == "wrong_kind"
        with pytest.raises(ManageExistingInvalidReference) as err:  # snapshot of another volume
            driver.manage_existing_snapshot(
                SnapshotRef(id="s", volume=b, size=1), {"source-name": snap_obj}
            )
        assert code_of(err) == "wrong_kind"
        with pytest.raises(ManageExistingInvalidReference) as err:  # a volume is not a snapshot
            driver.manage_existing_snapshot(
                SnapshotRef(id="s", volume=b, size=1), {"source-name": name_of(a)}
            )
        assert code_of(err) == "wrong_kind"
        assert probe.names() == before

    def test_manage_refuses_taken_target_name(self, driver: Any, probe: DataProbe) -> None:
        probe.seed_volume("old", GiB, A)
        taken = make_volume(driver, "m1")
        probe.write(name_of(taken), 0, B)
        with pytest.raises(ManageExistingInvalidReference) as err:
            driver.manage_existing(VolumeRef(id="m1", size=1), {"source-name": "old"})
        assert code_of(err) == "name_taken"
        assert probe.names() == {"old", "volume-m1"}
        assert probe.read("old", 0, 4096) == A
        assert probe.read("volume-m1", 0, 4096) == B

    # --- in use ---------------------------------------------------------------------------------
    def test_volume_in_use_is_listed_unsafe_and_refused(
        self, driver: Any, probe: DataProbe
    ) -> None:
        probe.seed_volume("busy", GiB, A)
        probe.seed_volume("idle", GiB)
        ref = {"source-name": "busy"}
        vol = VolumeRef(id="m1", size=1)
        with probe.hold("busy"):
            by_name = {e["reference"]["source-name"]: e for e in listing(driver)}
            busy = by_name["busy"]
            assert busy["safe_to_manage"] is False
            assert busy["reason_not_safe"] == "volume in use"
            assert busy["extra_info"] == {"reason_code": "in_use"}
            assert busy["cinder_id"] is None
            assert busy["size"] == 1
            assert by_name["idle"]["safe_to_manage"] is True
            before = probe.names()
            for call in (driver.manage_existing_get_size, driver.manage_existing):
                with pytest.raises(ManageExistingInvalidReference) as err:
                    call(vol, ref)
                assert code_of(err) == "in_use"
                assert "'busy' is in use" in str(err.value)
            assert probe.names() == before
            assert probe.read("busy", 0, 4096) == A
        # Released: listed safe again and manageable.
        assert {e["safe_to_manage"] for e in listing(driver)} == {True}
        vol = applied(vol, driver.manage_existing(vol, ref))
        assert probe.read(name_of(vol), 0, 4096) == A

    def test_snapshot_in_use_is_listed_unsafe_and_refused(
        self, driver: Any, probe: DataProbe
    ) -> None:
        vol = make_volume(driver, "v1")
        foreign = probe.seed_snapshot(name_of(vol), "nightly", GiB)
        snap = SnapshotRef(id="s1", volume=vol, size=1)
        ref = {"source-name": foreign}
        with probe.hold(foreign):
            (entry,) = listing(driver, snapshots=True)
            assert entry["safe_to_manage"] is False
            assert entry["reason_not_safe"] == "snapshot in use"
            assert entry["extra_info"] == {"reason_code": "in_use"}
            assert entry["source_reference"] == {"source-name": name_of(vol)}
            before = probe.names()
            for call in (driver.manage_existing_snapshot_get_size, driver.manage_existing_snapshot):
                with pytest.raises(ManageExistingInvalidReference) as err:
                    call(snap, ref)
                assert code_of(err) == "in_use"
                assert "is in use" in str(err.value)
            assert probe.names() == before
        (entry,) = listing(driver, snapshots=True)
        assert (entry["safe_to_manage"], entry["extra_info"]) == (True, None)
        snap = applied(snap, driver.manage_existing_snapshot(snap, ref))
        assert driver.snapshot_exists(snap)

    def test_already_managed_wins_over_in_use(self, driver: Any, probe: DataProbe) -> None:
        vol = make_volume(driver, "v1")
        with probe.hold(name_of(vol)):
            (entry,) = listing(driver, cinder=[vol])
        assert entry["reason_not_safe"] == "already managed"
        assert entry["extra_info"] == {"reason_code": "already_managed"}

    # --- manageable listings: sorting and pagination -----------------------------------------
    SORTS = [
        (["reference"], ["asc"]),
        (["reference"], ["desc"]),
        (["size"], ["asc"]),
        (["size"], ["desc"]),
        (["size", "reference"], ["desc", "desc"]),
        (["size", "reference"], ["asc", "desc"]),
        (["reference", "size"], ["asc", "asc"]),
        ([], []),  # Cinder's default: reference desc
    ]

    @staticmethod
    def reference_order(objects: dict[str, int], keys: list[str], dirs: list[str]) -> list[str]:
        """Independent model of the order: keys in turn, then name ascending."""
        names = sorted(objects)
        for key, direction in reversed(
            list(zip(keys or ["reference"], dirs or ["desc"], strict=True))
        ):
            sort_key = (lambda n: objects[n]) if key == "size" else (lambda n: n)
            names.sort(key=sort_key, reverse=direction == "desc")
        return names

    @pytest.fixture
    def many(self, probe: DataProbe) -> dict[str, int]:
        """~200 foreign volumes with sizes of 1..7 GiB (after rounding up)."""
        objects = {}
        for i in range(200):
            name = f"disk-{(i * 7919) % 1000:03d}-{i}"
            size_bytes = ((i * 37) % 7) * GiB + (i % 3) * MiB + 1
            probe.seed_volume(name, size_bytes)
            objects[name] = -(-size_bytes // GiB)
        return objects

    @pytest.mark.parametrize(("keys", "dirs"), SORTS)
    def test_listing_pages_follow_the_sort(
        self, driver: Any, many: dict[str, int], keys: list[str], dirs: list[str]
    ) -> None:
        expected = self.reference_order(many, keys, dirs)
        full = listing(driver, sort_keys=keys, sort_dirs=dirs)
        assert [e["reference"]["source-name"] for e in full] == expected
        assert all(e["size"] == many[e["reference"]["source-name"]] for e in full)

        seen: list[str] = []
        marker = None
        while True:
            page = listing(driver, sort_keys=keys, sort_dirs=dirs, marker=marker, limit=17)
            if not page:
                break
            assert len(page) <= 17
            seen += [e["reference"]["source-name"] for e in page]
            marker = page[-1]["reference"]
        assert seen == expected

    def test_listing_offset_and_marker(self, driver: Any, many: dict[str, int]) -> None:
        expected = self.reference_order(many, ["size"], ["asc"])
        page = listing(driver, sort_keys=["size"], sort_dirs=["asc"], offset=5, limit=10)
        assert [e["reference"]["source-name"] for e in page] == expected[5:15]
        marker = {"source-name": expected[20]}
        page = listing(
            driver, sort_keys=["size"], sort_dirs=["asc"], marker=marker, offset=3, limit=4
        )
        assert [e["reference"]["source-name"] for e in page] == expected[24:28]

    def test_unknown_marker_is_invalid_input(self, driver: Any, many: dict[str, int]) -> None:
        marker = {"source-name": "not-there"}
        for snapshots in (False, True):
            with pytest.raises(InvalidInput) as err:
                listing(driver, snapshots=snapshots, marker=marker)
            assert str(err.value) == "Invalid input received: marker not found: " + str(marker)
            assert err.value.code == 400

    def test_marker_as_json_text(self, driver: Any, many: dict[str, int]) -> None:
        expected = self.reference_order(many, ["reference"], ["desc"])
        marker = json.dumps({"source-name": expected[9]})
        page = listing(driver, sort_dirs=["desc"], marker=marker, limit=3)
        assert [e["reference"]["source-name"] for e in page] == expected[10:13]
        with pytest.raises(InvalidInput, match="please use json like format"):
            listing(driver, marker="not json")

    def test_identifier_is_an_alias_of_reference(self, driver: Any, many: dict[str, int]) -> None:
        by_identifier = listing(driver, sort_keys=["identifier", "size"], sort_dirs=["desc"])
        by_reference = listing(driver, sort_keys=["reference", "size"], sort_dirs=["desc"])
        assert by_identifier == by_reference
        names = [e["reference"]["source-name"] for e in by_identifier]
        assert names == sorted(many, reverse=True)

    @pytest.mark.parametrize(
        ("keys", "dirs", "message"),
        [
            (["name"], ["asc"], "Invalid sort key 'name'"),
            (["created_at"], [], "Invalid sort key 'created_at'"),
            (["size"], ["up"], "Invalid sort direction 'up'"),
            (["size"], ["asc", "desc"], "more sort directions than sort keys"),
        ],
    )
    def test_bad_sort_is_invalid_input(
        self, driver: Any, probe: DataProbe, keys: list[str], dirs: list[str], message: str
    ) -> None:
        probe.seed_volume("one", GiB)
        for snapshots in (False, True):
            with pytest.raises(InvalidInput, match=re.escape(message)):
                listing(driver, snapshots=snapshots, sort_keys=keys, sort_dirs=dirs)

    def test_listing_is_json_serializable(self, driver: Any, probe: DataProbe) -> None:
        probe.seed_volume("plain", GiB)
        vol = make_volume(driver, "v1")
        snap = make_snapshot(driver, "s1", vol)
        for entries in (
            listing(driver, cinder=[vol]),
            listing(driver, snapshots=True, cinder=[snap]),
        ):
            assert json.loads(json.dumps(entries)) == entries
            for entry in entries:
                assert set(entry) >= {
                    "reference",
                    "size",
                    "safe_to_manage",
                    "reason_not_safe",
                    "cinder_id",
                    "extra_info",
                }
                code = (entry["extra_info"] or {}).get("reason_code")
                assert (code is None) == entry["safe_to_manage"]
                assert code is None or code in mg.LISTING_CODES
