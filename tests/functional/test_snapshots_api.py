"""Snapshots: create (force before/after 3.66), views, lists, update, delete, metadata, actions."""

from __future__ import annotations

import re

import pytest
from cbhelpers import (
    UNKNOWN_ID,
    assert_fault,
    file_volume,
    files_in,
    mem_volume,
    sample_body,
    snapshot,
    snapshot_ids,
)

from conftest import Api, RunningService

SNAP_DELETE_REFUSED = (
    "Invalid snapshot: Snapshot status must be available or error and must not be part of a group."
)
CREATE_3_8 = set(sample_body("snapshot_create.json")["snapshot"])
SHOW_3_8 = set(sample_body("snapshot_show.json")["snapshot"])
SHOW_3_71 = set(sample_body("snapshot_show_latest.json")["snapshot"])
DETAIL_3_8 = set(sample_body("snapshot_list_detail.json")["snapshots"][0])
EXTENDED = {
    "os-extended-snapshot-attributes:project_id",
    "os-extended-snapshot-attributes:progress",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def _in_use(api: Api, volume_id: str) -> None:
    """Mark a volume attached the admin way (no attachments API here)."""
    for body in ({"attach_status": "attached"}, {"status": "in-use"}):
        resp = api.post(f"/volumes/{volume_id}/action", {"os-reset_status": body})
        assert resp.status_code == 202, resp.text


# --- views ---------------------------------------------------------------------------------------
def test_sample_key_sets() -> None:
    assert SHOW_3_8 == DETAIL_3_8 == CREATE_3_8 | EXTENDED
    assert SHOW_3_8 | {"group_snapshot_id", "user_id", "consumes_quota"} == SHOW_3_71


def test_create_keys_at_3_8_and_3_71(api: Api) -> None:
    volume = mem_volume(api)
    resp = api.post(
        "/snapshots",
        {"snapshot": {"volume_id": volume["id"], "name": "s", "description": "d", "force": False}},
        version="3.8",
    )
    assert resp.status_code == 202, resp.text
    assert set(resp.json()) == {"snapshot"}
    body = resp.json()["snapshot"]
    assert set(body) == CREATE_3_8
    assert body["status"] == "creating"
    assert (body["size"], body["volume_id"], body["name"]) == (1, volume["id"], "s")
    assert body["updated_at"] is None
    api.wait_snapshot(body["id"])
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}}, version="3.71")
    assert set(resp.json()["snapshot"]) == SHOW_3_71 - EXTENDED
    api.wait_snapshot(resp.json()["snapshot"]["id"])


@pytest.mark.parametrize(("version", "expected"), [("3.8", SHOW_3_8), ("3.71", SHOW_3_71)])
def test_show_keys_and_values(api: Api, version: str, expected: set[str]) -> None:
    volume = mem_volume(api, size=2)
    snap = snapshot(api, volume["id"], name="shown", metadata={"k": "v"})
    body = api.get(f"/snapshots/{snap['id']}", version=version).json()["snapshot"]
    assert set(body) == expected
    assert body["status"] == "available"
    assert body["size"] == 2
    assert body["metadata"] == {"k": "v"}
    assert body["os-extended-snapshot-attributes:project_id"] == api.project
    assert body["os-extended-snapshot-attributes:progress"] == "100%"
    assert TIMESTAMP.match(body["created_at"]) and TIMESTAMP.match(body["updated_at"])
    if version == "3.71":
        assert (body["user_id"], body["consumes_quota"], body["group_snapshot_id"]) == (
            "admin",
            True,
            None,
        )


def test_list_keys(api: Api) -> None:
    volume = mem_volume(api)
    snapshot(api, volume["id"])
    detail = api.get("/snapshots/detail", version="3.8").json()
    assert set(detail) == set(sample_body("snapshot_list_detail.json"))
    assert set(detail["snapshots"][0]) == DETAIL_3_8
    summary = api.get("/snapshots", version="3.8").json()["snapshots"]
    assert set(summary[0]) == CREATE_3_8


def test_member_sees_the_same_keys(member_api: Api) -> None:
    volume = mem_volume(member_api)
    snap = snapshot(member_api, volume["id"])
    body = member_api.get(f"/snapshots/{snap['id']}").json()["snapshot"]
    assert set(body) == SHOW_3_71


# --- create --------------------------------------------------------------------------------------
def test_snapshot_of_file_volume_makes_a_backend_object(api: Api, cinder: RunningService) -> None:
    volume = file_volume(api)
    before = files_in(cinder)
    snap = snapshot(api, volume["id"])
    made = files_in(cinder) - before
    assert len(made) == 1
    assert api.delete(f"/snapshots/{snap['id']}").status_code == 202
    api.wait_gone(f"/snapshots/{snap['id']}")
    assert files_in(cinder) == before


def test_snapshot_of_in_use_volume_needs_force_before_3_66(api: Api) -> None:
    volume = mem_volume(api)
    _in_use(api, volume["id"])
    before = snapshot_ids(api)
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}}, version="3.65")
    assert assert_fault(resp, 400).startswith("Invalid volume: ")
    resp = api.post(
        "/snapshots", {"snapshot": {"volume_id": volume["id"], "force": False}}, version="3.65"
    )
    assert_fault(resp, 400)
    assert snapshot_ids(api) == before
    resp = api.post(
        "/snapshots", {"snapshot": {"volume_id": volume["id"], "force": "true"}}, version="3.65"
    )
    assert resp.status_code == 202, resp.text
    api.wait_snapshot(resp.json()["snapshot"]["id"])


def test_snapshot_of_in_use_volume_from_3_66(api: Api) -> None:
    volume = mem_volume(api)
    _in_use(api, volume["id"])
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}}, version="3.66")
    assert resp.status_code == 202, resp.text
    api.wait_snapshot(resp.json()["snapshot"]["id"])
    resp = api.post(
        "/snapshots", {"snapshot": {"volume_id": volume["id"], "force": True}}, version="3.66"
    )
    assert resp.status_code == 202  # force=true is silently ignored
    api.wait_snapshot(resp.json()["snapshot"]["id"])
    before = snapshot_ids(api)
    resp = api.post(
        "/snapshots", {"snapshot": {"volume_id": volume["id"], "force": False}}, version="3.66"
    )
    assert "Since microversion 3.66" in assert_fault(resp, 400)
    assert snapshot_ids(api) == before


def test_force_must_be_a_boolean(api: Api) -> None:
    volume = mem_volume(api)
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"], "force": "maybe"}})
    assert_fault(resp, 400)
    assert snapshot_ids(api) == []


def test_snapshot_of_volume_in_error_is_400(api: Api) -> None:
    volume = mem_volume(api)
    api.post(f"/volumes/{volume['id']}/action", {"os-reset_status": {"status": "error"}})
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"], "force": True}})
    assert_fault(
        resp,
        400,
        f"Invalid volume: Volume {volume['id']} status must be available, but current status "
        "is: error.",
    )
    assert snapshot_ids(api) == []


def test_snapshot_create_bad_requests(api: Api) -> None:
    assert_fault(api.post("/snapshots", {"snapshot": {"volume_id": UNKNOWN_ID}}), 404)
    assert_fault(api.post("/snapshots", {"snapshot": {"volume_id": "not-a-uuid"}}), 400)
    assert_fault(api.post("/snapshots", {"snapshot": {}}), 400)
    assert_fault(api.post("/snapshots", {"snapshot": {"volume_id": None}}), 400)
    assert_fault(api.post("/snapshots", {}), 400, "'snapshot' is a required property")
    volume = mem_volume(api)
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"], "colour": "red"}})
    assert_fault(resp, 400)
    assert snapshot_ids(api) == []


def test_snapshot_of_another_projects_volume_is_404(api: Api, member_api: Api) -> None:
    other = Api(api.base, "abcdef0123456789abcdef0123456789", user="demo")
    try:
        volume = mem_volume(other)
        resp = member_api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}})
        assert_fault(resp, 404, f"Volume {volume['id']} could not be found.")
        assert snapshot_ids(other) == []
    finally:
        other.client.close()


# --- lists ---------------------------------------------------------------------------------------
@pytest.fixture
def three(api: Api) -> dict[str, dict]:
    v1 = mem_volume(api, name="v1")
    v2 = mem_volume(api, name="v2")
    snaps = {
        "a": snapshot(api, v1["id"], name="snap-a", metadata={"k": "1"}),
        "b": snapshot(api, v1["id"], name="snap-b"),
        "c": snapshot(api, v2["id"], name="other-c", metadata={"k": "1"}),
    }
    api.post(f"/snapshots/{snaps['b']['id']}/action", {"os-reset_status": {"status": "error"}})
    return {"v1": v1, "v2": v2, **snaps}


def _snap_names(api: Api, query: str, **kw) -> list[str]:
    resp = api.get(f"/snapshots{query}", **kw)
    assert resp.status_code == 200, resp.text
    return [s["name"] for s in resp.json()["snapshots"]]


def test_snapshot_filters(api: Api, member_api: Api, three: dict) -> None:
    for client in (api, member_api):
        assert _snap_names(client, "?name=snap-a") == ["snap-a"]
        assert _snap_names(client, "?status=error") == ["snap-b"]
        assert sorted(_snap_names(client, f"?volume_id={three['v1']['id']}")) == [
            "snap-a",
            "snap-b",
        ]
        assert sorted(_snap_names(client, "/detail?metadata={'k':'1'}", version="3.22")) == [
            "other-c",
            "snap-a",
        ]
        assert sorted(_snap_names(client, "?name~=snap", version="3.34")) == ["snap-a", "snap-b"]
    assert_fault(member_api.get("/snapshots?colour=red", version="3.31"), 400)
    assert len(_snap_names(member_api, "?colour=red", version="3.30")) == 3


def test_snapshot_sort_by_name_needs_3_30(api: Api, three: dict) -> None:
    assert _snap_names(api, "?sort=name:asc", version="3.30") == ["other-c", "snap-a", "snap-b"]
    assert_fault(api.get("/snapshots?sort=name:asc", version="3.29"), 400)
    assert _snap_names(api, "?sort=created_at:asc") == ["snap-a", "snap-b", "other-c"]
    assert_fault(
        api.get("/snapshots?sort=bogus:asc"), 400, "Invalid input received: Invalid sort key"
    )


def test_snapshot_paging(api: Api, three: dict) -> None:
    seen = []
    url = api.url("/snapshots/detail?limit=2&sort=created_at:asc")
    for _ in range(5):
        body = api.client.get(url, headers=api.headers()).json()
        seen.extend(s["name"] for s in body["snapshots"])
        if "snapshots_links" not in body:
            break
        url = body["snapshots_links"][0]["href"]
    assert seen == ["snap-a", "snap-b", "other-c"]
    body = api.get("/snapshots?with_count=true&limit=1").json()
    assert body["count"] == 3 and len(body["snapshots"]) == 1


# --- update / delete -----------------------------------------------------------------------------
def test_update_snapshot(api: Api) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"], name="before")
    resp = api.put(
        f"/snapshots/{snap['id']}", {"snapshot": {"name": " after ", "description": "why"}}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()["snapshot"]
    assert (body["name"], body["description"]) == ("after", "why")
    shown = api.get(f"/snapshots/{snap['id']}").json()["snapshot"]
    assert (shown["name"], shown["description"]) == ("after", "why")
    resp = api.put(f"/snapshots/{snap['id']}", {"snapshot": {"display_name": "legacy"}})
    assert resp.status_code == 200
    assert api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["name"] == "legacy"


def test_update_snapshot_bad_bodies(api: Api) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"], name="same")
    for body in ({"snapshot": {}}, {"snapshot": {"size": 3}}, {}, {"snapshot": {"name": 5}}):
        assert_fault(api.put(f"/snapshots/{snap['id']}", body), 400)
    assert_fault(api.put(f"/snapshots/{UNKNOWN_ID}", {"snapshot": {"name": "x"}}), 404)
    assert api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["name"] == "same"


def test_delete_snapshot(api: Api) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"])
    resp = api.delete(f"/snapshots/{snap['id']}")
    assert resp.status_code == 202
    assert resp.content == b""
    api.wait_gone(f"/snapshots/{snap['id']}")
    assert snapshot_ids(api) == []
    # The volume is deletable again.
    assert api.delete(f"/volumes/{volume['id']}").status_code == 202


def test_delete_snapshot_in_error(api: Api) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"])
    api.post(f"/snapshots/{snap['id']}/action", {"os-reset_status": {"status": "error"}})
    assert api.delete(f"/snapshots/{snap['id']}").status_code == 202
    api.wait_gone(f"/snapshots/{snap['id']}")


@pytest.mark.parametrize("status", ["creating", "error_deleting", "restoring"])
def test_delete_snapshot_in_wrong_status_is_400(api: Api, status: str) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"])
    api.post(f"/snapshots/{snap['id']}/action", {"os-reset_status": {"status": status}})
    assert_fault(api.delete(f"/snapshots/{snap['id']}"), 400, SNAP_DELETE_REFUSED)
    assert api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == status


def test_delete_unknown_snapshot_is_404(api: Api) -> None:
    assert_fault(
        api.delete(f"/snapshots/{UNKNOWN_ID}"), 404, f"Snapshot {UNKNOWN_ID} could not be found."
    )


# --- metadata -------------------------------------------------------------------------------------
def test_snapshot_metadata_crud(api: Api) -> None:
    volume = mem_volume(api)
    sid = snapshot(api, volume["id"], metadata={"a": "1"})["id"]
    assert api.get(f"/snapshots/{sid}/metadata").json() == {"metadata": {"a": "1"}}
    resp = api.post(f"/snapshots/{sid}/metadata", {"metadata": {"b": "2"}})
    assert resp.json() == {"metadata": {"a": "1", "b": "2"}}
    resp = api.put(f"/snapshots/{sid}/metadata", {"metadata": {"c": "3"}})
    assert resp.json() == {"metadata": {"c": "3"}}
    assert api.get(f"/snapshots/{sid}/metadata/c").json() == {"meta": {"c": "3"}}
    assert api.put(f"/snapshots/{sid}/metadata/c", {"meta": {"c": "33"}}).json() == {
        "meta": {"c": "33"}
    }
    assert_fault(api.put(f"/snapshots/{sid}/metadata/c", {"meta": {"d": "4"}}), 400)
    assert_fault(api.put(f"/snapshots/{sid}/metadata/c", {"meta": {"c": "4", "d": "4"}}), 400)
    assert_fault(api.post(f"/snapshots/{sid}/metadata", {"metadata": {"bad!": "x"}}), 400)
    resp = api.delete(f"/snapshots/{sid}/metadata/c")
    assert resp.status_code == 200
    assert_fault(
        api.get(f"/snapshots/{sid}/metadata/c"), 404, f"Snapshot {sid} has no metadata with key c."
    )
    assert_fault(api.delete(f"/snapshots/{sid}/metadata/c"), 404)
    assert api.get(f"/snapshots/{sid}").json()["snapshot"]["metadata"] == {}


# --- actions -------------------------------------------------------------------------------------
def test_snapshot_reset_status(api: Api, member_api: Api) -> None:
    volume = mem_volume(api)
    sid = snapshot(api, volume["id"])["id"]
    resp = api.post(f"/snapshots/{sid}/action", {"os-reset_status": {"status": "ERROR"}})
    assert resp.status_code == 202
    assert api.get(f"/snapshots/{sid}").json()["snapshot"]["status"] == "error"
    for body in ({"status": "bogus"}, {}, {"status": "error", "x": 1}):
        assert_fault(api.post(f"/snapshots/{sid}/action", {"os-reset_status": body}), 400)
    assert api.get(f"/snapshots/{sid}").json()["snapshot"]["status"] == "error"


def test_snapshot_admin_actions_are_admin_only(member_api: Api) -> None:
    volume = mem_volume(member_api)
    sid = snapshot(member_api, volume["id"])["id"]
    resp = member_api.post(f"/snapshots/{sid}/action", {"os-reset_status": {"status": "error"}})
    assert_fault(resp, 403)
    assert_fault(member_api.post(f"/snapshots/{sid}/action", {"os-force_delete": {}}), 403)
    assert member_api.get(f"/snapshots/{sid}").json()["snapshot"]["status"] == "available"


def test_snapshot_force_delete(api: Api) -> None:
    volume = mem_volume(api)
    sid = snapshot(api, volume["id"])["id"]
    api.post(f"/snapshots/{sid}/action", {"os-reset_status": {"status": "creating"}})
    assert api.post(f"/snapshots/{sid}/action", {"os-force_delete": {}}).status_code == 202
    api.wait_gone(f"/snapshots/{sid}")


def test_snapshot_unknown_action(api: Api) -> None:
    volume = mem_volume(api)
    sid = snapshot(api, volume["id"])["id"]
    assert_fault(api.post(f"/snapshots/{sid}/action", {"os-nope": {}}), 400)
    assert_fault(api.post(f"/snapshots/{UNKNOWN_ID}/action", {"os-force_delete": {}}), 404)


@pytest.mark.parametrize("sort", ["status:asc", "size:desc", "name:asc", "volume_id:asc"])
def test_snapshot_paging_over_ties(api: Api, sort: str) -> None:
    small, big = mem_volume(api, size=1), mem_volume(api, size=2)
    made = [
        snapshot(api, v["id"], **({"name": "n"} if i % 2 else {}))
        for i, v in enumerate([small, small, big, big, small])
    ]
    full = [s["id"] for s in api.get(f"/snapshots?sort={sort}").json()["snapshots"]]
    assert sorted(full) == sorted(s["id"] for s in made)
    seen: list[str] = []
    url: str | None = api.url(f"/snapshots?sort={sort}&limit=2")
    while url:
        body = api.client.get(url, headers=api.headers()).json()
        seen.extend(s["id"] for s in body["snapshots"])
        url = body["snapshots_links"][0]["href"] if body.get("snapshots_links") else None
        assert len(seen) <= len(made) + 2
    assert seen == full


def test_snapshot_zone_and_quota_filters(member_api: Api) -> None:
    volume = mem_volume(member_api)
    snap = snapshot(member_api, volume["id"])
    assert _snap_names(member_api, "?availability_zone=nova") == [snap["name"]]
    assert _snap_names(member_api, "?availability_zone=elsewhere") == []
    assert len(_snap_names(member_api, "?consumes_quota=true", version="3.65")) == 1
    assert _snap_names(member_api, "?consumes_quota=false", version="3.65") == []
    # Before 3.65 the filter does not exist and is dropped (before 3.31) or refused.
    assert len(_snap_names(member_api, "?consumes_quota=false", version="3.30")) == 1
