"""The data path driven through the API only, as Nova drives it, against a private tgtd.

Attachments API: connect with a connector, write a pattern with a real
initiator (qemu-io over libiscsi, CHAP from connection_info), delete the
attachment (the target is gone, the initiator is refused), attach again (same
CHAP credentials) and read the bytes back; they are in the volume file too.
Legacy actions: os-terminate_connection shuts one host out but keeps the
target; the last os-detach takes the target down. A connector enforcing
multipath is refused with one portal and served with two. A multiattach volume
serves two hosts at once, each with its own ACL entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .tgt_support import (
    DataPathService,
    Tgtd,
    assert_ok,
    connector,
    file_has,
    image_opts,
    qemu_io,
    running_tgtd,
)

MiB = 1024**2


@pytest.fixture(scope="module")
def tgtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tgtd]:
    with running_tgtd(tmp_path_factory.mktemp("tgtd") / "log") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def service(tgtd: Tgtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataPathService]:
    svc = DataPathService(tmp_path_factory.mktemp("api-datapath"), "iscsi", tgtd)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def action(service: DataPathService, volume_id: str, name: str, args: Any = None) -> Any:
    body = {name: {} if args is None else args}
    return service.request("POST", f"/volumes/{volume_id}/action", body)


def refused(data: dict[str, Any], initiator: str) -> str:
    done = qemu_io(image_opts(data, initiator), "read 0 4k")
    assert done.returncode != 0, done.stdout
    return done.stderr


def test_attachments_round_trip(service: DataPathService, tgtd: Tgtd) -> None:
    vol = service.create_volume(1)
    conn = connector()
    att = service.attach(vol["id"], conn)
    data = att["connection_info"]
    assert data["driver_volume_type"] == "iscsi"
    assert data["target_iqn"] == f"iqn.2010-10.org.openstack:volume-{vol['id']}"
    assert data["target_portal"] == f"127.0.0.1:{tgtd.port}"
    assert data["access_mode"] == "rw" and data["attachment_id"] == att["id"]
    spec = image_opts(data, conn["initiator"])
    assert_ok(qemu_io(spec, "write -P 0xa5 0 4M", "write -P 0x5a 1000M 2M"))
    # A wrong secret and another initiator name are refused.
    wrong = qemu_io(image_opts(data, conn["initiator"], password="z" * 24), "read 0 4k")
    assert wrong.returncode != 0 and "Authentication failure" in wrong.stderr, wrong.stderr
    assert "Target not found" in refused(data, connector()["initiator"])

    resp = service.request("DELETE", f"/attachments/{att['id']}")
    assert resp.status_code == 200, resp.text
    assert service.volume(vol["id"])["status"] == "available"
    assert data["target_iqn"] not in tgtd.show()
    assert data["auth_username"] not in tgtd.accounts()
    refused(data, conn["initiator"])  # no such target any more

    again = service.attach(vol["id"], conn)["connection_info"]
    for key in ("target_iqn", "target_portal", "target_lun", "auth_username", "auth_password"):
        assert again[key] == data[key], key  # provider_auth is reused
    assert_ok(qemu_io(spec, "read -P 0xa5 0 4M", "read -P 0x5a 1000M 2M", "read -P 0 4M 4M"))
    path = service.volumes_dir / f"volume-{vol['id']}"
    assert file_has(path, 0, 4 * MiB, 0xA5)
    assert file_has(path, 1000 * MiB, 2 * MiB, 0x5A)


def test_legacy_actions_round_trip(service: DataPathService, tgtd: Tgtd) -> None:
    vol = service.create_volume(1)
    first, second = connector(), connector()
    assert action(service, vol["id"], "os-reserve").status_code == 202
    data = service.initialize_connection(vol["id"], first)["data"]
    assert service.initialize_connection(vol["id"], second)["data"] == data
    args = {"mountpoint": "/dev/vdb", "host_name": "e2e-host", "mode": "rw"}
    assert action(service, vol["id"], "os-attach", args).status_code == 202
    assert service.volume(vol["id"])["status"] == "in-use"
    assert_ok(qemu_io(image_opts(data, first["initiator"]), "write -P 0x3c 0 1M"))

    # os-terminate_connection: only that host is shut out; the target stays.
    resp = action(service, vol["id"], "os-terminate_connection", {"connector": first})
    assert resp.status_code == 202, resp.text
    assert "Target not found" in refused(data, first["initiator"])
    assert_ok(qemu_io(image_opts(data, second["initiator"]), "read -P 0x3c 0 1M"))

    assert action(service, vol["id"], "os-begin_detaching").status_code == 202
    assert action(service, vol["id"], "os-detach", {"attachment_id": None}).status_code == 202
    assert service.volume(vol["id"])["status"] == "available"
    assert data["target_iqn"] not in tgtd.show()
    refused(data, second["initiator"])
    assert file_has(service.volumes_dir / f"volume-{vol['id']}", 0, MiB, 0x3C)


def test_enforced_multipath(service: DataPathService, tgtd: Tgtd, tmp_path: Path) -> None:
    enforcing = {**connector(), "multipath": True, "enforce_multipath": True}
    # One portal: refused with a 400, nobody let in.
    vol = service.create_volume(1)
    resp = action(service, vol["id"], "os-initialize_connection", {"connector": enforcing})
    assert resp.status_code == 400, resp.text
    assert "enforce_multipath" in resp.json()["badRequest"]["message"]
    assert enforcing["initiator"] not in tgtd.show()

    # Two portals: the multipath fields, and both paths serve the volume.
    two = DataPathService(tmp_path, "iscsi", tgtd, extra="iscsi_secondary_ip_addresses = 127.0.0.2")
    two.start()
    try:
        vol = two.create_volume(1)
        info = two.initialize_connection(vol["id"], enforcing)
        assert info["enforce_multipath"] is True
        data = info["data"]
        portals = [f"127.0.0.1:{tgtd.port}", f"127.0.0.2:{tgtd.port}"]
        assert data["target_portals"] == portals
        assert data["target_iqns"] == [data["target_iqn"]] * 2
        assert data["target_luns"] == [1, 1]
        initiator = enforcing["initiator"]
        spec = image_opts(data, initiator, portal=portals[1])
        assert_ok(qemu_io(spec, "write -P 0x2f 0 1M"))
        assert_ok(qemu_io(image_opts(data, initiator), "read -P 0x2f 0 1M"))
        body = {"connector": enforcing}
        assert action(two, vol["id"], "os-terminate_connection", body).status_code == 202
        assert "Target not found" in refused(data, initiator)
    finally:
        two.stop()


def test_multiattach_serves_two_hosts(service: DataPathService, tgtd: Tgtd) -> None:
    resp = service.request(
        "POST",
        "/types",
        {"volume_type": {"name": "dp-multi", "extra_specs": {"multiattach": "<is> True"}}},
    )
    assert resp.status_code == 200, resp.text
    resp = service.request("POST", "/volumes", {"volume": {"size": 1, "volume_type": "dp-multi"}})
    assert resp.status_code == 202, resp.text
    vol = service.wait_volume(resp.json()["volume"]["id"], "available")
    assert vol["multiattach"] is True
    host_a, host_b = connector(), connector()
    att_a = service.attach(vol["id"], host_a)
    att_b = service.attach(vol["id"], host_b)
    data_a, data_b = att_a["connection_info"], att_b["connection_info"]
    assert data_a["target_iqn"] == data_b["target_iqn"]
    # What one host writes, the other reads.
    assert_ok(qemu_io(image_opts(data_a, host_a["initiator"]), "write -P 0x6d 0 1M"))
    assert_ok(qemu_io(image_opts(data_b, host_b["initiator"]), "read -P 0x6d 0 1M"))
    assert len(service.volume(vol["id"])["attachments"]) == 2

    # Detaching host A shuts only A out; the volume stays in-use for B.
    assert service.request("DELETE", f"/attachments/{att_a['id']}").status_code == 200
    assert service.volume(vol["id"])["status"] == "in-use"
    assert "Target not found" in refused(data_a, host_a["initiator"])
    assert_ok(qemu_io(image_opts(data_b, host_b["initiator"]), "read -P 0x6d 0 1M"))

    assert service.request("DELETE", f"/attachments/{att_b['id']}").status_code == 200
    assert service.volume(vol["id"])["status"] == "available"
    assert data_b["target_iqn"] not in tgtd.show()
