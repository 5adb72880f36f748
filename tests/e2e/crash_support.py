"""The crash harness's shared parts: its settings (environment overridable), the
statuses it reasons about, data marks, and `cinderblock serve` as a killable subprocess.

Used by crash_worker.py, crash_checks.py and test_crash_recovery.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .support import client_env, free_port, server_answers, server_command

SEED = int(os.environ.get("CINDERBLOCK_CRASH_SEED", "20250611"))
CYCLES = int(os.environ.get("CINDERBLOCK_CRASH_CYCLES", "9"))
WORKERS = int(os.environ.get("CINDERBLOCK_CRASH_WORKERS", "4"))
KILL_AFTER = (2.0, 9.0)  # seconds of work between a start and the next kill
SETTLE = 60.0  # seconds the final state may take to settle
# Per worker (one project each); the default quotas allow 10 of each.
MAX_VOLUMES = 8
MAX_SNAPSHOTS = 8
MAX_SIZE = 4  # GiB
GiB = 1024**3
MiB = 1024**2
SEED_MARK_AT = MiB  # seeded files carry their mark here; volume patterns go at 0
HOST = "crash"
BACKEND = f"{HOST}@files"

VOLUME_BUSY = {
    "creating",
    "deleting",
    "extending",
    "unmanaging",
    "reverting",
    "attaching",
    "detaching",
    "retyping",
    "downloading",
    "uploading",
    "backing-up",
    "restoring-backup",
    "maintenance",
}
SNAPSHOT_BUSY = {"creating", "deleting", "restoring", "unmanaging", "updating", "backing-up"}
# Internal (database) statuses that mean work in flight.
DB_VOLUME_TRANSITIONAL = VOLUME_BUSY | {"managing", "error_managing_deleting"}
DB_SNAPSHOT_TRANSITIONAL = SNAPSHOT_BUSY
VOLUME_MUST_EXIST = {"available", "in-use", "error_extending"}
SNAPSHOT_MUST_EXIST = {"available"}
DELETABLE_ERRORS = {"error", "error_extending", "error_restoring"}
# Where a crash must not leave anything: the user can neither retry nor delete it.
DEAD_ENDS = {"error_unmanaging", "error_deleting"}


def pattern_of(volume_id: str) -> bytes:
    return f"VOL:{volume_id}:".encode().ljust(64, b".")


def seed_mark(name: str) -> bytes:
    return f"SEED:{name}:".encode().ljust(64, b".")


def seedsnap_mark(name: str) -> bytes:
    return f"SEEDSNAP:{name}:".encode().ljust(64, b".")


def read_at(path: Path, offset: int, length: int = 64) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


# --- the service under test -------------------------------------------------------------
class Service:
    """`cinderblock serve` in a subprocess that can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.volumes_dir = directory / "volumes"
        self.db_path = directory / "cinderblock.sqlite"
        self.config = directory / "cinderblock.conf"
        self.log = directory / "server.log"
        self.config.write_text(
            f"""[DEFAULT]
host = {HOST}
enabled_backends = files
bind_host = 127.0.0.1
bind_port = {self.port}
state_path = {directory}
report_interval = 1

[database]
connection = sqlite:///{self.db_path}

[files]
volume_driver = file
volume_backend_name = files
file_volumes_dir = {self.volumes_dir}
"""
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.up = threading.Event()
        self.start_times: list[float] = []

    def start(self) -> None:
        began = time.monotonic()
        with self.log.open("ab") as log:
            log.write(f"\n===== start {len(self.start_times) + 1} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                server_command(self.config),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=client_env(),
            )
        deadline = time.monotonic() + 60
        while not server_answers(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"cinderblock exited:\n{self.log.read_text()[-5000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cinderblock did not answer:\n{self.log.read_text()[-5000:]}")
            time.sleep(0.05)
        self.start_times.append(time.monotonic() - began)
        self.up.set()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, in-flight work is cut wherever it is."""
        self.up.clear()
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.up.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def rows(self, query: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(query, args))
        finally:
            conn.close()


class Interrupted(Exception):
    """The service went away under a request (killed): what happened is unknown."""


class Stopped(Exception):
    pass


@dataclass
class Expect:
    """What a volume or snapshot made by a request should hold at offset 0 (None: unknown)."""

    data: bytes | None
    what: str
