"""Running the target tools (tgtadm, tgtd, qemu-nbd) and watching their processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cinderblock.targets.base import TargetError

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def message(self) -> str:
        return (self.stderr.strip() or self.stdout.strip()).replace("\n", "; ")


def find_tool(name: str, package: str) -> str:
    """Absolute path of a tool on PATH, or a TargetError saying which package provides it."""
    path = shutil.which(name)
    if path is None:
        raise TargetError(
            f"{name} was not found on PATH; install the {package!r} package "
            f"(Debian/Ubuntu: apt-get install {package})"
        )
    return path


def masked(argv: Sequence[str], hide: Sequence[str]) -> str:
    """The command line for a message, with every secret replaced by ***."""
    shown = []
    for arg in argv:
        for secret in hide:
            if secret:
                arg = arg.replace(secret, "***")
        shown.append(arg)
    return " ".join(shown)


def run(
    argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, hide: Sequence[str] = ()
) -> Result:
    """Run a command to completion; never raises for a non-zero exit (look at .ok)."""
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TargetError(f"{masked(argv, hide)} did not finish within {timeout:g}s") from exc
    except OSError as exc:
        raise TargetError(f"cannot run {argv[0]}: {exc}") from exc
    return Result(done.returncode, done.stdout, done.stderr)


def pid_alive(pid: int, *, must_contain: Sequence[bytes] = ()) -> bool:
    """Whether pid is a live (not zombie) process whose command line has every marker.

    The markers guard against a recycled pid: a pid file outliving its process
    must not make us signal some unrelated program.
    """
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # Field 3 (after the parenthesised command name) is the state; Z and X are dead.
    state = stat.rpartition(b")")[2].split()[:1]
    if state and state[0] in (b"Z", b"X"):
        return False
    return all(marker in cmdline for marker in must_contain)


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip() or "0") or None
    except (FileNotFoundError, ValueError):
        return None


def stop_pid(pid: int, *, must_contain: Sequence[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only if the process is the one we mean."""
    if not pid_alive(pid, must_contain=must_contain):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid, must_contain=must_contain):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid, must_contain=must_contain):
            return
        time.sleep(0.05)
    raise TargetError(f"process {pid} did not exit after SIGKILL")
