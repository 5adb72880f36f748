"""iSCSI exports of the file driver through a real tgtd, read and written by a real initiator.

The initiator is qemu-io with libiscsi (no kernel iSCSI needed). Each test
module runs its own tgtd on a private control port and a free TCP port, so
a system tgtd (and other tests) are never touched and the daemon can be
killed with SIGKILL. Needs root, tgt, qemu-utils and qemu-block-extra; the
tests are skipped, saying why, when tgtd cannot run.

Initiator invocations used (all verified here):

* ``qemu-io --image-opts -c 'write -P 0xab 0 4M' driver=iscsi,transport=tcp,
  portal=IP:PORT,target=IQN,lun=1,user=U,password=S,initiator-name=NAME``
* ``qemu-io -f raw -c ... iscsi://U%S@IP:PORT/IQN/1``: the URL form; it logs
  in as libiscsi's default initiator name ``iqn.2008-11.org.linux-kvm``.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.file.driver import FileDriver
from cinderblock.drivers.refs import GiB, SnapshotRef, VolumeRef
from cinderblock.exceptions import InvalidConnectorException
from cinderblock.targets import ExportRef, TargetDaemonDown

from .tgt_support import (
    QEMU_DEFAULT_INITIATOR,
    Tgtd,
    _answers,
    _free_control_port,
    _free_port,
    _listening,
    _shutdown,
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


@dataclass
class Harness:
    """A file driver exporting through the private tgtd; cleans up what tests export."""

    tgtd: Tgtd
    volumes_dir: Path
    options: dict[str, str]
    driver: FileDriver = field(init=False)
    volumes: list[VolumeRef] = field(default_factory=list)
    snapshots: list[SnapshotRef] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.driver = self.make_driver()

    def make_driver(self, **extra: str) -> FileDriver:
        options = {
            "file_volumes_dir": str(self.volumes_dir),
            "tgt_control_port": str(self.tgtd.control_port),
            "target_port": str(self.tgtd.port),
            **self.options,
            **extra,
        }
        driver = FileDriver(BackendConfig("iscsi1", "file", "iscsi1", options), "host@iscsi1")
        driver.do_setup()
        return driver

    def volume(self, size: int = 1) -> VolumeRef:
        ref = VolumeRef(id=str(uuid.uuid4()), size=size)
        update = self.driver.create_volume(ref) or {}
        ref = VolumeRef(id=ref.id, size=size, provider_location=update.get("provider_location"))
        self.volumes.append(ref)
        return ref

    def export(self, volume: VolumeRef) -> VolumeRef:
        """create_export, then the ref as the manager re-reads it (provider_auth stored)."""
        update = self.driver.create_export(volume, None) or {}
        return VolumeRef(
            id=volume.id,
            size=volume.size,
            provider_location=volume.provider_location,
            provider_auth=update.get("provider_auth", volume.provider_auth),
        )

    def snapshot(self, volume: VolumeRef) -> SnapshotRef:
        snap = SnapshotRef(id=str(uuid.uuid4()), volume=volume, size=volume.size)
        update = self.driver.create_snapshot(snap) or {}
        snap = SnapshotRef(
            id=snap.id,
            volume=volume,
            size=volume.size,
            provider_location=update.get("provider_location"),
        )
        self.snapshots.append(snap)
        return snap

    def path(self, volume: VolumeRef) -> Path:
        return Path(self.driver.local_path(volume))

    def cleanup(self) -> None:
        for snap in self.snapshots:
            self.driver.remove_export_snapshot(snap)
        for vol in self.volumes:
            self.driver.remove_export(vol)


@pytest.fixture
def harness(tgtd: Tgtd, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tgtd, tmp_path / "volumes", {})
    try:
        yield h
    finally:
        if tgtd.process is None:
            tgtd.start()  # a test died between kill and restart
        h.cleanup()


def test_write_terminate_reinitialize_read_back(harness: Harness, tgtd: Tgtd) -> None:
    vol = harness.export(harness.volume())
    assert vol.provider_auth is not None
    method, user, secret = vol.provider_auth.split()
    assert method == "CHAP" and len(secret) >= 16 and user != secret
    conn = connector()

    info = harness.driver.initialize_connection(vol, conn)
    iqn = f"iqn.2010-10.org.openstack:volume-{vol.id}"
    assert info == {
        "driver_volume_type": "iscsi",
        "data": {
            "target_discovered": False,
            "target_iqn": iqn,
            "target_portal": f"127.0.0.1:{tgtd.port}",
            "target_lun": 1,
            "volume_id": vol.id,
            "auth_method": "CHAP",
            "auth_username": user,
            "auth_password": secret,
            "discard": False,
        },
    }
    spec = image_opts(info["data"], conn["initiator"])
    assert_ok(qemu_io(spec, "write -P 0xab 0 4M", "write -P 0xcd 512M 1M"))

    harness.driver.terminate_connection(vol, conn)
    assert conn["initiator"] not in tgtd.show()
    refused = qemu_io(spec, "read 0 4k")
    assert refused.returncode != 0 and "Target not found" in refused.stderr, refused.stderr

    info2 = harness.driver.initialize_connection(vol, conn)
    assert info2 == info  # same target, same credentials
    assert_ok(qemu_io(spec, "read -P 0xab 0 4M", "read -P 0xcd 512M 1M", "read -P 0 4M 1M"))

    path = harness.path(vol)
    assert file_has(path, 0, 4 * MiB, 0xAB)
    assert file_has(path, 512 * MiB, MiB, 0xCD)
    assert path.stat().st_size == GiB


def test_new_targets_get_the_login_parameters(harness: Harness, tgtd: Tgtd) -> None:
    vol = harness.export(harness.volume())
    tid = tgtd.show().partition(f"volume-{vol.id}")[0].rpartition("Target ")[2].rstrip(": ")
    params = tgtd.adm("--op", "show", "--mode", "target", "--tid", tid).stdout.split()
    assert "MaxRecvDataSegmentLength=262144" in params
    assert "MaxBurstLength=1048576" in params
    assert "InitialR2T=No" in params


def test_url_form_with_chap_in_the_url(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    info = harness.driver.initialize_connection(vol, connector(QEMU_DEFAULT_INITIATOR))
    data = info["data"]
    url = (
        f"iscsi://{data['auth_username']}%{data['auth_password']}@{data['target_portal']}/"
        f"{data['target_iqn']}/{data['target_lun']}"
    )
    assert_ok(qemu_io(url, "write -P 0x5a 0 4M"))
    assert_ok(qemu_io(url, "read -P 0x5a 0 4M", read_only=True))
    assert file_has(harness.path(vol), 0, 4 * MiB, 0x5A)


def test_wrong_or_missing_chap_secret_is_refused(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    conn = connector()
    data = harness.driver.initialize_connection(vol, conn)["data"]
    wrong = qemu_io(image_opts(data, conn["initiator"], password="x" * 24), "read 0 4k")
    assert wrong.returncode != 0 and "Authentication failure" in wrong.stderr, wrong.stderr
    spec = image_opts(data, conn["initiator"])
    no_auth = ",".join(p for p in spec.split(",") if not p.startswith(("user=", "password=")))
    anonymous = qemu_io(no_auth, "read 0 4k")
    assert anonymous.returncode != 0, anonymous.stdout
    assert_ok(qemu_io(spec, "read 0 4k"))


def test_initiator_not_in_acl_is_refused(harness: Harness, tgtd: Tgtd) -> None:
    vol = harness.export(harness.volume())
    allowed, other = connector(), connector()
    data = harness.driver.initialize_connection(vol, allowed)["data"]
    # Right credentials, right address (the connector's ip is 127.0.0.1 too): wrong name.
    refused = qemu_io(image_opts(data, other["initiator"]), "read 0 4k")
    assert refused.returncode != 0 and "Target not found" in refused.stderr, refused.stderr
    assert_ok(qemu_io(image_opts(data, allowed["initiator"]), "read 0 4k"))
    assert "127.0.0.1" not in tgtd.show().partition("ACL information:")[2]


def test_two_connectors_terminate_only_one(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    first, second = connector(), connector()
    data = harness.driver.initialize_connection(vol, first)["data"]
    harness.driver.initialize_connection(vol, second)
    harness.driver.terminate_connection(vol, first)
    assert qemu_io(image_opts(data, first["initiator"]), "read 0 4k").returncode != 0
    assert_ok(qemu_io(image_opts(data, second["initiator"]), "read 0 4k"))
    harness.driver.terminate_connection(vol, None)  # force detach: everyone out
    assert qemu_io(image_opts(data, second["initiator"]), "read 0 4k").returncode != 0


def test_terminate_closes_an_open_session(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    conn = connector()
    data = harness.driver.initialize_connection(vol, conn)["data"]
    # A client that stays logged in across terminate_connection, then tries to read.
    argv = ["qemu-io", "-r", "--image-opts", "-c", "sleep 1000", "-c", "read 0 4k"]
    client = subprocess.Popen(
        [*argv, image_opts(data, conn["initiator"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while f"Initiator: {conn['initiator']}" not in harness.tgtd.show():
            assert time.monotonic() < deadline, "the client never logged in"
            time.sleep(0.02)
        harness.driver.terminate_connection(vol, conn)
        # libiscsi retries the login forever; it must never get its read done.
        with contextlib.suppress(subprocess.TimeoutExpired):
            client.wait(timeout=4)
    finally:
        if client.poll() is None:
            client.kill()
        out, err = client.communicate(timeout=10)
    assert "read 4096/4096" not in out, (out, err)
    assert f"Initiator: {conn['initiator']}" not in harness.tgtd.show()


def test_remove_export_deletes_target_and_account(harness: Harness, tgtd: Tgtd) -> None:
    vol = harness.export(harness.volume())
    conn = connector()
    data = harness.driver.initialize_connection(vol, conn)["data"]
    assert_ok(qemu_io(image_opts(data, conn["initiator"]), "write -P 0x11 0 1M"))
    harness.driver.terminate_connection(vol, conn)
    harness.driver.remove_export(vol)
    assert data["target_iqn"] not in tgtd.show()
    assert data["auth_username"] not in tgtd.accounts()
    assert not harness.driver.target.is_exported(harness.driver._volume_export(vol))
    harness.driver.remove_export(vol)  # idempotent
    harness.driver.terminate_connection(vol, conn)  # nothing left to revoke: no error
    assert file_has(harness.path(vol), 0, MiB, 0x11)  # the data stays in the file


def test_tgtd_killed_and_restarted_ensure_export_restores_same_target(
    harness: Harness, tgtd: Tgtd
) -> None:
    vol = harness.export(harness.volume())
    conn = connector()
    before = harness.driver.initialize_connection(vol, conn)
    assert_ok(qemu_io(image_opts(before["data"], conn["initiator"]), "write -P 0x77 0 4M"))

    tgtd.kill9()
    with pytest.raises(TargetDaemonDown, match="tgtd is not running"):
        harness.driver.ensure_export(vol)
    tgtd.start()
    assert before["data"]["target_iqn"] not in tgtd.show()  # tgtd forgot everything

    assert harness.driver.ensure_export(vol) is None  # same credentials: nothing to persist
    assert before["data"]["target_iqn"] in tgtd.show()
    after = harness.driver.initialize_connection(vol, conn)
    assert after == before
    assert_ok(qemu_io(image_opts(after["data"], conn["initiator"]), "read -P 0x77 0 4M"))


def test_initialize_connection_recreates_a_lost_target(harness: Harness, tgtd: Tgtd) -> None:
    vol = harness.export(harness.volume())
    conn = connector()
    before = harness.driver.initialize_connection(vol, conn)
    tgtd.kill9()
    tgtd.start()
    after = harness.driver.initialize_connection(vol, conn)
    assert after == before
    assert_ok(qemu_io(image_opts(after["data"], conn["initiator"]), "read 0 4k"))


def test_create_export_reuses_stored_credentials(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    assert harness.driver.create_export(vol, None) is None
    harness.driver.remove_export(vol)
    assert harness.driver.create_export(vol, None) is None  # same provider_auth again


def test_snapshot_export_is_read_only_and_serves_the_snapshot(harness: Harness, tgtd: Tgtd) -> None:
    vol = harness.export(harness.volume())
    conn = connector()
    data = harness.driver.initialize_connection(vol, conn)["data"]
    assert_ok(qemu_io(image_opts(data, conn["initiator"]), "write -P 0xab 0 4M"))
    snap = harness.snapshot(vol)
    # The volume moves on after the snapshot.
    assert_ok(qemu_io(image_opts(data, conn["initiator"]), "write -P 0xcd 0 4M"))

    assert harness.driver.create_export_snapshot(snap, conn) is None
    info = harness.driver.initialize_connection_snapshot(snap, conn)
    sdata = info["data"]
    assert info["driver_volume_type"] == "iscsi"
    assert sdata["target_iqn"] == f"iqn.2010-10.org.openstack:snapshot-{snap.id}"
    assert sdata["volume_id"] == snap.id and sdata["access_mode"] == "ro"
    assert sdata["auth_method"] == "CHAP" and sdata["auth_username"] != data["auth_username"]
    spec = image_opts(sdata, conn["initiator"])
    assert_ok(qemu_io(spec, "read -P 0xab 0 4M", read_only=True))
    write = qemu_io(spec, "write -P 0xee 0 4M")
    assert write.returncode != 0 and "write protected" in write.stderr, write.stderr
    snap_path = harness.path(vol).with_name(snap.provider_location or "")
    assert file_has(snap_path, 0, 4 * MiB, 0xAB)
    assert file_has(harness.path(vol), 0, 4 * MiB, 0xCD)

    # Credentials are stable (snapshots have no provider_auth to store them in).
    assert harness.driver.initialize_connection_snapshot(snap, conn) == info
    harness.driver.terminate_connection_snapshot(snap, conn)
    assert qemu_io(spec, "read 0 4k", read_only=True).returncode != 0
    harness.driver.remove_export_snapshot(snap)
    assert sdata["target_iqn"] not in tgtd.show()


def test_a_backing_file_with_a_comma_in_its_path(harness: Harness, tmp_path: Path) -> None:
    # tgtadm cannot take such a path (its request is comma separated): a symlink is used.
    odd = tmp_path / "odd, name=1.img"
    with odd.open("wb") as f:
        f.truncate(64 * MiB)
    target = harness.driver.target
    ref = ExportRef(object_id="odd", name=f"volume-{uuid.uuid4()}", path=str(odd))
    export = target.create_export(ref)
    ref = ExportRef(ref.object_id, ref.name, ref.path, provider_auth=export.provider_auth)
    try:
        conn = connector()
        data = target.initialize_connection(ref, conn)["data"]
        assert_ok(qemu_io(image_opts(data, conn["initiator"]), "write -P 0x21 1M 1M"))
        assert file_has(odd, MiB, MiB, 0x21)
    finally:
        target.remove_export(ref)
    assert not (Path(harness.volumes_dir) / ".tgt" / "links" / ref.name).exists()


def test_secondary_portals_give_multipath_fields(harness: Harness, tgtd: Tgtd) -> None:
    driver = harness.make_driver(iscsi_secondary_ip_addresses="127.0.0.2")
    vol = harness.volume()
    update = driver.create_export(vol, None) or {}
    vol = VolumeRef(
        id=vol.id,
        size=vol.size,
        provider_location=vol.provider_location,
        provider_auth=update["provider_auth"],
    )
    conn = {**connector(), "multipath": True, "enforce_multipath": True}
    data = driver.initialize_connection(vol, conn)["data"]
    portals = [f"127.0.0.1:{tgtd.port}", f"127.0.0.2:{tgtd.port}"]
    assert data["target_portal"] == portals[0]
    assert data["target_portals"] == portals
    assert data["target_iqns"] == [data["target_iqn"]] * 2
    assert data["target_luns"] == [1, 1]
    # The private tgtd listened on 127.0.0.1 only: the target added the second portal.
    assert_ok(qemu_io(image_opts(data, conn["initiator"], portal=portals[1]), "write -P 3 0 1M"))
    assert_ok(qemu_io(image_opts(data, conn["initiator"]), "read -P 3 0 1M"))


def test_enforced_multipath_with_one_portal_is_refused(harness: Harness, tgtd: Tgtd) -> None:
    vol = harness.export(harness.volume())
    conn = {**connector(), "multipath": True, "enforce_multipath": True}
    with pytest.raises(InvalidConnectorException, match="single path") as refused:
        harness.driver.initialize_connection(vol, conn)
    assert f"127.0.0.1:{tgtd.port}" in str(refused.value)
    assert conn["initiator"] not in tgtd.show()  # not let in
    data = harness.driver.initialize_connection(vol, {**conn, "enforce_multipath": False})["data"]
    assert "target_portals" not in data


def test_connector_without_initiator_is_refused(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    for bad in ({}, {"ip": "127.0.0.1", "host": "h"}, {"initiator": ""}):
        with pytest.raises(InvalidConnectorException, match="initiator"):
            harness.driver.validate_connector(bad)
        with pytest.raises(InvalidConnectorException, match="initiator"):
            harness.driver.initialize_connection(vol, bad)


def test_daemon_down_says_what_to_do(harness: Harness) -> None:
    vol = harness.volume()
    driver = harness.make_driver(tgt_control_port=str(_free_control_port()))
    with pytest.raises(TargetDaemonDown, match="tgt_manage_daemon = true"):
        driver.create_export(vol, None)
    driver.remove_export(vol)  # nothing can be exported on a daemon that is down: no error


def test_managed_daemon_is_started_when_missing(harness: Harness, tmp_path: Path) -> None:
    control, port = _free_control_port(), _free_port()
    driver = harness.make_driver(
        tgt_control_port=str(control), target_port=str(port), tgt_manage_daemon="true"
    )
    try:
        assert _answers(control) and _listening("127.0.0.1", port)
        vol = harness.volume()
        update = driver.create_export(vol, None) or {}
        vol = VolumeRef(
            id=vol.id,
            size=vol.size,
            provider_location=vol.provider_location,
            provider_auth=update["provider_auth"],
        )
        conn = connector()
        data = driver.initialize_connection(vol, conn)["data"]
        assert data["target_portal"] == f"127.0.0.1:{port}"
        assert_ok(qemu_io(image_opts(data, conn["initiator"]), "write -P 9 0 1M"))
        assert file_has(harness.path(vol), 0, MiB, 9)
        driver.remove_export(vol)
    finally:
        _shutdown(control)
        deadline = time.monotonic() + 10
        while _answers(control) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _answers(control)
