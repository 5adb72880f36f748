"""Manage-existing support for the file driver: reference confinement and listings.

A manage reference names a file *inside* file_volumes_dir. Everything that
could make the driver touch something else is refused before any change:
absolute paths, '/', '..', NUL, hidden names, symlinks (even ones pointing
inside), non-regular files and hard-linked files (a second link may live
outside the directory). The checks are made on an fd opened with O_NOFOLLOW
and compared with the lstat result, so a swap between check and use fails.

`paginate` is backend-neutral and also used by the memory driver.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cinderblock.drivers.refs import GiB, ManageableEntry
from cinderblock.exceptions import ManageExistingInvalidReference, VolumeBackendAPIException

SNAP_SEP = "@"
HEADER_BYTES = 512
QEMU_IMG_TIMEOUT = 60.0

REASON_MANAGED = "already managed"
REASON_SYMLINK = "symlink"
REASON_HARDLINK = "hard-linked"


def ceil_gib(nbytes: int) -> int:
    """Size in whole GiB, rounded up, at least 1 (Cinder volumes are never 0 GiB)."""
    return max(1, -(-nbytes // GiB))


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
        raise ManageExistingInvalidReference(
            existing_ref=existing_ref, reason="reference must be an object with 'source-name'"
        )
    name = existing_ref.get("source-name", existing_ref.get("source-id"))
    if name is None:
        raise ManageExistingInvalidReference(
            existing_ref=existing_ref, reason="reference must contain 'source-name' or 'source-id'"
        )
    if not isinstance(name, str) or not name:
        raise ManageExistingInvalidReference(
            existing_ref=existing_ref, reason="'source-name' must be a non-empty string"
        )
    problem = name_problem(name)
    if problem:
        raise ManageExistingInvalidReference(existing_ref=existing_ref, reason=problem)
    return name


# --- file checks ----------------------------------------------------------------
_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def stat_problem(st: os.stat_result) -> str | None:
    """Why a file (given its lstat) cannot be managed, or None."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return REASON_SYMLINK
    if not stat.S_ISREG(mode):
        kind = next((label for test, label in _KINDS if test(mode)), "special file")
        return f"not a regular file ({kind})"
    if st.st_nlink > 1:
        return REASON_HARDLINK
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


def format_problem(fmt: str) -> str | None:
    return None if fmt == "raw" else f"file is {fmt}, not raw"


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
    directory: str, name: str, existing_ref: Any, *, writable: bool
) -> tuple[int, os.stat_result]:
    """Open the regular, singly-linked file `name` in `directory`, or refuse.

    `name` must already have passed name_problem. Returns (fd, fstat); the
    caller closes fd.
    """
    path = os.path.join(directory, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise ManageExistingInvalidReference(
            existing_ref=existing_ref, reason=f"no file named {name!r} in the volumes directory"
        ) from exc
    problem = stat_problem(st)
    if problem:
        raise ManageExistingInvalidReference(existing_ref=existing_ref, reason=problem)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise ManageExistingInvalidReference(
            existing_ref=existing_ref, reason=f"cannot open {name!r}: {exc.strerror}"
        ) from exc
    fst = os.fstat(fd)
    if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or stat_problem(fst):
        os.close(fd)
        raise ManageExistingInvalidReference(
            existing_ref=existing_ref, reason=f"{name!r} changed while being checked"
        )
    return fd, fst


# --- listings ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DirEntry:
    name: str
    st: os.stat_result


def scan_dir(directory: str, *, snapshots: bool) -> list[DirEntry]:
    """Non-hidden entries of the directory: snapshot files ('@') or the others."""
    found = []
    with os.scandir(directory) as it:
        for entry in it:
            name = entry.name
            if name.startswith(".") or (SNAP_SEP in name) != snapshots:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed while listing
                continue
            found.append(DirEntry(name, st))
    return found


def preliminary_entry(
    item: DirEntry, managed: Mapping[str, str], *, snapshots: bool
) -> ManageableEntry:
    """Listing entry from lstat only; the content check is done later, per page."""
    cinder_id = managed.get(item.name)
    problem = REASON_MANAGED if cinder_id else stat_problem(item.st)
    regular = stat.S_ISREG(item.st.st_mode)
    entry: ManageableEntry = {
        "reference": {"source-name": item.name},
        "size": ceil_gib(item.st.st_size) if regular else 0,
        "safe_to_manage": problem is None,
        "reason_not_safe": problem,
        "cinder_id": cinder_id,
        "extra_info": None,
    }
    if snapshots:
        entry["source_reference"] = {"source-name": item.name.split(SNAP_SEP, 1)[0]}
    return entry


def check_content(directory: str, entry: ManageableEntry) -> None:
    """Mark a so-far safe entry unsafe if its content is not raw (magic bytes only)."""
    if not entry["safe_to_manage"]:
        return
    path = os.path.join(directory, entry["reference"]["source-name"])
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        entry["safe_to_manage"] = False
        entry["reason_not_safe"] = f"cannot open: {exc.strerror}"
        return
    try:
        problem = format_problem(detect_format(read_header(fd)))
    finally:
        os.close(fd)
    if problem:
        entry["safe_to_manage"] = False
        entry["reason_not_safe"] = problem


_SORT_KEYS = {"reference": "reference", "identifier": "reference", "size": "size"}


def _ref_name(ref: Mapping[str, Any] | None) -> Any:
    if not ref:
        return None
    return ref.get("source-name", ref.get("source-id"))


def paginate(
    entries: list[ManageableEntry],
    marker: Mapping[str, Any] | None,
    limit: int | None,
    offset: int | None,
    sort_keys: Sequence[str] | None,
    sort_dirs: Sequence[str] | None,
) -> list[ManageableEntry]:
    """Sort (keys 'reference'/'identifier' and 'size'), then marker, offset, limit.

    Ties always fall back to the reference name ascending, so a marker names a
    unique position. An unknown marker raises ValueError("marker not found").
    """
    keys = list(sort_keys or ["reference"])
    dirs = list(sort_dirs or [])
    dirs += ["asc"] * (len(keys) - len(dirs))
    result = sorted(entries, key=lambda e: _ref_name(e["reference"]))
    # Stable sorts applied from the least to the most significant key.
    for key, direction in reversed(list(zip(keys, dirs, strict=False))):
        field = _SORT_KEYS.get(key)
        if field is None:
            raise ValueError(f"invalid sort key {key!r}")
        if direction not in ("asc", "desc"):
            raise ValueError(f"invalid sort direction {direction!r}")
        if field == "size":
            result.sort(key=lambda e: e["size"], reverse=direction == "desc")
        else:
            result.sort(key=lambda e: _ref_name(e["reference"]), reverse=direction == "desc")
    if marker:
        wanted = _ref_name(marker)
        for index, entry in enumerate(result):
            if _ref_name(entry["reference"]) == wanted:
                result = result[index + 1 :]
                break
        else:
            raise ValueError("marker not found")
    if offset:
        result = result[offset:]
    if limit is not None and limit >= 0:
        result = result[:limit]
    return result
