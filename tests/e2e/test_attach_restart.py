"""`kill -9` the service (and tgtd) while a volume is in-use: the export comes back as it was.

`cinderblock serve` exports a file-driver volume through a private tgtd; a real
initiator (qemu-io over libiscsi) writes a pattern with the CHAP credentials
the attachments API handed out. Then:

* only the service dies: tgtd keeps serving; after the restart the API hands
  out the same target and credentials and the data reads back;
* the service and tgtd die: tgtd comes back empty, and the restarted service
  re-creates the target with the same IQN, CHAP account and the attached
  host's ACL entry before anyone calls the API, so the host logs in again
  with the credentials it already had;
* the same with ``tgt_manage_daemon = true``: the service starts tgtd itself;
* tgtd dies under a running service with ``tgt_manage_daemon = true``: the
  service's watcher starts it again and puts the export back, no API call;
* tgtd is restarted by someone else (systemd) under a running service that does
  not manage it: the watcher puts the export back into the new tgtd.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .tgt_support import (
    DataPathService,
    Tgtd,
    _answers,
    _free_control_port,
    _free_port,
    _shutdown,
    assert_ok,
    connector,
    file_has,
    image_opts,
    qemu_io,
    skip_unless_tgt_can_run,
)

MiB = 1024**2
SAME_KEYS = ("target_iqn", "target_portal", "target_lun", "auth_method")
SAME_KEYS += ("auth_username", "auth_password", "volume_id")


@pytest.fixture
def tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    skip_unless_tgt_can_run()
    daemon = Tgtd(_free_control_port(), _free_port(), tmp_path / "tgtd.log")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        _shutdown(daemon.control_port)  # a tgtd the service started itself


def attached_volume(
    service: DataPathService,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An in-use volume with a pattern written through its export: (volume, attachment, conn)."""
    vol = service.create_volume(1)
    conn = connector()
    att = service.attach(vol["id"], conn)
    data = att["connection_info"]
    assert data["auth_method"] == "CHAP"
    assert_ok(
        qemu_io(image_opts(data, conn["initiator"]), "write -P 0x6b 0 4M", "write -P 7 900M 1M")
    )
    return vol, att, conn


def check_after_restart(
    service: DataPathService, vol: dict[str, Any], att: dict[str, Any], conn: dict[str, Any]
) -> None:
    before = att["connection_info"]
    assert service.volume(vol["id"])["status"] == "in-use"
    shown = service.request("GET", f"/attachments/{att['id']}").json()["attachment"]
    assert shown["status"] == "attached"
    assert {k: shown["connection_info"][k] for k in SAME_KEYS} == {k: before[k] for k in SAME_KEYS}
    info = service.initialize_connection(vol["id"], conn)["data"]
    assert {k: info[k] for k in SAME_KEYS} == {k: before[k] for k in SAME_KEYS}
    spec = image_opts(before, conn["initiator"])
    assert_ok(qemu_io(spec, "read -P 0x6b 0 4M", "read -P 7 900M 1M"))
    # The old secret is the only one: a wrong one is still refused.
    wrong = qemu_io(image_opts(before, conn["initiator"], password="y" * 24), "read 0 4k")
    assert wrong.returncode != 0 and "Authentication failure" in wrong.stderr, wrong.stderr
    path = service.volumes_dir / f"volume-{vol['id']}"
    assert file_has(path, 0, 4 * MiB, 0x6B)


def wait_exported(tgtd: Tgtd, iqn: str, initiator: str) -> None:
    """Until the restarted service has re-created the target and let the host in again."""
    deadline = time.monotonic() + 60
    while True:
        show = tgtd.show() if _answers(tgtd.control_port) else ""
        target = show.partition(iqn)[2].partition("\nTarget ")[0]
        if initiator in target.partition("ACL information:")[2]:
            return
        assert time.monotonic() < deadline, f"{iqn} was not exported again:\n{show}"
        time.sleep(0.1)


def test_service_killed_tgtd_kept(tgtd: Tgtd, tmp_path: Path) -> None:
    service = DataPathService(tmp_path / "svc", "iscsi", tgtd)
    service.start()
    try:
        vol, att, conn = attached_volume(service)
        service.kill9()
        # The export lives in tgtd, not in the service: the host keeps its data path.
        spec = image_opts(att["connection_info"], conn["initiator"])
        assert_ok(qemu_io(spec, "read -P 0x6b 0 4M"))
        service.start()
        check_after_restart(service, vol, att, conn)
        accounts = tgtd.accounts()
        assert accounts.count(att["connection_info"]["auth_username"]) == 1
    finally:
        service.stop()


def test_service_and_tgtd_killed(tgtd: Tgtd, tmp_path: Path) -> None:
    service = DataPathService(tmp_path / "svc", "iscsi", tgtd)
    service.start()
    try:
        vol, att, conn = attached_volume(service)
        idle = service.create_volume(1)  # available: not exported after the restart
        data = att["connection_info"]
        service.kill9()
        tgtd.kill9()
        tgtd.start()
        assert data["target_iqn"] not in tgtd.show()  # tgtd forgot everything
        service.start()
        wait_exported(tgtd, data["target_iqn"], conn["initiator"])
        # Before any API call: the attached host logs in again with what it had.
        assert_ok(qemu_io(image_opts(data, conn["initiator"]), "read -P 0x6b 0 4M"))
        assert f"volume-{idle['id']}" not in tgtd.show()
        check_after_restart(service, vol, att, conn)
    finally:
        service.stop()


def test_service_and_tgtd_killed_managed_daemon(tgtd: Tgtd, tmp_path: Path) -> None:
    service = DataPathService(tmp_path / "svc", "iscsi", tgtd, extra="tgt_manage_daemon = true")
    service.start()
    try:
        vol, att, conn = attached_volume(service)
        service.kill9()
        tgtd.kill9()
        assert not _answers(tgtd.control_port)
        service.start()  # starts tgtd on the configured control port and portal
        wait_exported(tgtd, att["connection_info"]["target_iqn"], conn["initiator"])
        check_after_restart(service, vol, att, conn)
    finally:
        service.stop()


def test_tgtd_killed_under_a_running_service_is_supervised(tgtd: Tgtd, tmp_path: Path) -> None:
    extra = "tgt_manage_daemon = true\ntgt_supervise_interval = 0.5"
    service = DataPathService(tmp_path / "svc", "iscsi", tgtd, extra=extra)
    service.start()
    try:
        vol, att, conn = attached_volume(service)
        data = att["connection_info"]
        tgtd.kill9()
        # No API call: the service starts tgtd again and puts the export back.
        wait_exported(tgtd, data["target_iqn"], conn["initiator"])
        assert_ok(qemu_io(image_opts(data, conn["initiator"]), "read -P 0x6b 0 4M"))
        check_after_restart(service, vol, att, conn)
        # A detached volume is not put back: the watcher forgets what was removed.
        assert service.request("DELETE", f"/attachments/{att['id']}").status_code == 200
        _shutdown(tgtd.control_port)  # replace the service's tgtd with a fresh one
        deadline = time.monotonic() + 10
        while _answers(tgtd.control_port):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        tgtd.start()
        time.sleep(2)  # four supervision rounds
        assert data["target_iqn"] not in tgtd.show()
    finally:
        service.stop()


def test_tgtd_restarted_by_the_system_under_a_running_service(tgtd: Tgtd, tmp_path: Path) -> None:
    service = DataPathService(tmp_path / "svc", "iscsi", tgtd, extra="tgt_supervise_interval = 0.5")
    service.start()
    try:
        vol, att, conn = attached_volume(service)
        data = att["connection_info"]
        tgtd.kill9()
        time.sleep(1)  # the watcher finds no tgtd and, not managing it, waits
        assert not _answers(tgtd.control_port)
        tgtd.start()  # what systemd's restart would do: an empty tgtd
        wait_exported(tgtd, data["target_iqn"], conn["initiator"])
        assert_ok(qemu_io(image_opts(data, conn["initiator"]), "read -P 0x6b 0 4M"))
        check_after_restart(service, vol, att, conn)
    finally:
        service.stop()
