"""NBD exports of the file driver through real qemu-nbd processes, used by real NBD clients.

Clients: qemu-io (``qemu-io -f raw -c ... nbd://HOST:PORT/NAME``; with TLS-PSK
``qemu-io --object tls-creds-psk,id=tls0,endpoint=client,dir=D,username=ID
--image-opts driver=nbd,server.type=inet,server.host=H,server.port=P,export=N,
tls-creds=tls0``) and, when installed, libnbd's nbdsh (Debian: libnbd-bin /
python3-libnbd). Each test has its own state directory and a port range of
its own; every qemu-nbd started is stopped by the finalizer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.file.driver import FileDriver
from cinderblock.drivers.refs import SnapshotRef, VolumeRef
from cinderblock.exceptions import InvalidConnectorException, VolumeBackendAPIException
from cinderblock.targets import NbdTarget

MiB = 1024**2
RANGE = 8  # ports per test


def _port_range() -> tuple[int, int]:
    """RANGE consecutive ports nobody listens on now."""
    for _ in range(100):
        low = 20000 + int.from_bytes(os.urandom(2), "big") % 30000
        if all(_free(p) for p in range(low, low + RANGE)):
            return low, low + RANGE - 1
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    missing = [t for t in ("qemu-nbd", "qemu-io") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install qemu-utils)")


@dataclass
class Harness:
    volumes_dir: Path
    ports: tuple[int, int]
    drivers: list[FileDriver] = field(default_factory=list)
    volumes: list[VolumeRef] = field(default_factory=list)
    snapshots: list[SnapshotRef] = field(default_factory=list)

    def make_driver(self, **extra: str) -> FileDriver:
        options = {
            "file_volumes_dir": str(self.volumes_dir),
            "target_protocol": "nbd",
            "nbd_port_range": f"{self.ports[0]}-{self.ports[1]}",
            **extra,
        }
        driver = FileDriver(BackendConfig("nbd1", "file", "nbd1", options), "host@nbd1")
        driver.do_setup()
        self.drivers.append(driver)
        return driver

    @property
    def driver(self) -> FileDriver:
        return self.drivers[0]

    def volume(self, size: int = 1) -> VolumeRef:
        ref = VolumeRef(id=str(uuid.uuid4()), size=size)
        update = self.driver.create_volume(ref) or {}
        ref = VolumeRef(id=ref.id, size=size, provider_location=update.get("provider_location"))
        self.volumes.append(ref)
        return ref

    def export(self, volume: VolumeRef, driver: FileDriver | None = None) -> VolumeRef:
        update = (driver or self.driver).create_export(volume, None) or {}
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

    def target(self, driver: FileDriver | None = None) -> NbdTarget:
        target = (driver or self.driver).target
        assert isinstance(target, NbdTarget)
        return target

    def cleanup(self) -> None:
        for driver in self.drivers:
            for snap in self.snapshots:
                driver.remove_export_snapshot(snap)
            for vol in self.volumes:
                driver.remove_export(vol)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "volumes", _port_range())
    h.make_driver()
    try:
        yield h
    finally:
        h.cleanup()


def url(data: dict[str, Any]) -> str:
    return f"nbd://{data['host']}:{data['port']}/{data['export_name']}"


def qemu_io(
    spec: str, *commands: str, read_only: bool = False, objects: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    argv = ["qemu-io"]
    if read_only:
        argv.append("-r")
    for obj in objects:
        argv += ["--object", obj]
    argv += ["-f", "raw"] if spec.startswith("nbd://") else ["--image-opts"]
    for command in commands:
        argv += ["-c", command]
    return subprocess.run([*argv, spec], capture_output=True, text=True, timeout=120, check=False)


def assert_ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Pattern verification failed" not in done.stdout + done.stderr


def file_has(path: Path, offset: int, length: int, byte: int) -> bool:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length) == bytes([byte]) * length


def test_round_trip_write_terminate_reinitialize_read(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    assert vol.provider_auth is None  # no TLS: nothing to store
    conn = {"host": "e2e-host", "ip": "127.0.0.1"}
    info = harness.driver.initialize_connection(vol, conn)
    port = info["data"]["port"]
    assert info == {
        "driver_volume_type": "nbd",
        "data": {
            "host": "127.0.0.1",
            "port": port,
            "export_name": f"volume-{vol.id}",
            "volume_id": vol.id,
        },
    }
    assert harness.ports[0] <= port <= harness.ports[1]
    assert_ok(qemu_io(url(info["data"]), "write -P 0xab 0 4M", "write -P 0xcd 768M 1M"))

    harness.driver.terminate_connection(vol, conn)
    info2 = harness.driver.initialize_connection(vol, conn)
    assert info2 == info
    assert_ok(qemu_io(url(info2["data"]), "read -P 0xab 0 4M", "read -P 0xcd 768M 1M"))
    assert file_has(harness.path(vol), 0, 4 * MiB, 0xAB)
    assert file_has(harness.path(vol), 768 * MiB, MiB, 0xCD)


def _libnbd_python() -> str | None:
    """A Python that can `import nbd` (Debian's python3-libnbd is for /usr/bin/python3)."""
    for python in ("/usr/bin/python3", shutil.which("python3")):
        if python and os.path.exists(python):
            probe = [python, "-c", "import nbd"]
            if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                return python
    return None


LIBNBD_PYTHON = _libnbd_python()


@pytest.mark.skipif(LIBNBD_PYTHON is None, reason="libnbd's Python bindings are not installed")
def test_libnbd_client_reads_what_qemu_wrote(harness: Harness) -> None:
    assert LIBNBD_PYTHON is not None
    vol = harness.export(harness.volume())
    data = harness.driver.initialize_connection(vol, {})["data"]
    assert_ok(qemu_io(url(data), "write -P 0x42 1M 4M"))
    script = (
        "assert h.get_size() == 1024**3\n"
        "assert h.pread(4 * 1024**2, 1024**2) == b'\\x42' * (4 * 1024**2)\n"
        "h.pwrite(b'\\x43' * 65536, 0)\n"
        "h.flush()\n"
    )
    done = subprocess.run(
        [LIBNBD_PYTHON, "-m", "nbd", "-u", url(data), "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert file_has(harness.path(vol), 0, 65536, 0x43)


def test_killed_server_is_restarted_by_ensure_export_on_the_same_port(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    before = harness.driver.initialize_connection(vol, {})
    assert_ok(qemu_io(url(before["data"]), "write -P 0x77 0 4M"))
    ref = harness.driver._volume_export(vol)
    pid = harness.target().serving_pid(ref)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while harness.target().is_exported(ref):
        assert time.monotonic() < deadline
        time.sleep(0.02)

    assert harness.driver.ensure_export(vol) is None
    assert harness.target().serving_pid(ref) not in (None, pid)
    after = harness.driver.initialize_connection(vol, {})
    assert after == before
    assert_ok(qemu_io(url(after["data"]), "read -P 0x77 0 4M"))


def test_enforced_multipath_is_refused(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    with pytest.raises(InvalidConnectorException, match="single path"):
        harness.driver.initialize_connection(vol, {"host": "h", "enforce_multipath": True})
    info = harness.driver.initialize_connection(vol, {"host": "h", "multipath": True})
    assert info["driver_volume_type"] == "nbd"


def test_a_restarted_service_keeps_the_port(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    before = harness.driver.initialize_connection(vol, {})
    fresh = harness.make_driver()  # a new process would build a new driver like this
    assert fresh.ensure_export(vol) is None
    assert fresh.initialize_connection(vol, {}) == before


def test_remove_export_stops_the_server(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    data = harness.driver.initialize_connection(vol, {})["data"]
    ref = harness.driver._volume_export(vol)
    assert harness.target().serving_pid(ref) is not None
    harness.driver.remove_export(vol)
    assert harness.target().serving_pid(ref) is None
    assert not _listening(data["port"])
    state = Path(harness.target().options.state_dir)
    assert not list(state.glob(f"volume-{vol.id}*"))
    refused = qemu_io(url(data), "read 0 4k")
    assert refused.returncode != 0
    harness.driver.remove_export(vol)  # idempotent


def test_each_export_gets_its_own_port_until_the_range_is_used_up(harness: Harness) -> None:
    ports = set()
    for _ in range(RANGE):
        vol = harness.export(harness.volume())
        ports.add(harness.driver.initialize_connection(vol, {})["data"]["port"])
    assert ports == set(range(harness.ports[0], harness.ports[1] + 1))
    extra = harness.volume()
    with pytest.raises(VolumeBackendAPIException, match="no free port in nbd_port_range"):
        harness.driver.create_export(extra, None)


def test_a_port_taken_by_someone_else_is_skipped(harness: Harness) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", harness.ports[0]))
        squatter.listen()
        vol = harness.export(harness.volume())
        data = harness.driver.initialize_connection(vol, {})["data"]
        assert data["port"] != harness.ports[0]
        assert_ok(qemu_io(url(data), "write -P 1 0 1M"))


def test_snapshot_export_is_read_only_and_serves_the_snapshot(harness: Harness) -> None:
    vol = harness.export(harness.volume())
    data = harness.driver.initialize_connection(vol, {})["data"]
    assert_ok(qemu_io(url(data), "write -P 0xab 0 4M"))
    snap = harness.snapshot(vol)
    assert_ok(qemu_io(url(data), "write -P 0xcd 0 4M"))

    assert harness.driver.create_export_snapshot(snap, {}) is None
    info = harness.driver.initialize_connection_snapshot(snap, {})
    sdata = info["data"]
    assert info["driver_volume_type"] == "nbd"
    assert sdata["export_name"] == f"snapshot-{snap.id}" and sdata["volume_id"] == snap.id
    assert sdata["access_mode"] == "ro" and sdata["port"] != data["port"]
    assert_ok(qemu_io(url(sdata), "read -P 0xab 0 4M", read_only=True))
    write = qemu_io(url(sdata), "write -P 0xee 0 4M")
    # The server says read-only, so qemu refuses to open it for writing at all.
    assert write.returncode != 0 and "Permission denied" in write.stderr, write.stderr
    snap_path = harness.path(vol).with_name(snap.provider_location or "")
    assert file_has(snap_path, 0, 4 * MiB, 0xAB)
    assert file_has(harness.path(vol), 0, 4 * MiB, 0xCD)
    harness.driver.terminate_connection_snapshot(snap, {})
    harness.driver.remove_export_snapshot(snap)
    assert not _listening(sdata["port"])


def _psk_client(tmp: Path, identity: str, key: str) -> str:
    directory = tmp / f"psk-{uuid.uuid4().hex[:8]}"
    directory.mkdir(mode=0o700)
    (directory / "keys.psk").write_text(f"{identity}:{key}\n")
    return f"tls-creds-psk,id=tls0,endpoint=client,dir={directory},username={identity}"


def _tls_spec(data: dict[str, Any]) -> str:
    return (
        f"driver=nbd,server.type=inet,server.host={data['host']},server.port={data['port']},"
        f"export={data['export_name']},tls-creds=tls0"
    )


def test_tls_psk(harness: Harness, tmp_path: Path) -> None:
    driver = harness.make_driver(nbd_tls="psk", nbd_state_dir=str(tmp_path / "tls-state"))
    vol = harness.export(harness.volume(), driver)
    assert vol.provider_auth is not None
    method, identity, key = vol.provider_auth.split()
    assert method == "PSK" and len(key) == 64
    data = driver.initialize_connection(vol, {})["data"]
    assert data["auth_method"] == "TLS-PSK"
    assert (data["auth_username"], data["auth_password"]) == (identity, key)

    good = _psk_client(tmp_path, identity, key)
    assert_ok(qemu_io(_tls_spec(data), "write -P 0x99 0 1M", objects=(good,)))
    plain = qemu_io(url(data), "read 0 4k")
    assert plain.returncode != 0 and "TLS" in plain.stderr, plain.stderr
    wrong = _psk_client(tmp_path, identity, "00" * 32)
    refused = qemu_io(_tls_spec(data), "read 0 4k", objects=(wrong,))
    assert refused.returncode != 0, refused.stdout
    assert_ok(qemu_io(_tls_spec(data), "read -P 0x99 0 1M", objects=(good,)))
    # Same key after a restart of the server.
    assert driver.ensure_export(vol) is None
    driver.remove_export(vol)
