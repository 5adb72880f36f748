"""The legacy attach actions on volumes (os-reserve ... os-set_bootable), and an attached
volume surviving a service restart.

Volumes live on the memory backend, whose stand-in export records which connector hosts
may reach each volume (`driver.exports`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cbhelpers import UNKNOWN_ID, assert_fault, mem_volume

from conftest import Api, RunningService, scratch_database, start_service

SERVER = "8f6a3b56-3a39-4c1c-9f6e-51f2b7a1d0c4"
BEGIN_DETACHING_REFUSED = (
    "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and "
    "attach_status must be 'attached' to detach."
)


def connector(host: str = "compute-1", **extra: Any) -> dict[str, Any]:
    return {
        "host": host,
        "initiator": f"iqn.1993-08.org.debian:01:{host}",
        "ip": "192.0.2.10",
        "platform": "x86_64",
        "os_type": "linux",
        "multipath": False,
        **extra,
    }


def allowed_hosts(cinder: RunningService, volume_id: str) -> set[str] | None:
    hosts = cinder.service.managers["testhost@mem"].driver.exports.get(f"volume-{volume_id}")
    return None if hosts is None else set(hosts)


def act(api: Api, volume_id: str, name: str, args: Any = None, **kw: Any) -> Any:
    return api.post(f"/volumes/{volume_id}/action", {name: {} if args is None else args}, **kw)


def volume(api: Api, volume_id: str) -> dict[str, Any]:
    resp = api.get(f"/volumes/{volume_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()["volume"]


def status(api: Api, volume_id: str) -> str:
    return volume(api, volume_id)["status"]


def attached(api: Api, volume_id: str, mode: str = "rw", **fields: Any) -> None:
    """Nova's legacy attach: reserve, initialize, attach."""
    assert act(api, volume_id, "os-reserve").status_code == 202
    resp = act(api, volume_id, "os-initialize_connection", {"connector": connector()})
    assert resp.status_code == 200, resp.text
    args = {"mountpoint": "/dev/vdb", "mode": mode, **fields}
    if "host_name" not in args:
        args.setdefault("instance_uuid", SERVER)
    resp = act(api, volume_id, "os-attach", args)
    assert resp.status_code == 202, resp.text


# --- reserve / unreserve -------------------------------------------------------------------
def test_reserve_and_unreserve(member_api: Api) -> None:
    vol = mem_volume(member_api)
    resp = act(member_api, vol["id"], "os-reserve")
    assert resp.status_code == 202, resp.text
    assert resp.content == b""
    assert status(member_api, vol["id"]) == "attaching"  # legacy reserve: attaching

    assert_fault(
        act(member_api, vol["id"], "os-reserve"),
        400,
        "Invalid volume: Volume status must be available to reserve, but the status is attaching.",
    )
    assert status(member_api, vol["id"]) == "attaching"

    resp = act(member_api, vol["id"], "os-unreserve")
    assert resp.status_code == 202, resp.text
    assert status(member_api, vol["id"]) == "available"
    # Unreserving what is not reserved is a silent no-op.
    assert act(member_api, vol["id"], "os-unreserve").status_code == 202
    assert status(member_api, vol["id"]) == "available"


def test_reserve_accepts_a_null_body(api: Api) -> None:
    vol = mem_volume(api)
    resp = api.post(f"/volumes/{vol['id']}/action", {"os-reserve": None})
    assert resp.status_code == 202, resp.text
    assert status(api, vol["id"]) == "attaching"


def test_reserve_refused_when_in_use_or_error(api: Api) -> None:
    vol = mem_volume(api)
    attached(api, vol["id"])
    assert_fault(
        act(api, vol["id"], "os-reserve"),
        400,
        "Invalid volume: Volume status must be available to reserve, but the status is in-use.",
    )
    assert status(api, vol["id"]) == "in-use"
    other = mem_volume(api)
    assert act(api, other["id"], "os-reset_status", {"status": "error"}).status_code == 202
    assert_fault(act(api, other["id"], "os-reserve"), 400)
    assert status(api, other["id"]) == "error"


def test_unreserve_with_an_attachment_goes_back_to_in_use(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    attached(api, vol["id"])
    # A multiattach volume may be reserved again while in use.
    with cinder.service.db.session() as session:
        session.execute(
            sa.text("UPDATE volumes SET multiattach = :t WHERE id = :id"),
            {"t": True, "id": vol["id"]},
        )
    assert act(api, vol["id"], "os-reserve").status_code == 202
    assert status(api, vol["id"]) == "attaching"
    assert act(api, vol["id"], "os-unreserve").status_code == 202
    assert status(api, vol["id"]) == "in-use"


# --- attach / detach -----------------------------------------------------------------------
def test_attach_and_detach(api: Api, member_api: Api) -> None:
    vol = mem_volume(member_api)
    assert act(member_api, vol["id"], "os-reserve").status_code == 202
    resp = act(
        member_api,
        vol["id"],
        "os-attach",
        {"mountpoint": "/dev/vdc", "instance_uuid": SERVER, "mode": "rw"},
    )
    assert resp.status_code == 202, resp.text
    assert resp.content == b""
    shown = volume(member_api, vol["id"])
    assert shown["status"] == "in-use"
    [entry] = shown["attachments"]
    assert entry["server_id"] == SERVER
    assert entry["device"] == "/dev/vdc"
    assert entry["volume_id"] == vol["id"] and entry["id"] == vol["id"]
    assert entry["host_name"] is None
    assert entry["attached_at"]
    assert shown["metadata"].get("attached_mode") == "rw"
    # The attachment also shows in the attachments API.
    [att] = member_api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"]
    assert att["id"] == entry["attachment_id"]
    assert att["status"] == "attached" and att["instance"] == SERVER

    # In use: cannot be deleted, reserved again or have its readonly flag changed.
    assert_fault(member_api.delete(f"/volumes/{vol['id']}"), 400)
    assert_fault(act(member_api, vol["id"], "os-reserve"), 400)

    resp = act(member_api, vol["id"], "os-detach", {"attachment_id": entry["attachment_id"]})
    assert resp.status_code == 202, resp.text
    shown = volume(member_api, vol["id"])
    assert shown["status"] == "available"
    assert shown["attachments"] == []
    assert "attached_mode" not in shown["metadata"]
    assert member_api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"] == []
    assert member_api.delete(f"/volumes/{vol['id']}").status_code == 202


def test_attach_to_a_host_shows_the_host_to_admins(api: Api) -> None:
    vol = mem_volume(api)
    resp = act(api, vol["id"], "os-attach", {"mountpoint": "/mnt/data", "host_name": "backup-1"})
    assert resp.status_code == 202, resp.text
    [entry] = volume(api, vol["id"])["attachments"]
    assert entry["server_id"] is None
    assert entry["host_name"] == "backup-1"
    assert entry["device"] == "/mnt/data"
    # A body-less os-detach detaches the only attachment.
    assert api.post(f"/volumes/{vol['id']}/action", {"os-detach": None}).status_code == 202
    assert status(api, vol["id"]) == "available"


@pytest.mark.parametrize(
    "args",
    [
        {"mountpoint": "/dev/vdb"},  # neither instance_uuid nor host_name
        {"instance_uuid": SERVER},  # no mountpoint
        {"mountpoint": "", "instance_uuid": SERVER},
        {"mountpoint": "/dev/vdb", "instance_uuid": "not-a-uuid"},
        {"mountpoint": "/dev/vdb", "instance_uuid": SERVER, "mode": "rx"},
        {"mountpoint": "/dev/vdb", "instance_uuid": SERVER, "bogus": 1},
    ],
)
def test_attach_bad_bodies_are_400(api: Api, args: dict[str, Any]) -> None:
    vol = mem_volume(api)
    assert_fault(act(api, vol["id"], "os-attach", args), 400)
    shown = volume(api, vol["id"])
    assert shown["status"] == "available"
    assert shown["attachments"] == []


def test_detach_without_an_attachment_is_400(api: Api) -> None:
    vol = mem_volume(api)
    assert_fault(act(api, vol["id"], "os-detach"), 400)
    assert_fault(act(api, vol["id"], "os-detach", {"attachment_id": UNKNOWN_ID}), 400)
    assert status(api, vol["id"]) == "available"


def test_detach_of_an_unknown_attachment_keeps_the_volume_attached(api: Api) -> None:
    vol = mem_volume(api)
    attached(api, vol["id"])
    assert_fault(act(api, vol["id"], "os-detach", {"attachment_id": UNKNOWN_ID}), 400)
    assert status(api, vol["id"]) == "in-use"
    assert len(volume(api, vol["id"])["attachments"]) == 1


def test_attach_rw_to_a_readonly_volume_is_400(api: Api) -> None:
    vol = mem_volume(api)
    assert act(api, vol["id"], "os-update_readonly_flag", {"readonly": True}).status_code == 202
    args = {"mountpoint": "/dev/vdb", "instance_uuid": SERVER}
    assert_fault(act(api, vol["id"], "os-attach", args), 400)  # mode defaults to rw
    assert_fault(act(api, vol["id"], "os-attach", {**args, "mode": "rw"}), 400)
    assert status(api, vol["id"]) == "available"
    resp = act(api, vol["id"], "os-attach", {**args, "mode": "ro"})
    assert resp.status_code == 202, resp.text
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    assert shown["metadata"]["attached_mode"] == "ro"
    assert shown["metadata"]["readonly"] == "True"


# --- begin / roll detaching --------------------------------------------------------------
def test_begin_and_roll_detaching(member_api: Api) -> None:
    vol = mem_volume(member_api)
    attached(member_api, vol["id"])
    resp = act(member_api, vol["id"], "os-begin_detaching")
    assert resp.status_code == 202, resp.text
    assert status(member_api, vol["id"]) == "detaching"
    assert_fault(act(member_api, vol["id"], "os-begin_detaching"), 400, BEGIN_DETACHING_REFUSED)

    resp = act(member_api, vol["id"], "os-roll_detaching")
    assert resp.status_code == 202, resp.text
    assert status(member_api, vol["id"]) == "in-use"
    # Rolling back what is not detaching is a silent no-op.
    assert act(member_api, vol["id"], "os-roll_detaching").status_code == 202
    assert status(member_api, vol["id"]) == "in-use"

    # The whole detach: begin, detach.
    assert act(member_api, vol["id"], "os-begin_detaching").status_code == 202
    assert act(member_api, vol["id"], "os-detach").status_code == 202
    assert status(member_api, vol["id"]) == "available"


@pytest.mark.parametrize("state", ["available", "attaching"])
def test_begin_detaching_needs_an_attached_volume(api: Api, state: str) -> None:
    vol = mem_volume(api)
    if state == "attaching":
        assert act(api, vol["id"], "os-reserve").status_code == 202
    assert_fault(act(api, vol["id"], "os-begin_detaching"), 400, BEGIN_DETACHING_REFUSED)
    assert status(api, vol["id"]) == state
    assert act(api, vol["id"], "os-roll_detaching").status_code == 202
    assert status(api, vol["id"]) == state


# --- initialize / terminate connection -----------------------------------------------------
def test_initialize_and_terminate_connection(member_api: Api, cinder: RunningService) -> None:
    vol = mem_volume(member_api)
    assert allowed_hosts(cinder, vol["id"]) is None
    resp = act(member_api, vol["id"], "os-initialize_connection", {"connector": connector("c-9")})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == ["connection_info"]
    info = body["connection_info"]
    assert info["driver_volume_type"] == "memory"
    data = info["data"]
    assert data["volume_id"] == vol["id"]
    assert data["name"] == f"volume-{vol['id']}"
    assert data["access_mode"] == "rw"
    for key in ("qos_specs", "encrypted", "cacheable", "discard"):
        assert key in data, key
    assert "attachment_id" not in info  # the legacy shape is nested, not flattened
    assert info["enforce_multipath"] is False  # the connector's flag, echoed by the API
    assert allowed_hosts(cinder, vol["id"]) == {"c-9"}
    # No status change: a connection is not an attachment.
    assert status(member_api, vol["id"]) == "available"

    resp = act(member_api, vol["id"], "os-terminate_connection", {"connector": connector("c-9")})
    assert resp.status_code == 202, resp.text
    assert resp.content == b""
    assert not allowed_hosts(cinder, vol["id"])
    assert status(member_api, vol["id"]) == "available"


def test_terminate_one_connector_keeps_the_others(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    for host in ("c-1", "c-2"):
        resp = act(api, vol["id"], "os-initialize_connection", {"connector": connector(host)})
        assert resp.status_code == 200, resp.text
    assert allowed_hosts(cinder, vol["id"]) == {"c-1", "c-2"}
    resp = act(api, vol["id"], "os-terminate_connection", {"connector": connector("c-1")})
    assert resp.status_code == 202, resp.text
    assert allowed_hosts(cinder, vol["id"]) == {"c-2"}


def test_initialize_connection_accepts_a_json_string_connector(
    api: Api, cinder: RunningService
) -> None:
    vol = mem_volume(api)
    resp = act(api, vol["id"], "os-initialize_connection", {"connector": '{"host": "string-host"}'})
    assert resp.status_code == 200, resp.text
    assert resp.json()["connection_info"]["data"]["volume_id"] == vol["id"]
    assert "string-host" in allowed_hosts(cinder, vol["id"])


def test_initialize_connection_readonly_volume_is_ro(api: Api) -> None:
    vol = mem_volume(api)
    assert act(api, vol["id"], "os-update_readonly_flag", {"readonly": True}).status_code == 202
    resp = act(api, vol["id"], "os-initialize_connection", {"connector": connector()})
    assert resp.status_code == 200, resp.text
    assert resp.json()["connection_info"]["data"]["access_mode"] == "ro"


@pytest.mark.parametrize(
    "args",
    [
        {"connector": {"ip": "192.0.2.1"}},  # the backend needs host or initiator
        {"connector": {}},
        {"connector": "not json"},
        {"connector": "[1, 2]"},
        {"connector": 5},
        {},
    ],
)
def test_initialize_connection_bad_connector_is_400(
    api: Api, cinder: RunningService, args: dict[str, Any]
) -> None:
    vol = mem_volume(api)
    assert_fault(act(api, vol["id"], "os-initialize_connection", args), 400)
    assert allowed_hosts(cinder, vol["id"]) is None
    assert status(api, vol["id"]) == "available"


@pytest.mark.parametrize("enforce", [True, "True", "true"])
def test_enforced_multipath_on_a_single_path_backend_is_400(
    api: Api, cinder: RunningService, enforce: Any
) -> None:
    vol = mem_volume(api)
    conn = connector(multipath=True, enforce_multipath=enforce)
    message = assert_fault(
        act(api, vol["id"], "os-initialize_connection", {"connector": conn}), 400
    )
    assert "enforce_multipath" in message and "single path" in message, message
    assert allowed_hosts(cinder, vol["id"]) is None
    assert status(api, vol["id"]) == "available"


@pytest.mark.parametrize("extra", [{"multipath": True}, {"enforce_multipath": False}, {}])
def test_multipath_without_enforcing_it_connects(
    api: Api, cinder: RunningService, extra: dict[str, Any]
) -> None:
    vol = mem_volume(api)
    conn = {**connector(), **extra}
    resp = act(api, vol["id"], "os-initialize_connection", {"connector": conn})
    assert resp.status_code == 200, resp.text
    assert resp.json()["connection_info"]["enforce_multipath"] is False
    assert allowed_hosts(cinder, vol["id"]) == {"compute-1"}


def test_nova_legacy_attach_and_detach(api: Api, cinder: RunningService) -> None:
    """reserve, initialize_connection, attach ... begin_detaching, terminate, detach."""
    vol = mem_volume(api)
    attached(api, vol["id"])
    assert status(api, vol["id"]) == "in-use"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-1"}
    assert act(api, vol["id"], "os-begin_detaching").status_code == 202
    resp = act(api, vol["id"], "os-terminate_connection", {"connector": connector()})
    assert resp.status_code == 202, resp.text
    assert "compute-1" not in (allowed_hosts(cinder, vol["id"]) or set())
    assert act(api, vol["id"], "os-detach").status_code == 202
    assert status(api, vol["id"]) == "available"
    assert volume(api, vol["id"])["attachments"] == []


# --- readonly flag / bootable -------------------------------------------------------------
def test_update_readonly_flag(member_api: Api) -> None:
    vol = mem_volume(member_api)
    resp = act(member_api, vol["id"], "os-update_readonly_flag", {"readonly": True})
    assert resp.status_code == 202, resp.text
    assert resp.content == b""
    assert volume(member_api, vol["id"])["metadata"] == {"readonly": "True"}
    resp = act(member_api, vol["id"], "os-update_readonly_flag", {"readonly": "false"})
    assert resp.status_code == 202, resp.text
    assert volume(member_api, vol["id"])["metadata"] == {"readonly": "False"}


@pytest.mark.parametrize("value", ["maybe", None, 3, {}])
def test_update_readonly_flag_bad_value_is_400(api: Api, value: Any) -> None:
    vol = mem_volume(api)
    assert_fault(act(api, vol["id"], "os-update_readonly_flag", {"readonly": value}), 400)
    assert_fault(act(api, vol["id"], "os-update_readonly_flag", {}), 400)
    assert "readonly" not in volume(api, vol["id"])["metadata"]


@pytest.mark.parametrize("state", ["attaching", "in-use"])
def test_update_readonly_flag_needs_an_available_volume(api: Api, state: str) -> None:
    vol = mem_volume(api)
    if state == "in-use":
        attached(api, vol["id"])
    else:
        assert act(api, vol["id"], "os-reserve").status_code == 202
    assert_fault(act(api, vol["id"], "os-update_readonly_flag", {"readonly": True}), 400)
    assert "readonly" not in volume(api, vol["id"])["metadata"]
    assert status(api, vol["id"]) == state


def test_set_bootable(member_api: Api) -> None:
    vol = mem_volume(member_api)
    assert vol["bootable"] == "false"
    resp = act(member_api, vol["id"], "os-set_bootable", {"bootable": True})
    assert resp.status_code == 200, resp.text
    assert resp.content == b""
    assert volume(member_api, vol["id"])["bootable"] == "true"
    resp = act(member_api, vol["id"], "os-set_bootable", {"bootable": "false"})
    assert resp.status_code == 200, resp.text
    assert volume(member_api, vol["id"])["bootable"] == "false"
    listed = member_api.get("/volumes/detail?bootable=false").json()["volumes"]
    assert vol["id"] in {v["id"] for v in listed}


def test_set_bootable_on_an_in_use_volume(api: Api) -> None:
    vol = mem_volume(api)
    attached(api, vol["id"])
    assert act(api, vol["id"], "os-set_bootable", {"bootable": True}).status_code == 200
    shown = volume(api, vol["id"])
    assert shown["bootable"] == "true" and shown["status"] == "in-use"


@pytest.mark.parametrize("args", [{}, {"bootable": "perhaps"}, {"bootable": None}])
def test_set_bootable_bad_value_is_400(api: Api, args: dict[str, Any]) -> None:
    vol = mem_volume(api)
    assert_fault(act(api, vol["id"], "os-set_bootable", args), 400)
    assert volume(api, vol["id"])["bootable"] == "false"


def test_set_bootable_in_maintenance_is_400(api: Api) -> None:
    vol = mem_volume(api)
    resp = act(api, vol["id"], "os-reset_status", {"status": "maintenance"})
    assert resp.status_code == 202
    assert_fault(act(api, vol["id"], "os-set_bootable", {"bootable": True}), 400)
    assert volume(api, vol["id"])["bootable"] == "false"


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("os-attach", {"mountpoint": "/dev/vdb", "instance_uuid": SERVER}),
        ("os-detach", {}),
        ("os-initialize_connection", {"connector": {"host": "c-1"}}),
    ],
)
def test_maintenance_refuses_attach_actions(
    api: Api, cinder: RunningService, name: str, args: dict[str, Any]
) -> None:
    vol = mem_volume(api)
    assert act(api, vol["id"], "os-reset_status", {"status": "maintenance"}).status_code == 202
    assert_fault(act(api, vol["id"], name, args), 400)
    shown = volume(api, vol["id"])
    assert shown["status"] == "maintenance"
    assert shown["attachments"] == []
    assert allowed_hosts(cinder, vol["id"]) is None


# --- scope ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("os-reserve", {}),
        ("os-unreserve", {}),
        ("os-begin_detaching", {}),
        ("os-roll_detaching", {}),
        ("os-attach", {"mountpoint": "/dev/vdb", "instance_uuid": SERVER}),
        ("os-detach", {}),
        ("os-initialize_connection", {"connector": {"host": "c-1"}}),
        ("os-terminate_connection", {"connector": {"host": "c-1"}}),
        ("os-update_readonly_flag", {"readonly": True}),
        ("os-set_bootable", {"bootable": True}),
    ],
)
def test_actions_on_other_projects_volumes_are_404(
    api: Api, cinder: RunningService, name: str, args: dict[str, Any]
) -> None:
    vol = mem_volume(api)
    stranger = Api(cinder.url, uuid.uuid4().hex, user="demo")
    try:
        assert_fault(act(stranger, vol["id"], name, args), 404)
        assert_fault(act(stranger, UNKNOWN_ID, name, args), 404)
    finally:
        stranger.client.close()
    shown = volume(api, vol["id"])
    assert shown["status"] == "available"
    assert shown["metadata"] == {}
    assert shown["bootable"] == "false"
    assert allowed_hosts(cinder, vol["id"]) is None


# --- restart -------------------------------------------------------------------------------
@pytest.fixture
def own_database_url(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, on the same engine as the rest of the run."""
    with scratch_database(tmp_path, "cb_attach") as url:
        yield url


def test_in_use_volume_survives_a_restart(tmp_path: Path, own_database_url: str) -> None:
    directory = tmp_path / "svc"
    directory.mkdir()
    project = uuid.uuid4().hex
    first = start_service(directory, own_database_url)
    try:
        api = Api(first.url, project)
        nova_vol = mem_volume(api)
        legacy_vol = mem_volume(api)
        free_vol = mem_volume(api)
        resp = api.post(
            "/attachments",
            {"attachment": {"volume_uuid": nova_vol["id"], "instance_uuid": SERVER}},
        )
        assert resp.status_code == 200, resp.text
        att = resp.json()["attachment"]
        resp = api.put(f"/attachments/{att['id']}", {"attachment": {"connector": connector()}})
        assert resp.status_code == 200, resp.text
        assert api.post(f"/attachments/{att['id']}/action", {"os-complete": {}}).status_code == 204
        attached(api, legacy_vol["id"])
        assert allowed_hosts(first, nova_vol["id"]) == {"compute-1"}
        assert allowed_hosts(first, legacy_vol["id"]) == {"compute-1"}
        api.client.close()
    finally:
        first.stop()

    second = start_service(directory, own_database_url)
    try:
        api = Api(second.url, project)
        for vol in (nova_vol, legacy_vol):
            shown = volume(api, vol["id"])
            assert shown["status"] == "in-use", shown
            assert len(shown["attachments"]) == 1
            # The memory backend starts empty: the export exists again after start-up.
            assert allowed_hosts(second, vol["id"]) is not None, vol["id"]
        # The attachment's recorded connector is let in again (a restarted target
        # daemon forgot its ACL); the legacy attach recorded no connector.
        assert allowed_hosts(second, nova_vol["id"]) == {"compute-1"}
        assert allowed_hosts(second, legacy_vol["id"]) == set()
        assert allowed_hosts(second, free_vol["id"]) is None
        assert status(api, free_vol["id"]) == "available"
        shown = api.get(f"/attachments/{att['id']}").json()["attachment"]
        assert shown["status"] == "attached"
        assert shown["connection_info"]["driver_volume_type"] == "memory"
        # Detach still works after the restart.
        resp = api.delete(f"/attachments/{att['id']}")
        assert resp.status_code == 200, resp.text
        assert status(api, nova_vol["id"]) == "available"
        assert allowed_hosts(second, nova_vol["id"]) is None
        api.client.close()
    finally:
        second.stop()


# --- backend failures ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "operation", "message"),
    [
        (
            "os-initialize_connection",
            "initialize_connection",
            "Unable to fetch connection information from backend.",
        ),
        (
            "os-terminate_connection",
            "terminate_connection",
            "Unable to terminate volume connection from backend.",
        ),
    ],
)
def test_backend_failures_are_500(
    api: Api, cinder: RunningService, name: str, operation: str, message: str
) -> None:
    vol = mem_volume(api)
    driver = cinder.service.managers["testhost@mem"].driver
    driver.fail_on.add(operation)
    try:
        resp = act(api, vol["id"], name, {"connector": connector()})
    finally:
        driver.fail_on.discard(operation)
    assert_fault(resp, 500, message)
    assert status(api, vol["id"]) == "available"


def test_concurrent_legacy_reservations_admit_one(api: Api) -> None:
    vol = mem_volume(api)

    def one(_: int) -> int:
        client = Api(api.base, api.project)
        try:
            return act(client, vol["id"], "os-reserve").status_code
        finally:
            client.client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(one, range(8)))
    assert sorted(codes) == [202] + [400] * 7, codes
    assert status(api, vol["id"]) == "attaching"


def test_detach_is_done_even_if_the_export_cannot_be_removed(
    api: Api, cinder: RunningService
) -> None:
    vol = mem_volume(api)
    attached(api, vol["id"])
    driver = cinder.service.managers["testhost@mem"].driver
    driver.fail_on.add("remove_export")
    try:
        resp = act(api, vol["id"], "os-detach")
    finally:
        driver.fail_on.discard("remove_export")
    assert resp.status_code == 202, resp.text
    shown = volume(api, vol["id"])
    assert shown["status"] == "available"
    assert shown["attachments"] == []
    # The next attach/detach cycle cleans up.
    attached(api, vol["id"])
    assert act(api, vol["id"], "os-detach").status_code == 202
    assert allowed_hosts(cinder, vol["id"]) is None


def test_attach_to_an_in_use_volume_is_400(api: Api) -> None:
    vol = mem_volume(api)
    attached(api, vol["id"])
    args = {"mountpoint": "/dev/vdc", "instance_uuid": str(uuid.uuid4())}
    assert_fault(act(api, vol["id"], "os-attach", args), 400)
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    assert [a["server_id"] for a in shown["attachments"]] == [SERVER]


def test_legacy_multiattach(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    with cinder.service.db.session() as session:
        session.execute(
            sa.text("UPDATE volumes SET multiattach = :t WHERE id = :id"),
            {"t": True, "id": vol["id"]},
        )
    other = str(uuid.uuid4())
    attached(api, vol["id"])
    assert act(api, vol["id"], "os-reserve").status_code == 202
    resp = act(api, vol["id"], "os-initialize_connection", {"connector": connector("compute-2")})
    assert resp.status_code == 200, resp.text
    resp = act(api, vol["id"], "os-attach", {"mountpoint": "/dev/vdb", "instance_uuid": other})
    assert resp.status_code == 202, resp.text
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    by_server = {a["server_id"]: a["attachment_id"] for a in shown["attachments"]}
    assert set(by_server) == {SERVER, other}
    # Which one? With two attachments os-detach must be told.
    assert_fault(act(api, vol["id"], "os-detach"), 400)
    assert len(volume(api, vol["id"])["attachments"]) == 2

    resp = act(api, vol["id"], "os-terminate_connection", {"connector": connector("compute-2")})
    assert resp.status_code == 202
    assert allowed_hosts(cinder, vol["id"]) == {"compute-1"}  # the first host keeps access
    assert act(api, vol["id"], "os-detach", {"attachment_id": by_server[other]}).status_code == 202
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    assert [a["server_id"] for a in shown["attachments"]] == [SERVER]
    assert allowed_hosts(cinder, vol["id"]) == {"compute-1"}
    assert act(api, vol["id"], "os-detach").status_code == 202
    assert status(api, vol["id"]) == "available"
    assert allowed_hosts(cinder, vol["id"]) is None
