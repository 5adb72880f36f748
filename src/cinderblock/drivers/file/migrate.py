"""Driver-assisted migration of the file driver: move a volume file to another file backend.

The destination is named by its `location_info` (``FileDriver:<hostname>:<directory>``);
only a directory on this machine can be reached. Same filesystem: one atomic
non-replacing rename. Another filesystem: a hole-preserving copy under a temp name
in the destination directory, fsynced and renamed into place, and only then the
source is deleted; a failure before the rename leaves no file in the destination
(the temp file is removed, or by the destination's do_setup after a crash).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from typing import Any

from cinderblock.drivers.file import fileops
from cinderblock.drivers.file.layout import FileLayout, translated
from cinderblock.drivers.refs import ModelUpdate, VolumeRef
from cinderblock.exceptions import VolumeBackendAPIException

LOG = logging.getLogger(__name__)

LOCATION_PREFIX = "FileDriver"


def location_info(volumes_dir: str) -> str:
    return f"{LOCATION_PREFIX}:{socket.gethostname()}:{volumes_dir}"


def reachable_directory(host: dict[str, Any]) -> str | None:
    """The destination's directory if it is a file backend on this machine, else None."""
    info = str((host.get("capabilities") or {}).get("location_info") or "")
    kind, _, rest = info.partition(":")
    hostname, _, directory = rest.partition(":")
    if kind != LOCATION_PREFIX or hostname != socket.gethostname() or not directory:
        return None
    if not os.path.isabs(directory) or not os.path.isdir(directory):
        return None
    return directory


class FileMigrateMixin(FileLayout):
    """MigrateVD for files."""

    reflink_mode: str

    def _destination(self, host: dict[str, Any]) -> str | None:
        directory = reachable_directory(host)
        if directory is None:
            return None
        if os.path.realpath(directory) == os.path.realpath(self.volumes_dir):
            return None  # the same directory under another backend: nothing to move
        return directory

    @translated("migrate_volume")
    def migrate_volume(
        self, volume: VolumeRef, host: dict[str, Any]
    ) -> tuple[bool, ModelUpdate | None]:
        dest_dir = self._destination(host)
        if dest_dir is None:
            LOG.info("volume %s: %s is not a file backend of this machine", volume.id, host)
            return False, None
        name = self._volume_file(volume)
        if self._snapshot_files_of(name):
            raise VolumeBackendAPIException(data=f"{name} has snapshot files; not moved")
        src = self._path(name)
        dst = os.path.join(dest_dir, name)
        src_st = os.lstat(src)
        if not stat.S_ISREG(src_st.st_mode):
            raise VolumeBackendAPIException(data=f"{name} is not a regular file")
        if os.path.lexists(dst):
            raise VolumeBackendAPIException(data=f"{dst} already exists; not replaced")
        if os.stat(dest_dir).st_dev == src_st.st_dev:
            # Same filesystem: atomic, keeps every extent (and so the holes) as they are.
            try:
                fileops.rename_noreplace(src, dst)
            except OSError as err:
                if err.errno != errno.EXDEV:  # e.g. two mounts of one filesystem: copy
                    raise
            else:
                fileops.fsync_dir(dest_dir)
                fileops.fsync_dir(self.volumes_dir)
                return True, {"provider_location": name}
        src_fd = self._open_existing(name)
        try:
            with fileops.atomic_file(dest_dir, name) as fd:
                fileops.sparse_copy(
                    src_fd,
                    fd,
                    os.fstat(src_fd).st_size,
                    kernel_copy=self.reflink_mode != "never",
                )
                os.fchmod(fd, stat.S_IMODE(src_st.st_mode))
        finally:
            os.close(src_fd)
        # The complete copy is in place: only now does the source go.
        os.unlink(src)
        fileops.fsync_dir(self.volumes_dir)
        return True, {"provider_location": name}

    @translated("migration_destination_holds")
    def migration_destination_holds(self, volume: VolumeRef, host: dict[str, Any]) -> bool:
        dest_dir = self._destination(host)
        if dest_dir is None:
            return False
        try:
            st = os.lstat(os.path.join(dest_dir, self._volume_file(volume)))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode)
