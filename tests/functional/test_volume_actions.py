"""Volume actions: os-extend, os-reset_status, os-force_delete, revert (3.40)."""

from __future__ import annotations

import pytest
from cbhelpers import (
    UNKNOWN_ID,
    assert_fault,
    file_volume,
    mem_volume,
    read_at,
    sample_body,
    snapshot,
    write_at,
)

from conftest import Api, RunningService

DELETE_REFUSED = sample_body("error_delete_volume_with_snapshot.json")["badRequest"]["message"]


def _action(api: Api, volume_id: str, body: dict, **kw):
    return api.post(f"/volumes/{volume_id}/action", body, **kw)


def _status(api: Api, volume_id: str) -> str:
    return api.get(f"/volumes/{volume_id}").json()["volume"]["status"]


# --- generic -----------------------------------------------------------------------------------
def test_unknown_action_is_400(api: Api) -> None:
    volume = mem_volume(api)
    assert_fault(
        _action(api, volume["id"], {"os-nope": {}}), 400, "There is no such action: os-nope"
    )


def test_action_body_with_two_actions_is_400(api: Api) -> None:
    volume = mem_volume(api)
    resp = _action(api, volume["id"], {"os-extend": {"new_size": 2}, "os-force_delete": {}})
    assert_fault(resp, 400)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["size"] == 1


def test_action_on_unknown_volume_is_404(api: Api) -> None:
    resp = _action(api, UNKNOWN_ID, {"os-extend": {"new_size": 2}})
    assert_fault(resp, 404, f"Volume {UNKNOWN_ID} could not be found.")


# --- os-extend ----------------------------------------------------------------------------------
def test_extend_memory_volume(api: Api) -> None:
    volume = mem_volume(api, size=1)
    resp = _action(api, volume["id"], {"os-extend": {"new_size": 3}})
    assert resp.status_code == 202
    assert resp.content == b""
    extended = api.wait_volume(volume["id"])
    assert extended["size"] == 3


def test_extend_file_volume_grows_the_file_and_keeps_data(api: Api, cinder: RunningService) -> None:
    volume = file_volume(api, size=1)
    path = cinder.volumes_dir / f"volume-{volume['id']}"
    write_at(path, 1024**3 - 4, b"tail")
    assert _action(api, volume["id"], {"os-extend": {"new_size": "2"}}).status_code == 202
    assert api.wait_volume(volume["id"])["size"] == 2
    assert path.stat().st_size == 2 * 1024**3
    assert read_at(path, 1024**3 - 4, 8) == b"tail" + bytes(4)


@pytest.mark.parametrize("new_size", [1, 2])
def test_extend_to_same_or_smaller_is_400(api: Api, new_size: int) -> None:
    volume = mem_volume(api, size=2)
    message = assert_fault(_action(api, volume["id"], {"os-extend": {"new_size": new_size}}), 400)
    assert "New size for extend must be greater than current size" in message
    after = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert (after["size"], after["status"]) == (2, "available")


@pytest.mark.parametrize("new_size", [0, -1, "abc", 1.5, True, None, "2.0"])
def test_extend_with_invalid_size_is_400(api: Api, new_size) -> None:
    volume = mem_volume(api, size=1)
    assert_fault(_action(api, volume["id"], {"os-extend": {"new_size": new_size}}), 400)
    assert_fault(_action(api, volume["id"], {"os-extend": {}}), 400)
    assert_fault(_action(api, volume["id"], {"os-extend": {"new_size": 2, "x": 1}}), 400)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["size"] == 1


def test_extend_volume_not_available_is_400(api: Api) -> None:
    volume = mem_volume(api)
    _action(api, volume["id"], {"os-reset_status": {"status": "error"}})
    message = assert_fault(_action(api, volume["id"], {"os-extend": {"new_size": 2}}), 400)
    assert message.startswith("Invalid volume: ")
    after = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert (after["size"], after["status"]) == (1, "error")


# --- os-reset_status ---------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["error", "available", "ERROR", "maintenance", "error_deleting"])
def test_reset_status(api: Api, status: str) -> None:
    volume = mem_volume(api)
    resp = _action(api, volume["id"], {"os-reset_status": {"status": status}})
    assert resp.status_code == 202, resp.text
    assert _status(api, volume["id"]) == status.lower()


def test_reset_migration_status(api: Api) -> None:
    volume = mem_volume(api)
    assert (
        _action(api, volume["id"], {"os-reset_status": {"migration_status": "error"}}).status_code
        == 202
    )
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["migration_status"] == "error"
    _action(api, volume["id"], {"os-reset_status": {"migration_status": "none"}})
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["migration_status"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"status": "bogus"},
        {"status": "deleting"},
        {"status": "in-use"},  # no attachments
        {"attach_status": "sideways"},
        {"migration_status": "wandering"},
        {},
        {"status": 5},
        {"status": "error", "colour": "red"},
    ],
)
def test_reset_status_with_invalid_values_is_400(api: Api, body: dict) -> None:
    volume = mem_volume(api)
    assert_fault(_action(api, volume["id"], {"os-reset_status": body}), 400)
    after = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert (after["status"], after["migration_status"]) == ("available", None)


def test_reset_to_deleting_message(api: Api) -> None:
    volume = mem_volume(api)
    resp = _action(api, volume["id"], {"os-reset_status": {"status": "deleting"}})
    assert_fault(resp, 400, "Invalid volume: Cannot reset-state to deleting")


def test_reset_status_is_admin_only(member_api: Api) -> None:
    volume = mem_volume(member_api)
    resp = _action(member_api, volume["id"], {"os-reset_status": {"status": "error"}})
    assert_fault(resp, 403)
    assert _status(member_api, volume["id"]) == "available"


# --- os-force_delete ----------------------------------------------------------------------------
def test_force_delete_skips_the_status_check(api: Api, cinder: RunningService) -> None:
    volume = file_volume(api)
    path = cinder.volumes_dir / f"volume-{volume['id']}"
    _action(api, volume["id"], {"os-reset_status": {"status": "maintenance"}})
    assert_fault(api.delete(f"/volumes/{volume['id']}"), 400, DELETE_REFUSED)
    resp = _action(api, volume["id"], {"os-force_delete": {}})
    assert resp.status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")
    assert not path.exists()


def test_force_delete_is_admin_only(member_api: Api) -> None:
    volume = mem_volume(member_api)
    assert_fault(_action(member_api, volume["id"], {"os-force_delete": {}}), 403)
    assert _status(member_api, volume["id"]) == "available"


def test_force_delete_still_refuses_volumes_with_snapshots(api: Api) -> None:
    volume = mem_volume(api)
    snapshot(api, volume["id"])
    assert_fault(_action(api, volume["id"], {"os-force_delete": {}}), 400)
    assert _status(api, volume["id"]) == "available"


# --- revert (3.40) -----------------------------------------------------------------------------
def test_revert_to_latest_snapshot_restores_its_data(api: Api, cinder: RunningService) -> None:
    volume = file_volume(api)
    path = cinder.volumes_dir / f"volume-{volume['id']}"
    write_at(path, 0, b"first")
    snapshot(api, volume["id"], name="s1")
    write_at(path, 0, b"second")
    latest = snapshot(api, volume["id"], name="s2")
    write_at(path, 0, b"third!")
    resp = _action(api, volume["id"], {"revert": {"snapshot_id": latest["id"]}}, version="3.40")
    assert resp.status_code == 202, resp.text
    assert api.wait_volume(volume["id"])["status"] == "available"
    assert api.wait_snapshot(latest["id"])["status"] == "available"
    assert read_at(path, 0, 6) == b"second"


def test_revert_memory_volume(api: Api) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"])
    resp = _action(api, volume["id"], {"revert": {"snapshot_id": snap["id"]}})
    assert resp.status_code == 202
    assert api.wait_volume(volume["id"])["status"] == "available"


def test_revert_to_older_snapshot_is_400(api: Api) -> None:
    volume = mem_volume(api)
    older = snapshot(api, volume["id"])
    snapshot(api, volume["id"])
    message = assert_fault(
        _action(api, volume["id"], {"revert": {"snapshot_id": older["id"]}}), 400
    )
    assert "not the latest one" in message
    assert _status(api, volume["id"]) == "available"


def test_revert_to_snapshot_of_another_volume_is_400(api: Api) -> None:
    volume = mem_volume(api)
    snapshot(api, volume["id"])
    other = mem_volume(api)
    foreign = snapshot(api, other["id"])
    assert_fault(_action(api, volume["id"], {"revert": {"snapshot_id": foreign["id"]}}), 400)


def test_revert_to_unknown_snapshot_is_404(api: Api) -> None:
    volume = mem_volume(api)
    resp = _action(api, volume["id"], {"revert": {"snapshot_id": UNKNOWN_ID}})
    assert_fault(resp, 404, f"Snapshot {UNKNOWN_ID} could not be found.")


def test_revert_with_malformed_snapshot_id_is_400(api: Api) -> None:
    volume = mem_volume(api)
    assert_fault(_action(api, volume["id"], {"revert": {"snapshot_id": "nope"}}), 400)
    assert_fault(_action(api, volume["id"], {"revert": {}}), 400)


def test_revert_needs_3_40(api: Api) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"])
    resp = _action(api, volume["id"], {"revert": {"snapshot_id": snap["id"]}}, version="3.39")
    assert_fault(resp, 404, "The resource could not be found.")
    assert _status(api, volume["id"]) == "available"


def test_revert_when_volume_not_available_is_409(api: Api) -> None:
    volume = mem_volume(api)
    snap = snapshot(api, volume["id"])
    _action(api, volume["id"], {"os-reset_status": {"status": "error"}})
    assert_fault(_action(api, volume["id"], {"revert": {"snapshot_id": snap["id"]}}), 409)
    assert _status(api, volume["id"]) == "error"
    assert api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"


def test_revert_after_extend_is_400(api: Api) -> None:
    volume = mem_volume(api, size=1)
    snap = snapshot(api, volume["id"])
    _action(api, volume["id"], {"os-extend": {"new_size": 2}})
    api.wait_volume(volume["id"])
    assert_fault(_action(api, volume["id"], {"revert": {"snapshot_id": snap["id"]}}), 400)
