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


def _state(stat_path: str) -> bytes | None:
    """The state letter of a /proc/.../stat file, None if there is no such process."""
    try:
        with open(stat_path, "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 3, after the parenthesised command name (which may contain spaces).
    fields = stat.rpartition(b")")[2].split()
    return fields[0] if fields else None


def _running(pid: int) -> bool:
    """Whether any thread of pid is still alive (not a zombie).

    Not enough: the leader's own state (it turns Z while other threads still
    run and hold the sockets) or its cmdline (emptied before files are closed).
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return any(_state(f"/proc/{pid}/task/{tid}/stat") not in (None, b"Z", b"X") for tid in tids)


def pid_alive(pid: int, *, must_contain: Sequence[bytes] = ()) -> bool:
    """Whether pid is a live (not zombie) process whose command line has every marker.

    The markers guard against a recycled pid: a pid file outliving its process
    must not make us signal some unrelated program.
    """
    if pid <= 0 or not _running(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return all(marker in cmdline for marker in must_contain)


def wait_exiting(pid: int | None, timeout: float = 5.0) -> None:
    """Wait for a process that is on its way out (cmdline already empty) to close its files.

    After SIGKILL a multi-threaded server drops its memory first and its
    sockets last; starting a replacement in between finds the port still taken.
    """
    if not pid:
        return
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read():
                    return  # a live process (maybe a recycled pid): not ours to wait for
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip() or "0") or None
    except (FileNotFoundError, ValueError):
        return None


def stop_pid(pid: int, *, must_contain: Sequence[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only if the process is the one we mean.

    Returns once the process has closed its files (it is gone or a zombie).
    """
    if not pid_alive(pid, must_contain=must_contain):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _running(pid):
                return
            time.sleep(0.02)
    raise TargetError(f"process {pid} did not exit after SIGKILL")
