"""Is a file open by some process? One pass over /proc/<pid>/fd answers it for many files.

A file counts as in use when any process (this one included) holds an open
file descriptor on it. Files are compared by (st_dev, st_ino), so the name a
process used, a rename or a bind mount make no difference. Processes that
vanish during the scan, or whose fd directory we may not read (an unprivileged
service cannot see other users' processes), are skipped: the answer is then
best effort, never an error. Without /proc nothing counts as in use.

The driver's own short-lived descriptors (opened to read a header or to adopt
a file) are not "another process": the driver registers them in an OwnFds and
the scan skips them.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Collection, Iterator

PROC = "/proc"

FileId = tuple[int, int]  # (st_dev, st_ino)


class OwnFds:
    """Descriptors this driver holds open for its own checks, skipped by the scan."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: set[int] = set()

    def add(self, fd: int) -> None:
        with self._lock:
            self._fds.add(fd)

    def close(self, fd: int) -> None:
        """Forget, then close: a scan in between sees the fd as in use, never the reverse."""
        with self._lock:
            self._fds.discard(fd)
        os.close(fd)

    def snapshot(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._fds)


def _open_regular_files(proc_root: str, ignore_fds: Collection[int]) -> Iterator[os.stat_result]:
    """stat of every open regular file of every visible process."""
    own = str(os.getpid())
    try:
        with os.scandir(proc_root) as it:
            pids = [e.name for e in it if e.name.isdigit()]
    except OSError:
        return
    for pid in pids:
        fd_dir = f"{proc_root}/{pid}/fd"
        try:
            with os.scandir(fd_dir) as it:
                fds = [e.name for e in it]
        except OSError:  # process gone, not ours to look at, or no fd directory
            continue
        skip = ignore_fds if pid == own else ()
        for fd in fds:
            if skip and fd.isdigit() and int(fd) in skip:
                continue
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:  # closed meanwhile, or not allowed
                continue
            if stat.S_ISREG(st.st_mode):
                yield st


def open_file_ids(
    dev: int | None = None, *, ignore_fds: Collection[int] = (), proc_root: str = PROC
) -> set[FileId]:
    """(st_dev, st_ino) of all open regular files, only those on `dev` when given."""
    return {
        (st.st_dev, st.st_ino)
        for st in _open_regular_files(proc_root, ignore_fds)
        if dev is None or st.st_dev == dev
    }


def is_open(st: os.stat_result, *, ignore_fds: Collection[int] = (), proc_root: str = PROC) -> bool:
    """Whether the file `st` describes is open by any process (stops at the first)."""
    wanted = (st.st_dev, st.st_ino)
    return any((o.st_dev, o.st_ino) == wanted for o in _open_regular_files(proc_root, ignore_fds))
