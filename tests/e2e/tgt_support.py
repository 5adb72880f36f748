"""A private tgtd and a libiscsi initiator (qemu-io/qemu-img) for the iSCSI e2e tests.

A private tgtd listens on its own control port and a free TCP port, so a
system tgtd (and other tests) are never touched and it can be killed with
SIGKILL.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
    if spec.startswith("iscsi://"):
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
