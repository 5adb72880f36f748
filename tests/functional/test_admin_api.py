"""os-services, scheduler-stats/get_pools and capabilities: what operators see."""

from __future__ import annotations

import time
import uuid

from cbhelpers import assert_fault

from conftest import Api, RunningService


def _services(api: Api, version: str = "3.71", **params: str) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    resp = api.get(f"/os-services?{query}" if query else "/os-services", version=version)
    assert resp.status_code == 200, resp.text
    return resp.json()["services"]


def test_services_list_shows_each_service_up_and_enabled(api: Api) -> None:
    services = {(s["binary"], s["host"]): s for s in _services(api)}
    for host in ("testhost@files", "testhost@mem"):
        volume = services[("cinder-volume", host)]
        assert volume["state"] == "up"
        assert volume["status"] == "enabled"
        assert volume["backend_state"] == "up"
        assert volume["frozen"] is False
        assert set(volume) == {
            "binary",
            "host",
            "zone",
            "status",
            "state",
            "updated_at",
            "disabled_reason",
            "cluster",
            "replication_status",
            "active_backend_id",
            "frozen",
            "backend_state",
        }
    scheduler = services[("cinder-scheduler", "testhost")]
    assert "backend_state" not in scheduler and "frozen" not in scheduler
    # Version gates: no cluster before 3.7, no backend_state before 3.49.
    old = _services(api, version="3.0", binary="cinder-volume")
    assert old and all("cluster" not in s and "backend_state" not in s for s in old)
    assert all(s["binary"] == "cinder-volume" for s in old)
    only = _services(api, host="testhost@mem")
    assert [s["host"] for s in only] == ["testhost@mem"]


def test_disable_with_reason_refuses_manage_until_enabled(api: Api, cinder: RunningService) -> None:
    body = {"host": "testhost@mem", "binary": "cinder-volume", "disabled_reason": "maintenance"}
    resp = api.put("/os-services/disable-log-reason", body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "host": "testhost@mem",
        "service": "cinder-volume",
        "binary": "cinder-volume",
        "status": "disabled",
        "disabled": True,
        "disabled_reason": "maintenance",
    }
    try:
        mem = next(s for s in _services(api) if s["host"] == "testhost@mem")
        assert (mem["status"], mem["disabled_reason"]) == ("disabled", "maintenance")
        resp = api.post(
            "/manageable_volumes",
            {"volume": {"host": "testhost@mem", "ref": {"source-name": "anything"}}},
        )
        assert assert_fault(resp, 400) == "Service is unavailable at this time."
    finally:
        resp = api.put("/os-services/enable", {"host": "testhost@mem", "binary": "cinder-volume"})
        assert resp.status_code == 200
        assert resp.json()["disabled"] is False
    mem = next(s for s in _services(api) if s["host"] == "testhost@mem")
    assert (mem["status"], mem["disabled_reason"]) == ("enabled", None)


def test_service_updates_refuse_unknown_hosts_and_bad_bodies(api: Api) -> None:
    assert_fault(api.put("/os-services/enable", {"host": "nope@x"}), 404)
    assert_fault(api.put("/os-services/disable", {"binary": "cinder-volume"}), 400)
    assert_fault(api.put("/os-services/frobnicate", {"host": "testhost@mem"}), 404)
    assert_fault(
        api.put(
            "/os-services/disable-log-reason", {"host": "testhost@mem", "disabled_reason": " "}
        ),
        400,
    )


def test_pools_report_each_backend(api: Api) -> None:
    resp = api.get("/scheduler-stats/get_pools")
    assert resp.status_code == 200
    names = {p["name"] for p in resp.json()["pools"]}
    assert {"testhost@files#files", "testhost@mem#mem"} <= names
    detail = api.get("/scheduler-stats/get_pools?detail=true").json()["pools"]
    files = next(p for p in detail if p["name"] == "testhost@files#files")
    caps = files["capabilities"]
    assert caps["volume_backend_name"] == "files"
    assert caps["storage_protocol"] == "file"
    assert caps["total_capacity_gb"] > 0 and caps["free_capacity_gb"] > 0
    assert caps["thin_provisioning_support"] is True
    one = api.get("/scheduler-stats/get_pools?name=testhost@mem%23mem").json()["pools"]
    assert [p["name"] for p in one] == ["testhost@mem#mem"]


def test_capabilities_of_a_backend(api: Api) -> None:
    resp = api.get("/capabilities/testhost@files")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["volume_backend_name"] == "files"
    assert body["namespace"] == "OS::Storage::Capabilities::testhost@files"
    assert_fault(api.get("/capabilities/nohost@x"), 404)


def test_admin_views_are_admin_only(cinder: RunningService) -> None:
    member = Api(cinder.url, uuid.uuid4().hex, user="demo")
    try:
        for path in ("/os-services", "/scheduler-stats/get_pools", "/capabilities/testhost@mem"):
            assert_fault(member.get(path), 403)
        assert_fault(member.put("/os-services/disable", {"host": "testhost@mem"}), 403)
    finally:
        member.client.close()


def test_scheduler_leaves_out_disabled_backends(api: Api) -> None:
    name = f"mem-only-{uuid.uuid4().hex[:6]}"
    resp = api.post(
        "/types", {"volume_type": {"name": name, "extra_specs": {"volume_backend_name": "mem"}}}
    )
    assert resp.status_code == 200
    disable = {"host": "testhost@mem", "binary": "cinder-volume", "disabled_reason": "drain"}
    assert api.put("/os-services/disable-log-reason", disable).status_code == 200
    try:
        time.sleep(1.2)  # the scheduler reads service liveness at most once a second
        volume = api.create_volume(volume_type=name, wait=False)
        assert api.wait_volume(volume["id"], ("error",))["status"] == "error"
    finally:
        api.put("/os-services/enable", {"host": "testhost@mem", "binary": "cinder-volume"})
    time.sleep(1.2)
    assert api.create_volume(volume_type=name)["os-vol-host-attr:host"] == "testhost@mem#mem"
