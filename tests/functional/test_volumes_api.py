"""Volumes: create (plain, typed, from snapshot, from volume), show, update, delete, summary."""

from __future__ import annotations

import uuid

import pytest
from cbhelpers import (
    UNKNOWN_ID,
    assert_fault,
    backend_type,
    file_volume,
    files_in,
    head_bytes,
    mem_volume,
    sample_body,
    snapshot,
    volume_ids,
    write_at,
)

from conftest import Api, RunningService

DELETE_REFUSED = sample_body("error_delete_volume_with_snapshot.json")["badRequest"]["message"]


# --- create ------------------------------------------------------------------------------
def test_create_with_name_description_metadata_and_type_by_name(api: Api) -> None:
    vtype = backend_type(api, "mem")
    resp = api.post(
        "/volumes",
        {
            "volume": {
                "size": 1,
                "name": "  spaced name  ",
                "description": "about it",
                "metadata": {"k1": "v1", "k 2": "v2"},
                "volume_type": vtype["name"],
                "availability_zone": "nova",
            }
        },
    )
    assert resp.status_code == 202, resp.text
    created = resp.json()["volume"]
    assert created["name"] == "spaced name"  # trimmed, as Cinder does
    volume = api.wait_volume(created["id"])
    assert volume["name"] == "spaced name"
    assert volume["description"] == "about it"
    assert volume["metadata"] == {"k1": "v1", "k 2": "v2"}
    assert volume["volume_type"] == vtype["name"]
    assert volume["availability_zone"] == "nova"
    assert volume["os-vol-host-attr:host"] == "testhost@mem#mem"


def test_create_with_type_by_id(api: Api) -> None:
    vtype = backend_type(api, "mem")
    volume = api.create_volume(volume_type=vtype["id"])
    assert volume["volume_type"] == vtype["name"]
    assert volume["volume_type_id"] == vtype["id"]


def test_create_with_legacy_display_fields(api: Api) -> None:
    volume = mem_volume(api, display_name="old-style", display_description="legacy")
    assert (volume["name"], volume["description"]) == ("old-style", "legacy")


def test_create_without_type_uses_the_default_type(api: Api) -> None:
    default = api.get("/types/default").json()["volume_type"]
    volume = api.create_volume(size=1)
    assert volume["volume_type"] == default["name"] == "__DEFAULT__"
    assert volume["volume_type_id"] == default["id"]


def test_create_with_size_as_digit_string(api: Api) -> None:
    volume = mem_volume(api, size="2")  # type: ignore[arg-type]
    assert volume["size"] == 2


def test_create_on_file_backend_makes_a_sparse_file_of_the_size(
    api: Api, cinder: RunningService
) -> None:
    volume = file_volume(api, size=1)
    path = cinder.volumes_dir / f"volume-{volume['id']}"
    assert path.stat().st_size == 1024**3
    assert path.stat().st_blocks * 512 < 64 * 1024**2  # sparse, not written out
    assert volume["os-vol-host-attr:host"] == "testhost@files#files"


def test_create_unknown_availability_zone_is_400(api: Api) -> None:
    before = volume_ids(api)
    resp = api.post("/volumes", {"volume": {"size": 1, "availability_zone": "atlantis"}})
    assert_fault(resp, 400, "Availability zone 'atlantis' is invalid.")
    assert volume_ids(api) == before


def test_create_unknown_type_is_404(api: Api) -> None:
    resp = api.post("/volumes", {"volume": {"size": 1, "volume_type": "no-such-type"}})
    message = assert_fault(resp, 404)
    assert "no-such-type" in message
    assert volume_ids(api) == []


def test_create_multiattach_true_is_400(api: Api) -> None:
    resp = api.post("/volumes", {"volume": {"size": 1, "multiattach": True}})
    assert "multiattach" in assert_fault(resp, 400)
    assert volume_ids(api) == []


def test_unknown_keys_are_ignored_before_3_53_and_refused_from_3_53(api: Api) -> None:
    body = {"volume": {"size": 1, "colour": "blue", "volume_type": backend_type(api, "mem")["id"]}}
    resp = api.post("/volumes", body, version="3.53")
    assert "colour" in assert_fault(resp, 400)
    assert volume_ids(api) == []
    resp = api.post("/volumes", body, version="3.52")
    assert resp.status_code == 202, resp.text
    api.wait_volume(resp.json()["volume"]["id"])


def test_create_without_size_or_source_is_400(api: Api) -> None:
    assert_fault(api.post("/volumes", {"volume": {"name": "no size"}}), 400)
    assert volume_ids(api) == []


# --- create from a snapshot / a volume ------------------------------------------------------
def test_create_from_snapshot_copies_its_data(api: Api, cinder: RunningService) -> None:
    source = file_volume(api)
    source_path = cinder.volumes_dir / f"volume-{source['id']}"
    write_at(source_path, 0, b"snapshot data")
    snap = snapshot(api, source["id"])
    write_at(source_path, 0, b"changed after")
    clone = api.create_volume(snapshot_id=snap["id"])
    assert clone["size"] == 1  # taken from the snapshot
    assert clone["snapshot_id"] == snap["id"]
    assert clone["volume_type"] == source["volume_type"]
    assert clone["os-vol-host-attr:host"] == source["os-vol-host-attr:host"]
    assert head_bytes(cinder.volumes_dir / f"volume-{clone['id']}", 13) == b"snapshot data"


def test_create_from_snapshot_larger(api: Api, cinder: RunningService) -> None:
    source = file_volume(api)
    write_at(cinder.volumes_dir / f"volume-{source['id']}", 0, b"abc")
    snap = snapshot(api, source["id"])
    clone = api.create_volume(size=3, snapshot_id=snap["id"])
    path = cinder.volumes_dir / f"volume-{clone['id']}"
    assert clone["size"] == 3
    assert path.stat().st_size == 3 * 1024**3
    assert head_bytes(path, 3) == b"abc"


def test_create_from_snapshot_smaller_is_400(api: Api) -> None:
    source = mem_volume(api, size=2)
    snap = snapshot(api, source["id"])
    before = volume_ids(api)
    resp = api.post("/volumes", {"volume": {"size": 1, "snapshot_id": snap["id"]}})
    assert "cannot be smaller than the snapshot size" in assert_fault(resp, 400)
    assert volume_ids(api) == before


def test_create_from_unknown_snapshot_is_404(api: Api) -> None:
    resp = api.post("/volumes", {"volume": {"size": 1, "snapshot_id": UNKNOWN_ID}})
    assert_fault(resp, 404, f"Snapshot {UNKNOWN_ID} could not be found.")


def test_create_from_snapshot_not_available_is_400(api: Api) -> None:
    source = mem_volume(api)
    snap = snapshot(api, source["id"])
    resp = api.post(f"/snapshots/{snap['id']}/action", {"os-reset_status": {"status": "error"}})
    assert resp.status_code == 202
    before = volume_ids(api)
    resp = api.post("/volumes", {"volume": {"snapshot_id": snap["id"]}})
    assert_fault(resp, 400)
    assert volume_ids(api) == before


def test_create_from_source_volume_copies_its_data(api: Api, cinder: RunningService) -> None:
    source = file_volume(api)
    write_at(cinder.volumes_dir / f"volume-{source['id']}", 0, b"source bytes")
    clone = api.create_volume(source_volid=source["id"], name="clone")
    assert clone["source_volid"] == source["id"]
    assert clone["size"] == 1
    assert clone["os-vol-host-attr:host"] == source["os-vol-host-attr:host"]
    assert head_bytes(cinder.volumes_dir / f"volume-{clone['id']}", 12) == b"source bytes"


def test_create_from_source_volume_smaller_is_400(api: Api, cinder: RunningService) -> None:
    source = mem_volume(api, size=3)
    before_ids, before_files = volume_ids(api), files_in(cinder)
    resp = api.post("/volumes", {"volume": {"size": 2, "source_volid": source["id"]}})
    assert "cannot be smaller than original volume size" in assert_fault(resp, 400)
    assert volume_ids(api) == before_ids
    assert files_in(cinder) == before_files


def test_create_from_source_volume_in_error_is_400(api: Api) -> None:
    source = mem_volume(api)
    api.post(f"/volumes/{source['id']}/action", {"os-reset_status": {"status": "error"}})
    resp = api.post("/volumes", {"volume": {"source_volid": source["id"]}})
    assert_fault(resp, 400)


def test_create_from_source_volume_of_another_project_is_404(
    api: Api, member_api: Api, cinder: RunningService
) -> None:
    other = Api(cinder.url, uuid.uuid4().hex, user="demo")
    source = mem_volume(other)
    resp = member_api.post("/volumes", {"volume": {"source_volid": source["id"]}})
    assert_fault(resp, 404, f"Volume {source['id']} could not be found.")


def test_create_from_source_with_type_on_another_backend_is_400(api: Api) -> None:
    source = mem_volume(api)
    resp = api.post(
        "/volumes",
        {"volume": {"source_volid": source["id"], "volume_type": backend_type(api, "files")["id"]}},
    )
    assert_fault(resp, 400)


# --- show / update ------------------------------------------------------------------------
def test_show_unknown_volume_is_404_with_cinder_message(api: Api) -> None:
    expected = sample_body("error_show_unknown_volume_404.json")
    resp = api.get(f"/volumes/{UNKNOWN_ID}")
    assert_fault(resp, 404)
    assert resp.json() == expected


def test_update_name_description_and_metadata(api: Api) -> None:
    volume = mem_volume(api, metadata={"keep": "no", "old": "x"})
    resp = api.put(
        f"/volumes/{volume['id']}",
        {"volume": {"name": "new", "description": "desc", "metadata": {"keep": "yes"}}},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()["volume"]
    assert (body["name"], body["description"]) == ("new", "desc")
    assert body["metadata"] == {"keep": "yes"}  # PUT metadata replaces the whole set
    shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert (shown["name"], shown["description"], shown["metadata"]) == (
        "new",
        "desc",
        {"keep": "yes"},
    )
    assert shown["updated_at"] >= volume["updated_at"]


def test_update_with_legacy_display_fields(api: Api) -> None:
    volume = mem_volume(api)
    resp = api.put(f"/volumes/{volume['id']}", {"volume": {"display_name": "legacy"}})
    assert resp.status_code == 200
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["name"] == "legacy"


def test_update_can_clear_the_description(api: Api) -> None:
    volume = mem_volume(api, description="to clear")
    resp = api.put(f"/volumes/{volume['id']}", {"volume": {"description": None}})
    assert resp.status_code == 200
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["description"] is None


def test_update_empty_body_is_400_from_3_53(api: Api) -> None:
    volume = mem_volume(api, name="unchanged")
    assert_fault(api.put(f"/volumes/{volume['id']}", {"volume": {}}, version="3.53"), 400)
    assert api.put(f"/volumes/{volume['id']}", {"volume": {}}, version="3.52").status_code == 200
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["name"] == "unchanged"


def test_update_unknown_field_is_400(api: Api) -> None:
    volume = mem_volume(api)
    assert_fault(api.put(f"/volumes/{volume['id']}", {"volume": {"size": 5}}), 400)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["size"] == 1


def test_update_unknown_volume_is_404(api: Api) -> None:
    resp = api.put(f"/volumes/{UNKNOWN_ID}", {"volume": {"name": "x"}})
    assert_fault(resp, 404, f"Volume {UNKNOWN_ID} could not be found.")


# --- delete -------------------------------------------------------------------------------
def test_delete_removes_volume_and_file(api: Api, cinder: RunningService) -> None:
    volume = file_volume(api)
    path = cinder.volumes_dir / f"volume-{volume['id']}"
    assert path.exists()
    resp = api.delete(f"/volumes/{volume['id']}")
    assert resp.status_code == 202
    assert resp.content == b""
    api.wait_gone(f"/volumes/{volume['id']}")
    assert not path.exists()
    assert volume["id"] not in volume_ids(api)


def test_delete_unknown_volume_is_404(api: Api) -> None:
    resp = api.delete(f"/volumes/{UNKNOWN_ID}")
    assert_fault(resp, 404)
    assert resp.json() == sample_body("error_delete_unknown_volume_404.json")


def test_delete_with_snapshots_is_400_with_cinder_message(api: Api) -> None:
    volume = mem_volume(api)
    snapshot(api, volume["id"])
    resp = api.delete(f"/volumes/{volume['id']}")
    assert_fault(resp, 400, DELETE_REFUSED)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["status"] == "available"


def test_cascade_delete_removes_snapshots_and_files(api: Api, cinder: RunningService) -> None:
    volume = file_volume(api)
    snaps = [snapshot(api, volume["id"]) for _ in range(2)]
    before = files_in(cinder)
    assert any(volume["id"] in name for name in before)
    resp = api.delete(f"/volumes/{volume['id']}?cascade=true")
    assert resp.status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")
    for snap in snaps:
        assert api.get(f"/snapshots/{snap['id']}").status_code == 404
    assert not any(volume["id"] in name for name in files_in(cinder))


def test_delete_twice_is_refused_or_gone(api: Api) -> None:
    volume = mem_volume(api)
    assert api.delete(f"/volumes/{volume['id']}").status_code == 202
    second = api.delete(f"/volumes/{volume['id']}")
    # Either still deleting (400, Cinder's well-known message) or already gone (404).
    if second.status_code == 400:
        assert_fault(second, 400, DELETE_REFUSED)
    else:
        assert_fault(second, 404)
    api.wait_gone(f"/volumes/{volume['id']}")


def test_delete_volume_in_non_deletable_status_is_400(api: Api) -> None:
    volume = mem_volume(api)
    api.post(f"/volumes/{volume['id']}/action", {"os-reset_status": {"status": "maintenance"}})
    assert_fault(api.delete(f"/volumes/{volume['id']}"), 400, DELETE_REFUSED)
    # force is a 3.23 feature: below it the flag is ignored.
    assert_fault(api.delete(f"/volumes/{volume['id']}?force=true", version="3.22"), 400)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["status"] == "maintenance"


def test_force_delete_at_3_23_is_admin_only(api: Api, member_api: Api) -> None:
    volume = mem_volume(api)
    api.post(f"/volumes/{volume['id']}/action", {"os-reset_status": {"status": "maintenance"}})
    resp = member_api.delete(f"/volumes/{volume['id']}?force=true", version="3.23")
    assert_fault(resp, 403)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["status"] == "maintenance"
    assert api.delete(f"/volumes/{volume['id']}?force=true", version="3.23").status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")


def test_delete_error_volume(api: Api) -> None:
    volume = mem_volume(api)
    api.post(f"/volumes/{volume['id']}/action", {"os-reset_status": {"status": "error"}})
    assert api.delete(f"/volumes/{volume['id']}").status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_delete_with_bad_cascade_value_is_400(api: Api, value: str) -> None:
    volume = mem_volume(api)
    assert_fault(api.delete(f"/volumes/{volume['id']}?cascade={value}"), 400)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["status"] == "available"


# --- summary (3.12) ------------------------------------------------------------------------
def test_volume_summary(api: Api) -> None:
    mem_volume(api, size=1, metadata={"env": "prod", "tier": "a"})
    mem_volume(api, size=2, metadata={"env": "dev"})
    mem_volume(api, size=4, metadata={"env": "prod"})
    resp = api.get("/volumes/summary", version="3.36")
    assert resp.status_code == 200
    summary = resp.json()["volume-summary"]
    assert summary["total_count"] == 3
    assert summary["total_size"] == 7
    assert sorted(summary["metadata"]["env"]) == ["dev", "prod"]
    assert summary["metadata"]["tier"] == ["a"]
    old = api.get("/volumes/summary", version="3.35").json()["volume-summary"]
    assert old == {"total_count": 3, "total_size": 7}


def test_volume_summary_is_per_project(api: Api, cinder: RunningService) -> None:
    other = Api(cinder.url, uuid.uuid4().hex)
    mem_volume(other, size=5)
    summary = api.get("/volumes/summary").json()["volume-summary"]
    assert (summary["total_count"], summary["total_size"]) == (0, 0)


def test_empty_volume_type_means_the_default(api: Api) -> None:
    volume = api.create_volume(size=1, volume_type="")
    assert volume["volume_type"] == "__DEFAULT__"
