"""User messages (3.3+): an asynchronous failure leaves a readable message."""

from __future__ import annotations

import re
import uuid

import pytest
from cbhelpers import (
    UNKNOWN_ID,
    assert_fault,
    assert_request_ids,
    file_volume,
    files_in,
    snapshot,
)

from conftest import Api, RunningService

NO_BACKEND = "schedule allocate volume: Could not find any available weighted backend."
MESSAGE_KEYS = {
    "id",
    "event_id",
    "user_message",
    "message_level",
    "resource_type",
    "resource_uuid",
    "created_at",
    "guaranteed_until",
    "request_id",
    "links",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


@pytest.fixture(scope="module")
def nowhere_type(cinder: RunningService) -> dict:
    admin = Api(cinder.url, uuid.uuid4().hex)
    resp = admin.post(
        "/types",
        {
            "volume_type": {
                "name": f"nowhere-{uuid.uuid4().hex[:8]}",
                "extra_specs": {"volume_backend_name": "no-such-backend"},
            }
        },
    )
    admin.client.close()
    assert resp.status_code == 200, resp.text
    return resp.json()["volume_type"]


def _failed_volume(client: Api, nowhere_type: dict) -> tuple[dict, str]:
    """Create a volume no backend can hold; returns (volume in error, create request id)."""
    resp = client.post("/volumes", {"volume": {"size": 1, "volume_type": nowhere_type["name"]}})
    assert resp.status_code == 202, resp.text
    request_id = assert_request_ids(resp)
    volume = client.wait_volume(resp.json()["volume"]["id"], statuses=("error",))
    return volume, request_id


def _messages(client: Api, query: str = "", version: str = "3.3") -> list[dict]:
    resp = client.get(f"/messages{query}", version=version)
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) <= {"messages", "messages_links"}
    return resp.json()["messages"]


def test_unschedulable_volume_goes_to_error_with_a_message(
    api: Api, cinder: RunningService, nowhere_type: dict
) -> None:
    before_files = files_in(cinder)
    volume, request_id = _failed_volume(api, nowhere_type)
    assert volume["status"] == "error"
    assert volume["os-vol-host-attr:host"] is None
    assert files_in(cinder) == before_files
    messages = _messages(api)
    assert len(messages) == 1
    message = messages[0]
    assert set(message) == MESSAGE_KEYS
    assert message["user_message"] == NO_BACKEND
    assert message["resource_uuid"] == volume["id"]
    assert message["resource_type"] == "VOLUME"
    assert message["event_id"] == "VOLUME_VOLUME_001_002"
    assert message["message_level"] == "ERROR"
    assert message["request_id"] == request_id
    assert TIMESTAMP.match(message["created_at"])
    assert message["guaranteed_until"] > message["created_at"]
    assert message["links"][0]["href"].endswith(f"/messages/{message['id']}")


def test_show_and_delete_message(api: Api, nowhere_type: dict) -> None:
    volume, _ = _failed_volume(api, nowhere_type)
    message = _messages(api)[0]
    resp = api.get(f"/messages/{message['id']}", version="3.3")
    assert resp.status_code == 200
    assert resp.json() == {"message": message}
    resp = api.delete(f"/messages/{message['id']}", version="3.3")
    assert resp.status_code == 204
    assert resp.content == b""
    assert_fault(api.get(f"/messages/{message['id']}", version="3.3"), 404)
    assert_fault(api.delete(f"/messages/{message['id']}", version="3.3"), 404)
    assert _messages(api) == []
    # The volume in error can still be deleted.
    assert api.delete(f"/volumes/{volume['id']}").status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")


def test_messages_need_3_3(api: Api, nowhere_type: dict) -> None:
    _failed_volume(api, nowhere_type)
    message_id = _messages(api)[0]["id"]
    for path in ("/messages", f"/messages/{message_id}"):
        assert_fault(api.get(path, version="3.2"), 404, "The resource could not be found.")
    assert_fault(api.delete(f"/messages/{message_id}", version="3.2"), 404)
    assert len(_messages(api)) == 1


def test_message_filters(api: Api, nowhere_type: dict) -> None:
    first, _ = _failed_volume(api, nowhere_type)
    second, second_request = _failed_volume(api, nowhere_type)
    assert len(_messages(api)) == 2
    only = _messages(api, f"?resource_uuid={first['id']}")
    assert [m["resource_uuid"] for m in only] == [first["id"]]
    by_request = _messages(api, f"?request_id={second_request}")
    assert [m["resource_uuid"] for m in by_request] == [second["id"]]
    assert len(_messages(api, "?event_id=VOLUME_VOLUME_001_002")) == 2
    assert _messages(api, "?event_id=VOLUME_VOLUME_999_999") == []
    assert len(_messages(api, "?resource_type=VOLUME&message_level=ERROR")) == 2


def test_message_paging_from_3_5(api: Api, nowhere_type: dict) -> None:
    for _ in range(3):
        _failed_volume(api, nowhere_type)
    resp = api.get("/messages?limit=2", version="3.5")
    body = resp.json()
    assert len(body["messages"]) == 2
    next_href = body["messages_links"][0]["href"]
    rest = api.client.get(next_href, headers=api.headers("3.5")).json()["messages"]
    ids = [m["id"] for m in body["messages"]] + [m["id"] for m in rest]
    assert len(ids) == len(set(ids)) == 3
    # Before 3.5 paging parameters are not honoured.
    assert len(_messages(api, "?limit=1", version="3.4")) == 3


def test_messages_are_private_to_the_project(
    api: Api, cinder: RunningService, nowhere_type: dict
) -> None:
    _failed_volume(api, nowhere_type)
    message_id = _messages(api)[0]["id"]
    stranger = Api(cinder.url, uuid.uuid4().hex, user="demo")
    try:
        assert _messages(stranger) == []
        assert_fault(stranger.get(f"/messages/{message_id}", version="3.3"), 404)
        assert_fault(stranger.delete(f"/messages/{message_id}", version="3.3"), 404)
    finally:
        stranger.client.close()
    assert len(_messages(api)) == 1


def test_member_sees_and_deletes_own_messages(member_api: Api, nowhere_type: dict) -> None:
    volume, _ = _failed_volume(member_api, nowhere_type)
    messages = _messages(member_api)
    assert [m["resource_uuid"] for m in messages] == [volume["id"]]
    assert member_api.delete(f"/messages/{messages[0]['id']}", version="3.3").status_code == 204


def test_unknown_message_is_404(api: Api) -> None:
    assert_fault(api.get(f"/messages/{UNKNOWN_ID}", version="3.3"), 404)
    assert_fault(api.get("/messages/not-a-uuid", version="3.3"), 404)


def test_unknown_message_filter_is_400_for_members(member_api: Api) -> None:
    assert_fault(member_api.get("/messages?colour=red", version="3.31"), 400)


def test_backend_failure_on_clone_leaves_error_and_message(
    api: Api, cinder: RunningService
) -> None:
    source = file_volume(api)
    snap = snapshot(api, source["id"])
    snap_files = [p for p in cinder.volumes_dir.iterdir() if snap["id"] in p.name]
    assert len(snap_files) == 1
    snap_files[0].unlink()  # the backend object disappears behind our back
    resp = api.post("/volumes", {"volume": {"snapshot_id": snap["id"], "name": "doomed"}})
    assert resp.status_code == 202, resp.text
    volume = api.wait_volume(resp.json()["volume"]["id"], statuses=("error",))
    assert volume["status"] == "error"
    assert not (cinder.volumes_dir / f"volume-{volume['id']}").exists()
    messages = _messages(api, f"?resource_uuid={volume['id']}")
    assert len(messages) == 1
    assert messages[0]["user_message"].startswith("create volume from source: ")
    assert messages[0]["resource_type"] == "VOLUME"
    assert messages[0]["request_id"] == assert_request_ids(resp)


def test_backend_failure_on_extend_leaves_error_extending_and_message(
    api: Api, cinder: RunningService
) -> None:
    volume = file_volume(api)
    (cinder.volumes_dir / f"volume-{volume['id']}").unlink()
    resp = api.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}})
    assert resp.status_code == 202
    failed = api.wait_volume(volume["id"], statuses=("error_extending",))
    assert failed["size"] == 1
    messages = _messages(api, f"?resource_uuid={volume['id']}")
    assert [m["user_message"].split(":")[0] for m in messages] == ["extend volume"]
    # error_extending volumes may be deleted.
    assert api.delete(f"/volumes/{volume['id']}").status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")


def test_actions_on_a_volume_no_backend_holds_are_400(api: Api, nowhere_type: dict) -> None:
    volume, _ = _failed_volume(api, nowhere_type)
    vid = volume["id"]
    # Even made "available" by an admin, nothing could carry the work out.
    assert (
        api.post(f"/volumes/{vid}/action", {"os-reset_status": {"status": "available"}}).status_code
        == 202
    )
    assert_fault(api.post(f"/volumes/{vid}/action", {"os-extend": {"new_size": 2}}), 400)
    assert_fault(api.post("/snapshots", {"snapshot": {"volume_id": vid}}), 400)
    before = [v["id"] for v in api.get("/volumes").json()["volumes"]]
    assert_fault(api.post("/volumes", {"volume": {"source_volid": vid}}), 400)
    assert [v["id"] for v in api.get("/volumes").json()["volumes"]] == before
    shown = api.get(f"/volumes/{vid}").json()["volume"]
    assert (shown["status"], shown["size"]) == ("available", 1)
    assert api.get("/snapshots").json()["snapshots"] == []
    assert api.delete(f"/volumes/{vid}").status_code == 202
    api.wait_gone(f"/volumes/{vid}")
