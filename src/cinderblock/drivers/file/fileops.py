"""Low-level file helpers for the file driver: reflink, sparse copy, atomic placement.

Everything here works on file descriptors or on names inside one directory and
raises plain OSError; the driver translates those into driver errors.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import uuid
from collections.abc import Callable, Iterator

# ioctl(dest_fd, FICLONE, src_fd): share all extents of src with dest (Linux >= 4.5).
FICLONE = 0x40049409

TMP_PREFIX = ".tmp-"
COPY_CHUNK = 4 * 1024 * 1024

# errnos meaning "this filesystem/kernel cannot do that", as opposed to real I/O errors.
_UNSUPPORTED = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}
)

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _load_renameat2() -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_renameat2 = _load_renameat2()


def rename_noreplace(src: str, dst: str) -> None:
    """Rename src to dst atomically, failing with FileExistsError if dst exists.

    os.rename would silently replace dst; that could destroy a volume. Uses
    renameat2(RENAME_NOREPLACE), falling back to link+unlink (also atomic and
    non-replacing) on filesystems that lack it.
    """
    if _renameat2 is not None:
        rc = _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), src, None, dst)
    os.link(src, dst, follow_symlinks=False)
    os.unlink(src)


def fsync_dir(path: str) -> None:
    """Make a rename/unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name() -> str:
    return f"{TMP_PREFIX}{uuid.uuid4().hex}"


def remove_stale_tmp(directory: str) -> list[str]:
    """Remove leftovers of interrupted operations; returns the names removed."""
    removed = []
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(entry.name)
    return removed


@contextlib.contextmanager
def atomic_file(directory: str, final_name: str, *, replace: bool = False) -> Iterator[int]:
    """Yield a writable fd of a hidden temp file; on success move it to final_name.

    The final name only ever points at a complete, fsynced file. On any error
    the temp file is removed and final_name is untouched. With replace=False
    an existing final_name is an error (FileExistsError), never overwritten.
    """
    tmp_path = os.path.join(directory, tmp_name())
    final_path = os.path.join(directory, final_name)
    # 0600: volume files hold tenant data.
    fd = os.open(tmp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    placed = False
    try:
        try:
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp_path, final_path)
        else:
            rename_noreplace(tmp_path, final_path)
        placed = True
        fsync_dir(directory)
    finally:
        if not placed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)


def reflink(src_fd: int, dst_fd: int) -> None:
    """Make dst share all of src's extents (and take its size). Raises OSError."""
    fcntl.ioctl(dst_fd, FICLONE, src_fd)


def probe_reflink(directory: str) -> bool:
    """Whether FICLONE works in `directory` (tried on two throwaway temp files)."""
    src = os.path.join(directory, tmp_name())
    dst = os.path.join(directory, tmp_name())
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        sfd = os.open(src, flags, 0o600)
        try:
            os.write(sfd, b"\xa5" * 4096)
            dfd = os.open(dst, flags, 0o600)
            try:
                reflink(sfd, dfd)
                return True
            except OSError as exc:
                if exc.errno in _UNSUPPORTED:
                    return False
                raise
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
    finally:
        for path in (src, dst):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) of the data regions of fd below `size`, skipping holes."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            if exc.errno in _UNSUPPORTED:  # no SEEK_DATA here: treat the rest as data
                yield pos, size - pos
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end


def _copy_range_rw(src_fd: int, dst_fd: int, offset: int, length: int, zero: bytes) -> None:
    end = offset + length
    while offset < end:
        chunk = os.pread(src_fd, min(COPY_CHUNK, end - offset), offset)
        if not chunk:
            return  # source shrank underneath us; dst already has its full size
        # Written-out zero blocks stay holes in the copy.
        if chunk != zero[: len(chunk)]:
            view = memoryview(chunk)
            done = 0
            while done < len(chunk):
                done += os.pwrite(dst_fd, view[done:], offset + done)
        offset += len(chunk)


def _copy_range_kernel(src_fd: int, dst_fd: int, offset: int, length: int) -> bool:
    """copy_file_range the region; False if the kernel/filesystem cannot."""
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src_fd, dst_fd, length - done, offset + done, offset + done)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED and done == 0:
                return False
            raise
        if n == 0:
            break
        done += n
    return True


def sparse_copy(src_fd: int, dst_fd: int, size: int, *, kernel_copy: bool = True) -> None:
    """Copy `size` bytes of src into the empty dst preserving holes; dst ends `size` long.

    kernel_copy=False uses plain read/write: copy_file_range may itself share
    extents on XFS/btrfs, which file_reflink=never is meant to avoid.
    """
    # Size first: writes inside EOF do not trigger XFS speculative preallocation,
    # which would otherwise turn holes after each extent into allocated space.
    os.ftruncate(dst_fd, size)
    zero = bytes(COPY_CHUNK)
    use_kernel = kernel_copy
    for offset, length in data_extents(src_fd, size):
        if use_kernel and _copy_range_kernel(src_fd, dst_fd, offset, length):
            continue
        use_kernel = False
        _copy_range_rw(src_fd, dst_fd, offset, length, zero)


def copy_into(src_fd: int, dst_fd: int, *, use_reflink: bool, kernel_copy: bool) -> bool:
    """Make the empty dst a copy of all of src; returns True if it was reflinked.

    A reflink that fails as unsupported (e.g. across filesystems) falls back to
    a sparse copy.
    """
    if use_reflink:
        try:
            reflink(src_fd, dst_fd)
            return True
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
    sparse_copy(src_fd, dst_fd, os.fstat(src_fd).st_size, kernel_copy=kernel_copy)
    return False


def grow_fd(fd: int, size: int) -> None:
    """Grow the file to `size` bytes (sparse); never shrinks."""
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)
