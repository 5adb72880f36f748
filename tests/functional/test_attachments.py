"""The attachments API (3.27+, os-complete 3.44, mode 3.54) as Nova and users see it.

Volumes live on the memory backend, whose stand-in export records which connector
hosts may reach each volume (`driver.exports`), so every test can check the data
path as well as the statuses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cbhelpers import UNKNOWN_ID, assert_fault, backend_type, mem_volume

from conftest import Api, RunningService

DETAIL_KEYS = {
    "id",
    "status",
    "instance",
    "volume_id",
    "attached_at",
    "detached_at",
    "attach_mode",
    "connection_info",
}
SUMMARY_KEYS = {"id", "status", "instance", "volume_id"}
VOLUME_ATTACHMENT_KEYS = {
    "id",
    "attachment_id",
    "volume_id",
    "server_id",
    "host_name",
    "device",
    "attached_at",
}
NOT_FOUND = "The resource could not be found."


def connector(host: str = "compute-1", **extra: Any) -> dict[str, Any]:
    """What os-brick reports for a compute host."""
    return {
        "host": host,
        "initiator": f"iqn.1993-08.org.debian:01:{host}",
        "ip": "192.0.2.10",
        "platform": "x86_64",
        "os_type": "linux",
        "multipath": False,
        **extra,
    }


def exports(cinder: RunningService) -> dict[str, set[str]]:
    return cinder.service.managers["testhost@mem"].driver.exports


def allowed_hosts(cinder: RunningService, volume_id: str) -> set[str] | None:
    """The connector hosts the memory backend lets reach this volume; None if not exported."""
    hosts = exports(cinder).get(f"volume-{volume_id}")
    return None if hosts is None else set(hosts)


def volume(api: Api, volume_id: str) -> dict[str, Any]:
    resp = api.get(f"/volumes/{volume_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()["volume"]


def create(api: Api, volume_id: str, instance: str | None = None, **fields: Any) -> Any:
    version = fields.pop("_v", None)
    body: dict[str, Any] = {"volume_uuid": volume_id, **fields}
    if instance is not None:
        body["instance_uuid"] = instance
    return api.post("/attachments", {"attachment": body}, version=version)


def reserve(api: Api, volume_id: str, instance: str | None = None, **fields: Any) -> dict:
    resp = create(api, volume_id, instance or str(uuid.uuid4()), **fields)
    assert resp.status_code == 200, resp.text
    return resp.json()["attachment"]


def update(api: Api, attachment_id: str, conn: dict[str, Any]) -> Any:
    return api.put(f"/attachments/{attachment_id}", {"attachment": {"connector": conn}})


def complete(api: Api, attachment_id: str, version: str | None = None) -> Any:
    return api.post(f"/attachments/{attachment_id}/action", {"os-complete": {}}, version=version)


def attach(api: Api, volume_id: str, host: str = "compute-1", **fields: Any) -> dict:
    """Nova's whole attach: reserve, connect, complete. Returns the attachment detail."""
    att = reserve(api, volume_id, **fields)
    resp = update(api, att["id"], connector(host))
    assert resp.status_code == 200, resp.text
    assert complete(api, att["id"]).status_code == 204
    return api.get(f"/attachments/{att['id']}").json()["attachment"]


def multiattach_volume(api: Api, cinder: RunningService) -> dict[str, Any]:
    """A volume of a multiattach type (multiattach="<is> True") on the memory backend."""
    mem = backend_type(api, "mem")
    resp = api.post(
        "/types",
        {
            "volume_type": {
                "name": f"cbt-multi-{uuid.uuid4().hex[:8]}",
                "extra_specs": {**mem["extra_specs"], "multiattach": "<is> True"},
            }
        },
    )
    assert resp.status_code == 200, resp.text
    vol = api.create_volume(volume_type=resp.json()["volume_type"]["name"])
    assert vol["status"] == "available", vol
    assert vol["multiattach"] is True
    return vol


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts)


# --- Nova's sequence ------------------------------------------------------------------------
def test_nova_attach_and_detach(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    server = str(uuid.uuid4())
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=5)

    resp = create(api, vol["id"], server, _v="3.44")
    assert resp.status_code == 200, resp.text
    att = resp.json()["attachment"]
    assert set(att) == DETAIL_KEYS
    assert att["status"] == "reserved"
    assert att["instance"] == server
    assert att["volume_id"] == vol["id"]
    assert att["connection_info"] == {}
    assert att["attached_at"] == "" and att["detached_at"] == ""
    shown = volume(api, vol["id"])
    assert shown["status"] == "reserved"
    assert shown["attachments"] == []  # only attached attachments are listed
    assert allowed_hosts(cinder, vol["id"]) is None  # nothing exported before a connector

    assert att["attach_mode"] == "null"  # no mode asked for: decided by the connector

    resp = update(api, att["id"], connector("compute-7", mountpoint="/dev/vdb"))
    assert resp.status_code == 200, resp.text
    att = resp.json()["attachment"]
    assert set(att) == DETAIL_KEYS
    assert att["status"] == "attaching"
    assert att["attach_mode"] == "rw"
    info = att["connection_info"]
    # Flattened: the driver's data keys at the top level, with the type and attachment id.
    assert info["driver_volume_type"] == "memory"
    assert info["attachment_id"] == att["id"]
    assert info["volume_id"] == vol["id"]
    assert info["name"] == f"volume-{vol['id']}"
    assert info["access_mode"] == "rw"
    assert "data" not in info
    assert volume(api, vol["id"])["status"] == "attaching"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-7"}

    resp = complete(api, att["id"], version="3.44")
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    assert api.get(f"/attachments/{att['id']}").json()["attachment"]["status"] == "attached"
    [entry] = shown["attachments"]
    assert set(entry) == VOLUME_ATTACHMENT_KEYS
    assert entry["id"] == vol["id"]
    assert entry["attachment_id"] == att["id"]
    assert entry["volume_id"] == vol["id"]
    assert entry["server_id"] == server
    assert entry["host_name"] == "compute-7"
    assert entry["device"] == "/dev/vdb"
    assert _parse(entry["attached_at"]) >= before
    detail = api.get(f"/attachments/{att['id']}").json()["attachment"]
    assert detail["attached_at"] != "" and _parse(detail["attached_at"]) >= before
    # The same attachment appears in the detail list of volumes, too.
    listed = api.get("/volumes/detail").json()["volumes"]
    assert [v["attachments"] for v in listed if v["id"] == vol["id"]] == [[entry]]
    # An in-use volume cannot be deleted.
    assert_fault(api.delete(f"/volumes/{vol['id']}"), 400)

    resp = api.delete(f"/attachments/{att['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"attachments": []}
    shown = volume(api, vol["id"])
    assert shown["status"] == "available"
    assert shown["attachments"] == []
    assert allowed_hosts(cinder, vol["id"]) is None
    assert_fault(api.get(f"/attachments/{att['id']}"), 404)
    # Free again: it can be deleted now.
    assert api.delete(f"/volumes/{vol['id']}").status_code == 202
    api.wait_gone(f"/volumes/{vol['id']}")


def test_volume_view_hides_host_name_from_members(
    api: Api, member_api: Api, cinder: RunningService
) -> None:
    vol = mem_volume(member_api)
    att = attach(member_api, vol["id"], host="compute-3")
    [mine] = volume(member_api, vol["id"])["attachments"]
    assert mine["attachment_id"] == att["id"]
    assert mine["host_name"] is None
    [admins] = volume(api, vol["id"])["attachments"]
    assert admins["host_name"] == "compute-3"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-3"}


def test_create_with_connector_connects_at_once(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    server = str(uuid.uuid4())
    resp = create(api, vol["id"], server, connector=connector("compute-2"))
    assert resp.status_code == 200, resp.text
    att = resp.json()["attachment"]
    assert att["status"] == "attaching"
    assert att["instance"] == server
    info = att["connection_info"]
    assert info["driver_volume_type"] == "memory"
    assert info["attachment_id"] == att["id"]
    assert info["volume_id"] == vol["id"]
    assert volume(api, vol["id"])["status"] == "attaching"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-2"}
    assert complete(api, att["id"]).status_code == 204
    assert volume(api, vol["id"])["status"] == "in-use"


def test_create_without_instance(api: Api) -> None:
    """A host-only attachment (no server) is allowed and shows instance null."""
    vol = mem_volume(api)
    resp = create(api, vol["id"], connector=connector("backup-host"))
    assert resp.status_code == 200, resp.text
    att = resp.json()["attachment"]
    assert att["instance"] is None
    assert complete(api, att["id"]).status_code == 204
    [entry] = volume(api, vol["id"])["attachments"]
    assert entry["server_id"] is None
    assert entry["host_name"] == "backup-host"


def test_reconnect_the_same_attachment_with_a_new_connector(
    api: Api, cinder: RunningService
) -> None:
    """Updating an attachment again (same server, new host) is not a duplicate."""
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    assert update(api, att["id"], connector("compute-1")).status_code == 200
    resp = update(api, att["id"], connector("compute-1", ip="192.0.2.99"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["attachment"]["status"] == "attaching"
    assert "compute-1" in allowed_hosts(cinder, vol["id"])


def test_delete_a_reserved_attachment(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    resp = api.delete(f"/attachments/{att['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"attachments": []}
    assert volume(api, vol["id"])["status"] == "available"
    assert allowed_hosts(cinder, vol["id"]) is None


def test_delete_an_attaching_attachment_takes_the_export_down(
    api: Api, cinder: RunningService
) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    assert update(api, att["id"], connector("compute-4")).status_code == 200
    assert allowed_hosts(cinder, vol["id"]) == {"compute-4"}
    assert api.delete(f"/attachments/{att['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == "available"
    assert allowed_hosts(cinder, vol["id"]) is None


# --- microversions -------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["3.0", "3.26"])
def test_below_3_27_every_route_is_404(api: Api, version: str) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    calls = [
        api.post("/attachments", {"attachment": {"volume_uuid": vol["id"]}}, version=version),
        api.get("/attachments", version=version),
        api.get("/attachments/detail", version=version),
        api.get(f"/attachments/{att['id']}", version=version),
        api.put(
            f"/attachments/{att['id']}",
            {"attachment": {"connector": connector()}},
            version=version,
        ),
        api.delete(f"/attachments/{att['id']}", version=version),
        complete(api, att["id"], version=version),
    ]
    for resp in calls:
        assert_fault(resp, 404, NOT_FOUND)
    # None of them did anything.
    assert volume(api, vol["id"])["status"] == "reserved"
    [only] = api.get("/attachments").json()["attachments"]
    assert only["id"] == att["id"] and only["status"] == "reserved"


@pytest.mark.parametrize("version", ["3.27", "3.43"])
def test_complete_below_3_44_is_404_and_changes_nothing(api: Api, version: str) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    assert update(api, att["id"], connector()).status_code == 200
    assert_fault(complete(api, att["id"], version=version), 404, NOT_FOUND)
    assert volume(api, vol["id"])["status"] == "attaching"
    shown = api.get(f"/attachments/{att['id']}", version=version).json()["attachment"]
    assert shown["status"] == "attaching"


def test_create_update_delete_work_at_3_27(api: Api) -> None:
    vol = mem_volume(api)
    resp = create(api, vol["id"], str(uuid.uuid4()), _v="3.27")
    assert resp.status_code == 200, resp.text
    att = resp.json()["attachment"]
    resp = api.put(
        f"/attachments/{att['id']}", {"attachment": {"connector": connector()}}, version="3.27"
    )
    assert resp.status_code == 200, resp.text
    resp = api.delete(f"/attachments/{att['id']}", version="3.27")
    assert resp.status_code == 200, resp.text
    assert volume(api, vol["id"])["status"] == "available"


def test_unknown_attachment_action_is_400(api: Api) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    resp = api.post(f"/attachments/{att['id']}/action", {"os-nope": {}})
    assert_fault(resp, 400)
    assert volume(api, vol["id"])["status"] == "reserved"


# --- mode (3.54) and readonly -------------------------------------------------------------
def test_mode_ro_at_3_54(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    resp = create(api, vol["id"], str(uuid.uuid4()), mode="ro", _v="3.54")
    assert resp.status_code == 200, resp.text
    att = resp.json()["attachment"]
    assert att["attach_mode"] == "ro"
    resp = update(api, att["id"], connector())
    assert resp.status_code == 200, resp.text
    assert resp.json()["attachment"]["attach_mode"] == "ro"
    assert resp.json()["attachment"]["connection_info"]["access_mode"] == "ro"
    assert complete(api, att["id"]).status_code == 204
    assert api.get(f"/attachments/{att['id']}").json()["attachment"]["attach_mode"] == "ro"


def test_mode_rw_at_3_54(api: Api) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"], mode="rw", connector=connector())
    assert att["attach_mode"] == "rw"
    assert att["connection_info"]["access_mode"] == "rw"


def test_connector_mode_decides_when_no_mode_was_asked(api: Api) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    assert att["attach_mode"] == "null"
    resp = update(api, att["id"], connector(mode="ro"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["attachment"]["attach_mode"] == "ro"
    assert resp.json()["attachment"]["connection_info"]["access_mode"] == "ro"


def test_attachment_mode_wins_over_the_connector_mode(api: Api) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"], mode="rw")
    resp = update(api, att["id"], connector(mode="ro"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["attachment"]["attach_mode"] == "rw"
    assert resp.json()["attachment"]["connection_info"]["access_mode"] == "rw"


def test_mode_below_3_54_is_refused(api: Api) -> None:
    vol = mem_volume(api)
    resp = create(api, vol["id"], str(uuid.uuid4()), mode="ro", _v="3.53")
    assert_fault(resp, 400)
    assert volume(api, vol["id"])["status"] == "available"
    assert api.get("/attachments").json()["attachments"] == []


def test_bad_mode_is_400(api: Api) -> None:
    vol = mem_volume(api)
    assert_fault(create(api, vol["id"], str(uuid.uuid4()), mode="rwx"), 400)
    assert volume(api, vol["id"])["status"] == "available"


def test_readonly_flag_forces_ro(api: Api) -> None:
    vol = mem_volume(api)
    resp = api.post(f"/volumes/{vol['id']}/action", {"os-update_readonly_flag": {"readonly": True}})
    assert resp.status_code == 202, resp.text
    att = reserve(api, vol["id"], mode="rw", connector=connector())
    assert att["attach_mode"] == "ro"
    assert att["connection_info"]["access_mode"] == "ro"
    other = mem_volume(api)
    att = reserve(api, other["id"], connector=connector())
    assert att["attach_mode"] == "rw"
    assert att["connection_info"]["access_mode"] == "rw"


# --- views, lists and filters --------------------------------------------------------------
def test_show_list_and_detail_views(api: Api) -> None:
    vol = mem_volume(api)
    server = str(uuid.uuid4())
    att = reserve(api, vol["id"], server)
    shown = api.get(f"/attachments/{att['id']}")
    assert shown.status_code == 200
    assert shown.json() == {"attachment": att}
    summary = api.get("/attachments")
    assert summary.status_code == 200
    assert summary.json() == {
        "attachments": [
            {"id": att["id"], "status": "reserved", "instance": server, "volume_id": vol["id"]}
        ]
    }
    detail = api.get("/attachments/detail")
    assert detail.status_code == 200
    [entry] = detail.json()["attachments"]
    assert set(entry) == DETAIL_KEYS
    assert entry == att
    assert entry["connection_info"] == {}
    assert entry["attached_at"] == "" and entry["detached_at"] == ""


def test_list_filters(api: Api) -> None:
    first, second = mem_volume(api), mem_volume(api)
    server_a, server_b = str(uuid.uuid4()), str(uuid.uuid4())
    a = attach(api, first["id"], instance=server_a)
    b = reserve(api, second["id"], server_b)

    def ids(query: str, path: str = "/attachments") -> set[str]:
        resp = api.get(f"{path}{query}")
        assert resp.status_code == 200, resp.text
        return {x["id"] for x in resp.json()["attachments"]}

    assert ids("") == {a["id"], b["id"]}
    assert ids("", "/attachments/detail") == {a["id"], b["id"]}
    assert ids(f"?volume_id={first['id']}") == {a["id"]}
    assert ids(f"?volume_id={second['id']}", "/attachments/detail") == {b["id"]}
    assert ids(f"?instance_id={server_b}") == {b["id"]}
    assert ids("?status=attached") == {a["id"]}
    assert ids("?status=reserved") == {b["id"]}
    assert ids("?attach_status=reserved") == {b["id"]}
    assert ids(f"?volume_id={first['id']}&status=reserved") == set()
    assert ids(f"?volume_id={UNKNOWN_ID}") == set()


def test_other_projects_cannot_see_attachments(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    other = Api(cinder.url, uuid.uuid4().hex, user="demo")
    try:
        assert_fault(other.get(f"/attachments/{att['id']}"), 404)
        assert other.get("/attachments").json()["attachments"] == []
        assert other.get("/attachments/detail").json()["attachments"] == []
        assert other.get("/attachments?all_tenants=1").json()["attachments"] == []
        assert_fault(update(other, att["id"], connector()), 404)
        assert_fault(complete(other, att["id"]), 404)
        assert_fault(other.delete(f"/attachments/{att['id']}"), 404)
        # Nor attach someone else's volume.
        assert_fault(create(other, vol["id"], str(uuid.uuid4())), 404)
    finally:
        other.client.close()
    # Untouched.
    assert api.get(f"/attachments/{att['id']}").json()["attachment"]["status"] == "reserved"
    assert volume(api, vol["id"])["status"] == "reserved"


def test_admin_all_tenants(api: Api, member_api: Api, cinder: RunningService) -> None:
    vol = mem_volume(member_api)
    att = reserve(member_api, vol["id"])
    admin = Api(cinder.url, uuid.uuid4().hex)
    try:
        assert att["id"] not in {a["id"] for a in admin.get("/attachments").json()["attachments"]}
        every = admin.get("/attachments?all_tenants=1").json()["attachments"]
        assert att["id"] in {a["id"] for a in every}
        every = admin.get(f"/attachments/detail?all_tenants=true&volume_id={vol['id']}")
        assert [a["id"] for a in every.json()["attachments"]] == [att["id"]]
    finally:
        admin.client.close()


def test_unknown_attachment_is_404(api: Api) -> None:
    assert_fault(api.get(f"/attachments/{UNKNOWN_ID}"), 404)
    assert_fault(update(api, UNKNOWN_ID, connector()), 404)
    assert_fault(complete(api, UNKNOWN_ID), 404)
    assert_fault(api.delete(f"/attachments/{UNKNOWN_ID}"), 404)


def test_unknown_volume_is_404(api: Api) -> None:
    assert_fault(create(api, UNKNOWN_ID, str(uuid.uuid4())), 404)


# --- refusals -------------------------------------------------------------------------------
def test_attach_to_an_error_volume_is_400(api: Api) -> None:
    vol = mem_volume(api)
    resp = api.post(f"/volumes/{vol['id']}/action", {"os-reset_status": {"status": "error"}})
    assert resp.status_code == 202
    assert_fault(create(api, vol["id"], str(uuid.uuid4())), 400)
    assert volume(api, vol["id"])["status"] == "error"
    assert api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"] == []


def test_update_on_an_error_volume_is_409(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    resp = api.post(f"/volumes/{vol['id']}/action", {"os-reset_status": {"status": "error"}})
    assert resp.status_code == 202
    assert_fault(update(api, att["id"], connector()), 409)
    assert api.get(f"/attachments/{att['id']}").json()["attachment"]["status"] == "reserved"
    assert allowed_hosts(cinder, vol["id"]) is None


@pytest.mark.parametrize("state", ["reserved", "attaching", "in-use"])
def test_second_attachment_to_a_busy_volume_is_400(api: Api, state: str) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    if state != "reserved":
        assert update(api, att["id"], connector()).status_code == 200
    if state == "in-use":
        assert complete(api, att["id"]).status_code == 204
    assert volume(api, vol["id"])["status"] == state
    resp = create(api, vol["id"], str(uuid.uuid4()))
    assert_fault(
        resp,
        400,
        f"Invalid volume: Volume {vol['id']} status must be available or downloading to "
        f"reserve, but the current status is {state}.",
    )
    assert [
        a["id"] for a in api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"]
    ] == [att["id"]]
    assert volume(api, vol["id"])["status"] == state


@pytest.mark.parametrize("state", ["reserved", "in-use"])
def test_same_server_may_attach_again(api: Api, state: str) -> None:
    """Nova retrying for the same server gets a second attachment, not a refusal."""
    vol = mem_volume(api)
    server = str(uuid.uuid4())
    first = reserve(api, vol["id"], server)
    if state == "in-use":
        assert update(api, first["id"], connector()).status_code == 200
        assert complete(api, first["id"]).status_code == 204
    resp = create(api, vol["id"], server)
    assert resp.status_code == 200, resp.text
    again = resp.json()["attachment"]
    assert again["id"] != first["id"]
    assert again["status"] == "reserved"
    assert volume(api, vol["id"])["status"] == state
    # Deleting the new one leaves the volume as the first one holds it.
    assert api.delete(f"/attachments/{again['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == state


def test_multiattach_two_servers(api: Api, cinder: RunningService) -> None:
    vol = multiattach_volume(api, cinder)
    a = attach(api, vol["id"], host="compute-a")
    assert volume(api, vol["id"])["status"] == "in-use"
    # Cinder reserves an in-use multiattach volume for the next attachment.
    b = reserve(api, vol["id"])
    assert volume(api, vol["id"])["status"] == "reserved"
    resp = update(api, b["id"], connector("compute-b"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["attachment"]["status"] == "attaching"
    # compute-a is still attached: the volume is in-use, not attaching.
    assert volume(api, vol["id"])["status"] == "in-use"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-a", "compute-b"}
    assert complete(api, b["id"]).status_code == 204
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    assert {e["attachment_id"] for e in shown["attachments"]} == {a["id"], b["id"]}
    assert {e["host_name"] for e in shown["attachments"]} == {"compute-a", "compute-b"}

    resp = api.delete(f"/attachments/{a['id']}")
    assert resp.status_code == 200, resp.text
    [left] = resp.json()["attachments"]
    assert set(left) == SUMMARY_KEYS
    assert left["id"] == b["id"] and left["status"] == "attached"
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    assert [e["attachment_id"] for e in shown["attachments"]] == [b["id"]]
    # compute-a lost access; compute-b keeps it and the export stays up.
    assert allowed_hosts(cinder, vol["id"]) == {"compute-b"}
    assert_fault(api.delete(f"/volumes/{vol['id']}"), 400)

    resp = api.delete(f"/attachments/{b['id']}")
    assert resp.status_code == 200
    assert resp.json() == {"attachments": []}
    assert volume(api, vol["id"])["status"] == "available"
    assert allowed_hosts(cinder, vol["id"]) is None


def test_multiattach_second_host_connecting_at_create(api: Api, cinder: RunningService) -> None:
    """The status while another host connects follows the most attached attachment."""
    vol = multiattach_volume(api, cinder)
    a = attach(api, vol["id"], host="compute-a")
    resp = create(api, vol["id"], str(uuid.uuid4()), connector=connector("compute-b"))
    assert resp.status_code == 200, resp.text
    b = resp.json()["attachment"]
    assert b["status"] == "attaching" and b["connection_info"]["volume_id"] == vol["id"]
    shown = volume(api, vol["id"])
    assert shown["status"] == "in-use"
    assert [e["attachment_id"] for e in shown["attachments"]] == [a["id"]]
    # Detaching the attached host while the other is still connecting: `attaching`.
    assert api.delete(f"/attachments/{a['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == "attaching"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-b"}
    assert complete(api, b["id"]).status_code == 204
    assert volume(api, vol["id"])["status"] == "in-use"
    # A third host reserves and connects, then gives up: the volume stays in-use.
    c = reserve(api, vol["id"])
    assert volume(api, vol["id"])["status"] == "reserved"
    assert update(api, c["id"], connector("compute-c")).status_code == 200
    assert volume(api, vol["id"])["status"] == "in-use"
    assert api.delete(f"/attachments/{c['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == "in-use"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-b"}
    assert api.delete(f"/attachments/{b['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == "available"
    assert allowed_hosts(cinder, vol["id"]) is None


def test_in_use_extend_keeps_the_attachment(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    att = attach(api, vol["id"], host="compute-1")
    body = {"os-extend": {"new_size": 3}}
    refused = api.post(f"/volumes/{vol['id']}/action", body, version="3.41")
    assert "in-use" in assert_fault(refused, 400)
    resp = api.post(f"/volumes/{vol['id']}/action", body, version="3.42")
    assert resp.status_code == 202, resp.text
    shown = api.wait_volume(vol["id"], ("in-use",))
    assert shown["size"] == 3
    assert [e["attachment_id"] for e in shown["attachments"]] == [att["id"]]
    assert api.get(f"/attachments/{att['id']}").json()["attachment"]["status"] == "attached"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-1"}  # the export stayed up
    body = {"os-initialize_connection": {"connector": connector("compute-1")}}
    info = api.post(f"/volumes/{vol['id']}/action", body).json()["connection_info"]
    assert info["data"]["size_bytes"] == 3 * 1024**3


def test_multiattach_reserved_volume_takes_no_other_reservation(
    api: Api, cinder: RunningService
) -> None:
    vol = multiattach_volume(api, cinder)
    server = str(uuid.uuid4())
    a = reserve(api, vol["id"], server)
    assert volume(api, vol["id"])["status"] == "reserved"
    assert_fault(
        create(api, vol["id"], str(uuid.uuid4())),
        400,
        f"Invalid volume: Volume {vol['id']} status must be available or in-use or "
        f"downloading to reserve, but the current status is reserved.",
    )
    # The same server may reserve again.
    again = reserve(api, vol["id"], server)
    assert volume(api, vol["id"])["status"] == "reserved"
    assert api.delete(f"/attachments/{a['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == "reserved"
    assert api.delete(f"/attachments/{again['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == "available"


def test_deleting_the_reservation_of_a_multiattach_volume_keeps_it_in_use(
    api: Api, cinder: RunningService
) -> None:
    vol = multiattach_volume(api, cinder)
    a = attach(api, vol["id"], host="compute-a")
    b = reserve(api, vol["id"])
    assert volume(api, vol["id"])["status"] == "reserved"
    resp = api.delete(f"/attachments/{b['id']}")
    assert resp.status_code == 200
    assert [x["id"] for x in resp.json()["attachments"]] == [a["id"]]
    assert volume(api, vol["id"])["status"] == "in-use"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-a"}


@pytest.mark.parametrize(
    "bad", [{"ip": "192.0.2.1"}, {"host": ""}, {"platform": "x86_64", "initiator": None}]
)
def test_bad_connector_on_create_leaves_nothing_behind(
    api: Api, cinder: RunningService, bad: dict[str, Any]
) -> None:
    vol = mem_volume(api)
    resp = create(api, vol["id"], str(uuid.uuid4()), connector=bad)
    assert_fault(resp, 400)
    assert api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"] == []
    assert volume(api, vol["id"])["status"] == "available"
    assert allowed_hosts(cinder, vol["id"]) is None
    # The volume is really free: a normal attach works.
    attach(api, vol["id"])
    assert volume(api, vol["id"])["status"] == "in-use"


def test_bad_connector_on_update_keeps_the_reservation(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    assert_fault(update(api, att["id"], {"ip": "192.0.2.1"}), 400)
    shown = api.get(f"/attachments/{att['id']}").json()["attachment"]
    assert shown["status"] == "reserved"
    assert shown["connection_info"] == {}
    assert volume(api, vol["id"])["status"] == "reserved"
    assert allowed_hosts(cinder, vol["id"]) is None


def test_enforced_multipath_on_a_single_path_backend_is_400(
    api: Api, cinder: RunningService
) -> None:
    vol = mem_volume(api)
    enforcing = connector(multipath=True, enforce_multipath=True)
    # With the connector at create: refused, nothing left behind.
    message = assert_fault(create(api, vol["id"], str(uuid.uuid4()), connector=enforcing), 400)
    assert "enforce_multipath" in message and "single path" in message, message
    assert api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"] == []
    assert volume(api, vol["id"])["status"] == "available"
    # At update: refused, the reservation stays as it was.
    att = reserve(api, vol["id"])
    assert "enforce_multipath" in assert_fault(update(api, att["id"], enforcing), 400)
    shown = api.get(f"/attachments/{att['id']}").json()["attachment"]
    assert shown["status"] == "reserved" and shown["connection_info"] == {}
    assert volume(api, vol["id"])["status"] == "reserved"
    assert allowed_hosts(cinder, vol["id"]) is None
    # The same host without enforcing multipath gets through.
    resp = update(api, att["id"], connector(multipath=True))
    assert resp.status_code == 200, resp.text
    assert volume(api, vol["id"])["status"] == "attaching"


@pytest.mark.parametrize("conn", [{}, None, "compute-1", []])
def test_update_needs_a_connector_object(api: Api, conn: Any) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    assert_fault(update(api, att["id"], conn), 400)
    assert_fault(api.put(f"/attachments/{att['id']}", {"attachment": {}}), 400)
    assert volume(api, vol["id"])["status"] == "reserved"


def test_update_with_a_duplicate_connector_is_409(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    server = str(uuid.uuid4())
    first = attach(api, vol["id"], host="compute-1", instance=server)
    second = reserve(api, vol["id"], server)  # the same server again: allowed to reserve
    resp = update(api, second["id"], connector("compute-2"))
    assert_fault(resp, 409)
    message = resp.json()["conflictingRequest"]["message"]
    assert f"duplicate connectors detected on volume {vol['id']}" in message
    shown = api.get(f"/attachments/{second['id']}").json()["attachment"]
    assert shown["status"] == "reserved" and shown["connection_info"] == {}
    assert allowed_hosts(cinder, vol["id"]) == {"compute-1"}
    assert volume(api, vol["id"])["status"] == "in-use"
    assert api.get(f"/attachments/{first['id']}").json()["attachment"]["status"] == "attached"


def test_multiattach_allows_a_second_connector(api: Api, cinder: RunningService) -> None:
    vol = multiattach_volume(api, cinder)
    server = str(uuid.uuid4())
    attach(api, vol["id"], host="compute-1", instance=server)
    second = reserve(api, vol["id"], server)
    resp = update(api, second["id"], connector("compute-2"))
    assert resp.status_code == 200, resp.text
    assert allowed_hosts(cinder, vol["id"]) == {"compute-1", "compute-2"}


@pytest.mark.parametrize("state", ["reserved", "attaching", "in-use"])
def test_deleting_an_attached_volume_is_400(api: Api, state: str) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    if state != "reserved":
        assert update(api, att["id"], connector()).status_code == 200
    if state == "in-use":
        assert complete(api, att["id"]).status_code == 204
    assert_fault(api.delete(f"/volumes/{vol['id']}"), 400)
    assert volume(api, vol["id"])["status"] == state
    assert api.get(f"/attachments/{att['id']}").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"attachment": {}},
        {"attachment": {"volume_uuid": "not-a-uuid"}},
        {"attachment": {"volume_uuid": UNKNOWN_ID, "instance_uuid": "nope"}},
        {"attachment": {"volume_uuid": UNKNOWN_ID, "extra": 1}},
        {"attachment": {"volume_uuid": UNKNOWN_ID, "connector": "host"}},
        {"volume_uuid": UNKNOWN_ID},
    ],
)
def test_create_body_validation(api: Api, body: dict[str, Any]) -> None:
    assert_fault(api.post("/attachments", body), 400)


def test_attachments_of_a_deleted_volume_are_gone(api: Api) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    assert api.delete(f"/attachments/{att['id']}").status_code == 200
    assert api.delete(f"/volumes/{vol['id']}").status_code == 202
    api.wait_gone(f"/volumes/{vol['id']}")
    assert api.get("/attachments").json()["attachments"] == []


def test_backend_type_is_the_memory_backend(api: Api) -> None:
    """Guard: these tests really run on the memory backend."""
    vol = mem_volume(api)
    assert vol["volume_type"] == backend_type(api, "mem")["name"]
    assert vol["os-vol-host-attr:host"].startswith("testhost@mem")


# --- backend failures ------------------------------------------------------------------------
@contextlib.contextmanager
def failing(cinder: RunningService, *operations: str) -> Iterator[None]:
    """Make the memory backend fail these operations for the duration of the block."""
    driver = cinder.service.managers["testhost@mem"].driver
    added = set(operations) - driver.fail_on
    driver.fail_on |= added
    try:
        yield
    finally:
        driver.fail_on -= added


def test_backend_failure_on_create_leaves_nothing_behind(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    with failing(cinder, "initialize_connection"):
        resp = create(api, vol["id"], str(uuid.uuid4()), connector=connector())
    message = assert_fault(resp, 500)
    assert message.startswith("Unable to create attachment for volume"), message
    assert "injected" not in message  # the backend's own text is not shown
    assert api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"] == []
    assert volume(api, vol["id"])["status"] == "available"
    attach(api, vol["id"])  # and it can be attached afterwards


def test_backend_failure_on_update_keeps_the_reservation(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    att = reserve(api, vol["id"])
    with failing(cinder, "create_export"):
        resp = update(api, att["id"], connector())
    message = assert_fault(resp, 500)
    assert message.startswith("Unable to update the attachment"), message
    shown = api.get(f"/attachments/{att['id']}").json()["attachment"]
    assert shown["status"] == "reserved" and shown["connection_info"] == {}
    assert volume(api, vol["id"])["status"] == "reserved"
    # A retry once the backend is back succeeds.
    assert update(api, att["id"], connector()).status_code == 200


def test_backend_failure_on_delete_keeps_the_attachment(api: Api, cinder: RunningService) -> None:
    vol = mem_volume(api)
    att = attach(api, vol["id"], host="compute-5")
    with failing(cinder, "terminate_connection"):
        resp = api.delete(f"/attachments/{att['id']}")
    assert_fault(resp, 500)
    assert api.get(f"/attachments/{att['id']}").json()["attachment"]["status"] == "attached"
    assert volume(api, vol["id"])["status"] == "in-use"
    assert allowed_hosts(cinder, vol["id"]) == {"compute-5"}
    assert api.delete(f"/attachments/{att['id']}").status_code == 200
    assert volume(api, vol["id"])["status"] == "available"
    assert allowed_hosts(cinder, vol["id"]) is None


# --- races ---------------------------------------------------------------------------------
def test_concurrent_reservations_of_one_volume_admit_one(api: Api) -> None:
    vol = mem_volume(api)

    def one(_: int) -> int:
        client = Api(api.base, api.project)
        try:
            return create(client, vol["id"], str(uuid.uuid4())).status_code
        finally:
            client.client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(one, range(8)))
    assert sorted(codes) == [200] + [400] * 7, codes
    assert len(api.get(f"/attachments?volume_id={vol['id']}").json()["attachments"]) == 1
    assert volume(api, vol["id"])["status"] == "reserved"
