"""Projects are isolated from each other; admin-only actions and views stay admin-only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cbhelpers import (
    ADMIN_ONLY_VOLUME_KEYS,
    assert_fault,
    mem_volume,
    snapshot,
    snapshot_ids,
    volume_ids,
)

from conftest import Api, RunningService


@pytest.fixture
def other(cinder: RunningService) -> Iterator[Api]:
    """A member of another project, with a volume and a snapshot of its own."""
    client = Api(cinder.url, uuid.uuid4().hex, user="demo")
    yield client
    client.client.close()


@pytest.fixture
def theirs(other: Api) -> dict:
    volume = mem_volume(other, name="theirs", metadata={"owner": "them"})
    snap = snapshot(other, volume["id"], name="their-snap")
    return {"volume": volume, "snapshot": snap}


def test_member_cannot_see_another_projects_volume(member_api: Api, theirs: dict) -> None:
    vid = theirs["volume"]["id"]
    message = f"Volume {vid} could not be found."
    assert_fault(member_api.get(f"/volumes/{vid}"), 404, message)
    assert_fault(member_api.get(f"/volumes/{vid}/metadata"), 404, message)
    assert_fault(member_api.get(f"/volumes/{vid}/metadata/owner"), 404)
    assert vid not in volume_ids(member_api)
    assert vid not in volume_ids(member_api, "/detail")
    assert vid not in volume_ids(member_api, f"?id={vid}", version="3.0")
    summary = member_api.get("/volumes/summary").json()["volume-summary"]
    assert summary["total_count"] == 0


def test_member_cannot_modify_another_projects_volume(
    member_api: Api, other: Api, theirs: dict
) -> None:
    vid = theirs["volume"]["id"]
    attempts = [
        member_api.put(f"/volumes/{vid}", {"volume": {"name": "mine now"}}),
        member_api.delete(f"/volumes/{vid}"),
        member_api.delete(f"/volumes/{vid}?cascade=true"),
        member_api.post(f"/volumes/{vid}/metadata", {"metadata": {"owner": "me"}}),
        member_api.put(f"/volumes/{vid}/metadata", {"metadata": {}}),
        member_api.put(f"/volumes/{vid}/metadata/owner", {"meta": {"owner": "me"}}),
        member_api.delete(f"/volumes/{vid}/metadata/owner"),
        member_api.post(f"/volumes/{vid}/action", {"os-extend": {"new_size": 5}}),
        member_api.post(
            f"/volumes/{vid}/action", {"revert": {"snapshot_id": theirs["snapshot"]["id"]}}
        ),
        member_api.post("/snapshots", {"snapshot": {"volume_id": vid}}),
        member_api.post("/volumes", {"volume": {"source_volid": vid}}),
    ]
    for resp in attempts:
        assert_fault(resp, 404)
    after = other.get(f"/volumes/{vid}").json()["volume"]
    assert (after["name"], after["size"], after["status"]) == ("theirs", 1, "available")
    assert after["metadata"] == {"owner": "them"}
    assert snapshot_ids(other) == [theirs["snapshot"]["id"]]
    assert volume_ids(member_api) == []


def test_member_cannot_touch_another_projects_snapshot(
    member_api: Api, other: Api, theirs: dict
) -> None:
    sid = theirs["snapshot"]["id"]
    for resp in (
        member_api.get(f"/snapshots/{sid}"),
        member_api.put(f"/snapshots/{sid}", {"snapshot": {"name": "mine"}}),
        member_api.delete(f"/snapshots/{sid}"),
        member_api.get(f"/snapshots/{sid}/metadata"),
        member_api.post(f"/snapshots/{sid}/metadata", {"metadata": {"a": "b"}}),
        member_api.post("/volumes", {"volume": {"snapshot_id": sid}}),
    ):
        assert_fault(resp, 404)
    assert sid not in snapshot_ids(member_api, "/detail")
    assert other.get(f"/snapshots/{sid}").json()["snapshot"]["name"] == "their-snap"


def test_member_cannot_use_admin_actions_on_own_volume(member_api: Api) -> None:
    volume = mem_volume(member_api)
    vid = volume["id"]
    for body in (
        {"os-reset_status": {"status": "error"}},
        {"os-force_delete": {}},
    ):
        message = assert_fault(member_api.post(f"/volumes/{vid}/action", body), 403)
        assert message.startswith("Policy doesn't allow ")
    assert_fault(member_api.delete(f"/volumes/{vid}?force=true", version="3.23"), 403)
    assert member_api.get(f"/volumes/{vid}").json()["volume"]["status"] == "available"


def test_member_all_tenants_is_silently_ignored(member_api: Api, theirs: dict) -> None:
    mine = mem_volume(member_api)
    for version in ("3.0", "3.71"):
        ids = volume_ids(member_api, "/detail?all_tenants=1", version=version)
        assert ids == [mine["id"]]
    assert snapshot_ids(member_api, "?all_tenants=true") == []


def test_member_does_not_see_admin_fields_even_in_lists(member_api: Api) -> None:
    mem_volume(member_api)
    for item in member_api.get("/volumes/detail").json()["volumes"]:
        assert not ADMIN_ONLY_VOLUME_KEYS & set(item)


def test_admin_sees_other_projects_with_all_tenants(api: Api, other: Api, theirs: dict) -> None:
    mine = mem_volume(api)
    vid = theirs["volume"]["id"]
    assert volume_ids(api) == [mine["id"]]  # own project only by default
    everything = api.get("/volumes/detail?all_tenants=1").json()["volumes"]
    by_id = {v["id"]: v for v in everything}
    assert {mine["id"], vid} <= set(by_id)
    assert by_id[vid]["os-vol-tenant-attr:tenant_id"] == other.project
    assert by_id[mine["id"]]["os-vol-tenant-attr:tenant_id"] == api.project
    only_theirs = volume_ids(api, f"?all_tenants=1&project_id={other.project}")
    assert only_theirs == [vid]
    assert theirs["snapshot"]["id"] in snapshot_ids(api, "/detail?all_tenants=1")
    assert volume_ids(api, "?all_tenants=0") == [mine["id"]]


def test_admin_can_act_on_other_projects_volumes(api: Api, other: Api, theirs: dict) -> None:
    vid = theirs["volume"]["id"]
    shown = api.get(f"/volumes/{vid}").json()["volume"]
    assert shown["os-vol-tenant-attr:tenant_id"] == other.project
    assert (
        api.post(f"/volumes/{vid}/action", {"os-reset_status": {"status": "error"}}).status_code
        == 202
    )
    assert other.get(f"/volumes/{vid}").json()["volume"]["status"] == "error"


def test_url_project_must_be_the_token_project(member_api: Api, other: Api, theirs: dict) -> None:
    # A member naming another project in the URL gets nothing from it.
    resp = member_api.client.get(
        f"{member_api.base}/v3/{other.project}/volumes/{theirs['volume']['id']}",
        headers=member_api.headers(),
    )
    assert_fault(resp, 400, "Malformed request url")
    resp = member_api.client.get(
        f"{member_api.base}/v3/{other.project}/volumes", headers=member_api.headers()
    )
    assert_fault(resp, 400, "Malformed request url")


def test_two_members_of_one_project_share_its_volumes(cinder: RunningService, project: str) -> None:
    alice = Api(cinder.url, project, user="alice")
    bob = Api(cinder.url, project, user="bob")
    try:
        volume = mem_volume(alice, name="shared")
        shown = bob.get(f"/volumes/{volume['id']}").json()["volume"]
        assert (shown["name"], shown["user_id"]) == ("shared", "alice")
        assert bob.put(f"/volumes/{volume['id']}", {"volume": {"name": "bob's"}}).status_code == 200
        assert alice.get(f"/volumes/{volume['id']}").json()["volume"]["name"] == "bob's"
    finally:
        alice.client.close()
        bob.client.close()


def test_limits_are_per_project(member_api: Api, other: Api, theirs: dict) -> None:
    mem_volume(member_api, size=2)
    absolute = member_api.get("/limits").json()["limits"]["absolute"]
    assert absolute["totalVolumesUsed"] == 1
    assert absolute["totalGigabytesUsed"] == 2
    assert absolute["totalSnapshotsUsed"] == 0
    # Only admins may ask about another project (3.39).
    absolute = member_api.get(f"/limits?project_id={other.project}", version="3.39").json()
    assert absolute["limits"]["absolute"]["totalVolumesUsed"] == 1
    assert absolute["limits"]["absolute"]["totalGigabytesUsed"] == 2


def test_admin_may_read_another_projects_limits_from_3_39(
    api: Api, other: Api, theirs: dict
) -> None:
    absolute = api.get(f"/limits?project_id={other.project}", version="3.39").json()["limits"][
        "absolute"
    ]
    assert (absolute["totalVolumesUsed"], absolute["totalSnapshotsUsed"]) == (1, 1)
    absolute = api.get(f"/limits?project_id={other.project}", version="3.38").json()["limits"][
        "absolute"
    ]
    assert (absolute["totalVolumesUsed"], absolute["totalSnapshotsUsed"]) == (0, 0)
