"""Manage-existing support for the file driver: reference confinement and listings.

A manage reference names a file *inside* file_volumes_dir. Everything that
could make the driver touch something else is refused before any change:
absolute paths, '/', '..', NUL, hidden names, symlinks (even ones pointing
inside), non-regular files and hard-linked files (a second link may live
outside the directory). The checks are made on an fd opened with O_NOFOLLOW
and compared with the lstat result, so a swap between check and use fails.

Every refusal and every unsafe listing entry carries a reason code from
cinderblock.drivers.manageable (symlink, hard_linked, not_raw...).

Listings are built so that their cost follows the page, not the directory:
names are read without stat (and reused while the directory provably has not
changed, see NameCache); only a sort by size stats every file; the page's
entries alone are stat-ed, checked against one /proc scan and have their
header read.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.file.inuse import OwnFds
from cinderblock.drivers.manageable import ceil_gib
from cinderblock.drivers.refs import ManageableEntry
from cinderblock.exceptions import ManageExistingInvalidReference, VolumeBackendAPIException

__all__ = ["ceil_gib"]  # re-exported for the driver's callers

SNAP_SEP = "@"
HEADER_BYTES = 512
QEMU_IMG_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a file cannot be managed: code, short listing text, manage-time detail."""

    code: str
    reason: str  # reason_not_safe in listings
    detail: str  # follows the quoted file name in a manage refusal

    def refusal(self, name: str, existing_ref: Any) -> ManageExistingInvalidReference:
        return mg.invalid_reference(existing_ref, self.code, f"{name!r} {self.detail}")


# --- names --------------------------------------------------------------------
def name_problem(name: str) -> str | None:
    """Why `name` is not an acceptable single file name inside the directory."""
    if "\x00" in name:
        return "name contains a NUL byte"
    if name.startswith("/"):
        return "absolute paths are not allowed; give a file name inside the volumes directory"
    if ".." in name.split("/"):
        return "'..' is not allowed"
    if "/" in name:
        return "name must not contain '/'"
    if name.startswith("."):
        return "hidden names (starting with '.') are not allowed"
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        return "name is not encodable"
    if len(encoded) > 255:
        return "name is too long"
    return None


def reference_name(existing_ref: Any) -> str:
    """The file name a manage reference designates ('source-name' or 'source-id')."""
    if not isinstance(existing_ref, Mapping):
        raise mg.invalid_reference(
            existing_ref, mg.BAD_REFERENCE, "reference must be an object with 'source-name'"
        )
    name = existing_ref.get("source-name", existing_ref.get("source-id"))
    if name is None:
        raise mg.invalid_reference(
            existing_ref, mg.BAD_REFERENCE, "reference must contain 'source-name' or 'source-id'"
        )
    if not isinstance(name, str) or not name:
        raise mg.invalid_reference(
            existing_ref, mg.BAD_REFERENCE, "'source-name' must be a non-empty string"
        )
    problem = name_problem(name)
    if problem:
        raise mg.invalid_reference(existing_ref, mg.BAD_NAME, problem)
    return name


def display_name(name: str) -> str:
    """A name JSON can carry: bytes that are not UTF-8 are shown as backslash escapes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


# --- file checks ----------------------------------------------------------------
_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def stat_problem(st: os.stat_result) -> Problem | None:
    """Why a file (given its lstat) cannot be managed, or None."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return Problem(mg.SYMLINK, "symlink", "is a symlink; only regular files can be managed")
    if not stat.S_ISREG(mode):
        kind = next((label for test, label in _KINDS if test(mode)), "special file")
        return Problem(
            mg.NOT_REGULAR_FILE, f"not a regular file ({kind})", f"is not a regular file ({kind})"
        )
    if st.st_nlink > 1:
        return Problem(
            mg.HARD_LINKED,
            "hard-linked",
            f"is hard-linked ({st.st_nlink} names); a file that also has other names, "
            "maybe outside the volumes directory, cannot be managed",
        )
    return None


def detect_format(header: bytes) -> str:
    """Image format from the first bytes: 'raw' unless a known container magic matches."""
    if header.startswith(b"QFI\xfb"):
        return "qcow" if header[4:8] == b"\x00\x00\x00\x01" else "qcow2"
    if header.startswith(b"QED\x00"):
        return "qed"
    if header.startswith(b"KDMV") or header.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if header.startswith(b"vhdxfile"):
        return "vhdx"
    if header.startswith(b"conectix"):
        return "vpc"
    if header.startswith(b"LUKS\xba\xbe"):
        return "luks"
    if len(header) >= 0x44 and header[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    return "raw"


def format_problem(fmt: str) -> Problem | None:
    if fmt == "raw":
        return None
    return Problem(
        mg.NOT_RAW, f"file is {fmt}, not raw", f"is {fmt}, not raw; only raw files can be managed"
    )


def in_use_problem(*, snapshots: bool) -> Problem:
    return Problem(mg.IN_USE, mg.reason_in_use(snapshots=snapshots), "is in use by another process")


def read_header(fd: int) -> bytes:
    return os.pread(fd, HEADER_BYTES, 0)


def qemu_img_format(fd: int) -> str | None:
    """Format as qemu-img probes it, or None when qemu-img is not installed.

    Goes through /dev/fd so qemu-img reads exactly the file we checked, not
    whatever the name points to by then.
    """
    binary = shutil.which("qemu-img")
    if binary is None:
        return None
    cmd = [binary, "info", "--output=json", "-U", f"/dev/fd/{fd}"]
    try:
        proc = subprocess.run(
            cmd, pass_fds=(fd,), capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VolumeBackendAPIException(data=f"qemu-img info failed: {exc}") from exc
    if proc.returncode != 0:
        raise VolumeBackendAPIException(data=f"qemu-img info failed: {proc.stderr.strip()}")
    try:
        return str(json.loads(proc.stdout)["format"])
    except (ValueError, KeyError, TypeError) as exc:
        raise VolumeBackendAPIException(data=f"unexpected qemu-img output: {exc}") from exc


def open_confined(
    directory: str, name: str, existing_ref: Any, *, writable: bool, own_fds: OwnFds
) -> tuple[int, os.stat_result]:
    """Open the regular, singly-linked file `name` in `directory`, or refuse.

    `name` must already have passed name_problem. Returns (fd, fstat); the fd
    is registered in own_fds and the caller closes it with own_fds.close.
    """
    path = os.path.join(directory, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise mg.invalid_reference(
            existing_ref, mg.NOT_FOUND, f"no file named {name!r} in the volumes directory"
        ) from exc
    problem = stat_problem(st)
    if problem:
        raise problem.refusal(name, existing_ref)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise mg.invalid_reference(
            existing_ref, mg.UNREADABLE, f"cannot open {name!r}: {exc.strerror}"
        ) from exc
    own_fds.add(fd)
    fst = os.fstat(fd)
    if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or stat_problem(fst):
        own_fds.close(fd)
        raise mg.invalid_reference(
            existing_ref, mg.CHANGED, f"{name!r} changed while being checked; try again"
        )
    return fd, fst


# --- listings ---------------------------------------------------------------------
def scan_names(directory: str, *, snapshots: bool) -> tuple[list[str], dict[str, str]]:
    """Listed names of non-hidden snapshot files ('@') or of the others, without stat.

    Returns (names, odd): names as listings show them, and for the few whose
    on-disk name is not UTF-8, odd maps the shown name to the real one.
    """
    names: list[str] = []
    odd: dict[str, str] = {}
    with os.scandir(directory) as it:
        for entry in it:
            name = entry.name
            if name.startswith(".") or (SNAP_SEP in name) != snapshots:
                continue
            if not name.isascii():
                shown = display_name(name)
                if shown != name:
                    odd[shown] = name
                    name = shown
            names.append(name)
    return names, odd


class NameCache:
    """Sorted listing names of a directory, reused while it provably has not changed.

    Creating, removing or renaming an entry sets the directory's mtime (and
    ctime) to the current time. The cache key is the directory's (dev, ino,
    mtime, ctime) taken *before* reading it, and a listing is kept only when
    that mtime was already MIN_AGE_NS old: any later change then sets an mtime
    that differs from the key, even with coarse filesystem timestamps. A
    directory changed within the last MIN_AGE_NS is simply read again.
    """

    MIN_AGE_NS = 2 * 10**9

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: dict[bool, tuple[tuple[int, ...], tuple[str, ...], dict[str, str]]] = {}
        self.reads = 0  # directory reads done (for tests and benchmarks)

    def names(self, directory: str, *, snapshots: bool) -> tuple[tuple[str, ...], dict[str, str]]:
        """(names sorted ascending, odd) as scan_names gives them; do not mutate odd."""
        st = os.stat(directory)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            hit = self._cached.get(snapshots)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        names, odd = scan_names(directory, snapshots=snapshots)
        result = tuple(sorted(names))
        self.reads += 1
        with self._lock:
            if time.time_ns() - st.st_mtime_ns > self.MIN_AGE_NS:
                self._cached[snapshots] = (key, result, odd)
            else:
                self._cached.pop(snapshots, None)
        return result, odd


@dataclass(slots=True)
class Item:
    """A listing entry with what the driver needs to finish checking it."""

    raw: str  # the name on disk
    st: os.stat_result  # its lstat
    entry: ManageableEntry


def _name_listing_problem(name: str, raw: str, *, snapshots: bool) -> Problem | None:
    if name != raw:
        return Problem(mg.BAD_NAME, "file name is not valid UTF-8", "has a name that is not UTF-8")
    if snapshots and name.startswith(SNAP_SEP):
        return Problem(
            mg.BAD_NAME,
            "snapshot file name has no volume part before '@'",
            "has no volume part before '@'",
        )
    return None


def listed_size(st: os.stat_result) -> int:
    """The size a listing shows: whole GiB rounded up; 0 for what is not a regular file."""
    return ceil_gib(st.st_size) if stat.S_ISREG(st.st_mode) else 0


def lstat_all(
    directory: str, names: Iterable[str], odd: Mapping[str, str]
) -> dict[str, os.stat_result]:
    """lstat of each listed name (by shown name); files gone meanwhile are left out."""
    base = os.path.join(directory, "")
    stats = {}
    for name in names:
        try:
            stats[name] = os.lstat(base + odd.get(name, name))
        except FileNotFoundError:
            continue
    return stats


def build_item(
    directory: str,
    name: str,
    raw: str,
    managed: Mapping[str, str],
    *,
    snapshots: bool,
    st: os.stat_result | None = None,
) -> Item | None:
    """Listing entry from lstat only (None if the file is gone); content is checked later."""
    if st is None:
        try:
            st = os.lstat(os.path.join(directory, raw))
        except FileNotFoundError:  # removed while listing
            return None
    entry = mg.make_entry(
        name,
        listed_size(st),
        cinder_id=managed.get(raw),
        source_name=name.split(SNAP_SEP, 1)[0] if snapshots else None,
        snapshots=snapshots,
    )
    if entry["safe_to_manage"]:
        problem = _name_listing_problem(name, raw, snapshots=snapshots) or stat_problem(st)
        if problem:
            mg.mark_unsafe(entry, problem.code, problem.reason)
    return Item(raw, st, entry)


def check_content(directory: str, item: Item, own_fds: OwnFds) -> None:
    """Mark a so-far safe entry unsafe if it cannot be read or is not raw (magic only)."""
    entry = item.entry
    if not entry["safe_to_manage"]:
        return
    path = os.path.join(directory, item.raw)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # gone since the lstat: the entry stays as it was seen
    except OSError as exc:
        mg.mark_unsafe(entry, mg.UNREADABLE, f"cannot open: {exc.strerror}")
        return
    own_fds.add(fd)
    try:
        header = read_header(fd)
    except OSError as exc:
        mg.mark_unsafe(entry, mg.UNREADABLE, f"cannot read: {exc.strerror}")
        return
    finally:
        own_fds.close(fd)
    problem = format_problem(detect_format(header))
    if problem:
        mg.mark_unsafe(entry, problem.code, problem.reason)
