"""A private tgtd and a libiscsi initiator (qemu-io/qemu-img) for the iSCSI e2e tests.

A private tgtd listens on its own control port and a free TCP port, so a
system tgtd (and other tests) are never touched and it can be killed with
SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import client_env, free_port, server_answers, server_command

QEMU_DEFAULT_INITIATOR = "iqn.2008-11.org.linux-kvm"
TOOLS = ("tgtd", "tgtadm", "qemu-io")


def skip_unless_tgt_can_run() -> None:
    if os.geteuid() != 0:
        pytest.skip("tgtd needs root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install tgt qemu-utils)")


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers(control_port: int) -> bool:
    done = subprocess.run(
        ["tgtadm", "-C", str(control_port), "--op", "show", "--mode", "system"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and "State: ready" in done.stdout


def _free_control_port() -> int:
    for _ in range(50):
        port = 1000 + int.from_bytes(os.urandom(2), "big") % 31000  # tgtd: at most 32767
        if not _answers(port):
            return port
    raise RuntimeError("no free tgtd control port")


def _shutdown(control_port: int) -> None:
    """Stop a tgtd: it refuses `delete --mode system` while it has targets, and ignores SIGTERM."""
    base = ["tgtadm", "-C", str(control_port)]
    show = subprocess.run(
        [*base, "--lld", "iscsi", "--op", "show", "--mode", "target"],
        capture_output=True,
        text=True,
        check=False,
    )
    for tid in re.findall(r"^Target (\d+):", show.stdout, re.MULTILINE):
        delete = ["--lld", "iscsi", "--op", "delete", "--mode", "target", "--force", "--tid", tid]
        subprocess.run([*base, *delete], capture_output=True, check=False)
    subprocess.run([*base, "--op", "delete", "--mode", "system"], capture_output=True, check=False)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Tgtd:
    """A private tgtd: `tgtd -f -C <control_port> --iscsi portal=127.0.0.1:<port>`."""

    control_port: int
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["tgtd", "-f", "-C", str(self.control_port)]
        argv += ["--iscsi", f"portal=127.0.0.1:{self.port}"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not (_answers(self.control_port) and _listening("127.0.0.1", self.port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip(f"tgtd cannot run here: {self.log.read_text(errors='replace')}")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            _shutdown(self.control_port)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def adm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def show(self) -> str:
        return self.adm("--op", "show", "--mode", "target").stdout

    def accounts(self) -> str:
        return self.adm("--op", "show", "--mode", "account").stdout


def connector(initiator: str | None = None) -> dict[str, Any]:
    return {
        "initiator": initiator or f"iqn.1994-05.com.example:{uuid.uuid4().hex[:12]}",
        "ip": "127.0.0.1",
        "host": "e2e-host",
        "multipath": False,
    }


def image_opts(data: dict[str, Any], initiator: str, **override: str) -> str:
    values = {
        "driver": "iscsi",
        "transport": "tcp",
        "portal": data["target_portal"],
        "target": data["target_iqn"],
        "lun": str(data["target_lun"]),
        "user": data["auth_username"],
        "password": data["auth_password"],
        "initiator-name": initiator,
        **override,
    }
    return ",".join(f"{k}={v}" for k, v in values.items())


def qemu_io(spec: str, *commands: str, read_only: bool = False) -> subprocess.CompletedProcess[str]:
    argv = ["qemu-io"]
    if read_only:
        argv.append("-r")
    if spec.startswith(("iscsi://", "nbd://")):
        argv += ["-f", "raw"]
    else:
        argv.append("--image-opts")
    for command in commands:
        argv += ["-c", command]
    return subprocess.run([*argv, spec], capture_output=True, text=True, timeout=120, check=False)


def assert_ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0 and "error" not in done.stdout.lower(), (done.stdout, done.stderr)
    assert "Pattern verification failed" not in done.stdout + done.stderr


def file_has(path: Path, offset: int, length: int, byte: int) -> bool:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length) == bytes([byte]) * length


class DataPathService:
    """`cinderblock serve` (SQLite, one file backend) exporting through a private target.

    protocol "iscsi" exports through `tgtd` (which the test owns); "nbd" through
    qemu-nbd on a private port range. Can be killed with SIGKILL and started again.
    """

    def __init__(
        self, directory: Path, protocol: str, tgtd: Tgtd | None = None, extra: str = ""
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.volumes_dir = directory / "volumes"
        self.log = directory / "server.log"
        self.config = directory / "cinderblock.conf"
        if protocol == "iscsi":
            assert tgtd is not None
            target = (
                f"target_protocol = iscsi\ntgt_control_port = {tgtd.control_port}\n"
                f"target_port = {tgtd.port}\n"
            )
        else:
            base = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
            target = f"target_protocol = nbd\nnbd_port_range = {base}-{base + 20}\n"
        self.config.write_text(
            f"""[DEFAULT]
host = dp
enabled_backends = files
bind_host = 127.0.0.1
bind_port = {self.port}
state_path = {directory}
report_interval = 1
quota_volumes = -1
quota_snapshots = -1
quota_gigabytes = -1

[database]
connection = sqlite:///{directory / "cinderblock.sqlite"}

[files]
volume_driver = file
volume_backend_name = files
file_volumes_dir = {self.volumes_dir}
{target}{extra}
"""
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.project = uuid.uuid4().hex

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                server_command(self.config),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=client_env(),
            )
        deadline = time.monotonic() + 60
        while not server_answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cinderblock did not start:\n{self.log.read_text()[-5000:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    # --- the API, as an admin of a project of its own --------------------------------------
    def request(self, method: str, path: str, body: Any = None, version: str = "3.71") -> Any:
        headers = {
            "X-Auth-Token": f"admin:{self.project}",
            "OpenStack-API-Version": f"volume {version}",
            "Accept": "application/json",
        }
        url = f"{self.url}/v3/{self.project}{path}"
        return httpx.request(method, url, json=body, headers=headers, timeout=120)

    def volume(self, volume_id: str) -> dict[str, Any]:
        resp = self.request("GET", f"/volumes/{volume_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()["volume"]

    def wait_volume(self, volume_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            vol = self.volume(volume_id)
            if vol["status"] == status:
                return vol
            assert "error" not in vol["status"], vol
            assert time.monotonic() < deadline, f"volume stays {vol['status']}, not {status}"
            time.sleep(0.1)

    def create_volume(self, size: int = 1) -> dict[str, Any]:
        resp = self.request("POST", "/volumes", {"volume": {"size": size, "name": "dp"}})
        assert resp.status_code == 202, resp.text
        return self.wait_volume(resp.json()["volume"]["id"], "available")

    def attach(self, volume_id: str, conn: dict[str, Any]) -> dict[str, Any]:
        """Nova's attach: reserve with a connector, then complete. The attachment detail."""
        body = {"attachment": {"volume_uuid": volume_id, "instance_uuid": str(uuid.uuid4())}}
        body["attachment"]["connector"] = conn
        resp = self.request("POST", "/attachments", body)
        assert resp.status_code == 200, resp.text
        att = resp.json()["attachment"]
        resp = self.request("POST", f"/attachments/{att['id']}/action", {"os-complete": {}})
        assert resp.status_code == 204, resp.text
        assert self.volume(volume_id)["status"] == "in-use"
        return att

    def initialize_connection(self, volume_id: str, conn: dict[str, Any]) -> dict[str, Any]:
        body = {"os-initialize_connection": {"connector": conn}}
        resp = self.request("POST", f"/volumes/{volume_id}/action", body)
        assert resp.status_code == 200, resp.text
        return resp.json()["connection_info"]


def capacity(data: dict[str, Any], initiator: str) -> int:
    """The size the target reports to an initiator logging in now (qemu-img info)."""
    spec = image_opts(data, initiator)
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", "--image-opts", spec],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["virtual-size"])


@contextmanager
def running_tgtd(log: Path) -> Iterator[Tgtd]:
    """A private tgtd on free ports (skips the test where tgtd cannot run), stopped after."""
    skip_unless_tgt_can_run()
    daemon = Tgtd(_free_control_port(), _free_port(), log)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
