"""File driver: each volume is a sparse raw file in one local directory.

Naming convention inside ``file_volumes_dir``:

* a volume is the file ``<provider_location>``, or ``<volume.name>``
  (``volume-<id>``) when provider_location is unset; create_volume returns
  ``{"provider_location": <file name>}``;
* a snapshot is the file ``<parent volume file name>@<snapshot name>``, e.g.
  ``volume-<vid>@snapshot-<sid>``; create_snapshot returns it as
  provider_location. '@' is therefore never part of a volume file name, and
  every file with '@' is a snapshot whose parent is the part before the
  first '@';
* names starting with '.' are ours and hidden: ``.tmp-<hex>`` files are
  operations in progress (removed by do_setup after a crash).

A failed operation never loses data: new files are written under a temp name,
fsynced and renamed into place without replacing anything (revert is the one
deliberate atomic replace); extend only grows a file; manage refuses a bad
reference before changing anything, including a file some process holds open
(managed.py, inuse.py).

Snapshots, clones and volumes from snapshots are reflinks (FICLONE) where the
filesystem supports it (XFS with reflink=1, btrfs...); otherwise a copy that
keeps holes. Options: file_volumes_dir (required), file_reflink
(auto|always|never), max_over_subscription_ratio, reserved_percentage,
file_manage_rename; exports (export.py, cinderblock.targets): target_protocol
(iscsi|nbd) and the options of the chosen target.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import stat
from typing import Any

from cinderblock.drivers.base import (
    BaseVD,
    CloneVD,
    ExportVD,
    ExtendVD,
    LocalVD,
    ManageableSnapshotsVD,
    ManageableVD,
    MigrateVD,
    RevertVD,
    SnapshotVD,
)
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.file import fileops, inuse, manage
from cinderblock.drivers.file.export import FileExportMixin
from cinderblock.drivers.file.layout import translated
from cinderblock.drivers.file.managed import FileManageMixin
from cinderblock.drivers.file.migrate import FileMigrateMixin, location_info
from cinderblock.drivers.refs import GiB, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import VolumeBackendAPIException, VolumeIsBusy
from cinderblock.targets import TargetError, make_target

LOG = logging.getLogger(__name__)

REFLINK_MODES = ("auto", "always", "never")


class FileDriver(
    FileManageMixin,  # first, so its methods implement the Manageable* abstract ones
    FileExportMixin,  # likewise for ExportVD
    FileMigrateMixin,  # and for MigrateVD
    BaseVD,
    SnapshotVD,
    CloneVD,
    ExtendVD,
    RevertVD,
    LocalVD,
    ManageableVD,
    ManageableSnapshotsVD,
    ExportVD,
    MigrateVD,
):
    VERSION = "1.0.0"
    STORAGE_PROTOCOL = "file"

    def __init__(self, config: BackendConfig, host: str) -> None:
        super().__init__(config, host)
        raw_dir = (config.get("file_volumes_dir") or "").strip()
        self.volumes_dir = os.path.abspath(raw_dir) if raw_dir else ""
        self.reflink_mode = config.get_str("file_reflink", "auto").strip().lower()
        if self.reflink_mode not in REFLINK_MODES:
            raise ValueError(
                f"[{config.name}] file_reflink must be one of {', '.join(REFLINK_MODES)}, "
                f"got {self.reflink_mode!r}"
            )
        self.max_over_subscription_ratio = config.get_float("max_over_subscription_ratio", 20.0)
        self.reserved_percentage = config.get_int("reserved_percentage", 0)
        self.manage_rename = config.get_bool("file_manage_rename", True)
        self.reflink_supported = False
        self.own_fds = inuse.OwnFds()
        self.name_cache = manage.NameCache()
        self._stats: dict[str, Any] | None = None
        # Data path (export.py): iSCSI via tgt or NBD via qemu-nbd; state under volumes_dir.
        self.target = make_target(config, self.volumes_dir)

    # --- lifecycle -------------------------------------------------------------
    @translated("do_setup")
    def do_setup(self) -> None:
        if not self.volumes_dir:
            raise VolumeBackendAPIException(
                data=f"[{self.config.name}] file_volumes_dir is required"
            )
        os.makedirs(self.volumes_dir, mode=0o750, exist_ok=True)
        if self.config.get_bool("tgt_manage_daemon", False):
            try:
                self.target.check()  # starts tgtd when it does not answer
            except TargetError as exc:
                LOG.error("[%s] exports will fail until this is fixed: %s", self.config.name, exc)
        removed = fileops.remove_stale_tmp(self.volumes_dir)
        if removed:
            LOG.warning("removed %d unfinished temp files from %s", len(removed), self.volumes_dir)
        if self.reflink_mode == "never":
            self.reflink_supported = False
            return
        self.reflink_supported = fileops.probe_reflink(self.volumes_dir)
        if self.reflink_mode == "always" and not self.reflink_supported:
            raise VolumeBackendAPIException(
                data=f"file_reflink=always but {self.volumes_dir} does not support reflinks"
            )

    def check_for_setup_error(self) -> None:
        if not self.volumes_dir or not os.path.isdir(self.volumes_dir):
            raise VolumeBackendAPIException(data=f"{self.volumes_dir!r} is not a directory")
        if not os.access(self.volumes_dir, os.W_OK | os.X_OK):
            raise VolumeBackendAPIException(data=f"{self.volumes_dir} is not writable")

    # --- copies --------------------------------------------------------------------
    def _copy_to_new(self, src: str, dst: str, size_bytes: int | None) -> None:
        """Create dst as a copy of src, grown to size_bytes (None: src's size)."""
        src_fd = self._open_existing(src)
        try:
            src_size = os.fstat(src_fd).st_size
            if size_bytes is not None and size_bytes < src_size:
                raise VolumeBackendAPIException(
                    data=f"requested size {size_bytes} bytes is smaller than source {src} "
                    f"({src_size} bytes)"
                )
            with fileops.atomic_file(self.volumes_dir, dst) as fd:
                self._copy(src_fd, fd)
                fileops.grow_fd(fd, size_bytes or src_size)
        finally:
            os.close(src_fd)

    def _copy(self, src_fd: int, dst_fd: int) -> None:
        fileops.copy_into(
            src_fd,
            dst_fd,
            use_reflink=self.reflink_supported,
            kernel_copy=self.reflink_mode != "never",
        )

    # --- required core ----------------------------------------------------------------
    @translated("create_volume")
    def create_volume(self, volume: VolumeRef) -> ModelUpdate | None:
        name = self._volume_file(volume)
        with fileops.atomic_file(self.volumes_dir, name) as fd:
            os.ftruncate(fd, volume.size * GiB)
        return {"provider_location": name}

    @translated("delete_volume")
    def delete_volume(self, volume: VolumeRef) -> None:
        name = self._volume_file(volume)
        if self._snapshot_files_of(name):
            raise VolumeIsBusy(volume_name=name)
        self._unlink(name)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            return  # already gone: deleting is idempotent
        fileops.fsync_dir(self.volumes_dir)

    @translated("volume_exists")
    def volume_exists(self, volume: VolumeRef) -> bool:
        return self._is_file(self._volume_file(volume))

    @translated("get_volume_stats")
    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        if self._stats is None or refresh:
            self._stats = self._compute_stats()
        return copy.deepcopy(self._stats)

    def _compute_stats(self) -> dict[str, Any]:
        vfs = os.statvfs(self.volumes_dir)
        apparent = 0
        with os.scandir(self.volumes_dir) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        apparent += st.st_size
        allocated_gb = round(apparent / GiB, 2)
        return {
            "volume_backend_name": self.backend_name,
            "vendor_name": self.VENDOR_NAME,
            "driver_version": self.VERSION,
            "storage_protocol": self.STORAGE_PROTOCOL,
            # Where this backend's files are: a source driver decides from it whether
            # it can move a volume here itself (migrate.py).
            "location_info": location_info(self.volumes_dir),
            "pools": [
                {
                    "pool_name": self.backend_name,
                    "total_capacity_gb": round(vfs.f_blocks * vfs.f_frsize / GiB, 2),
                    "free_capacity_gb": round(vfs.f_bavail * vfs.f_frsize / GiB, 2),
                    "allocated_capacity_gb": allocated_gb,
                    "provisioned_capacity_gb": allocated_gb,
                    "max_over_subscription_ratio": self.max_over_subscription_ratio,
                    "reserved_percentage": self.reserved_percentage,
                    "thin_provisioning_support": True,
                    "thick_provisioning_support": False,
                    "reflink_support": self.reflink_supported,
                    "QoS_support": False,
                    # tgt serves one target to several initiators (one ACL entry each)
                    "multiattach": True,
                }
            ],
        }

    # --- snapshots / clones / extend / revert ------------------------------------------
    @translated("create_snapshot")
    def create_snapshot(self, snapshot: SnapshotRef) -> ModelUpdate | None:
        name = self._snapshot_file(snapshot)
        self._copy_to_new(self._volume_file(snapshot.volume), name, None)
        return {"provider_location": name}

    @translated("delete_snapshot")
    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        # Copies and reflinks are independent files, so a snapshot is never busy.
        self._unlink(self._snapshot_file(snapshot))

    @translated("snapshot_exists")
    def snapshot_exists(self, snapshot: SnapshotRef) -> bool:
        return self._is_file(self._snapshot_file(snapshot))

    @translated("create_volume_from_snapshot")
    def create_volume_from_snapshot(
        self, volume: VolumeRef, snapshot: SnapshotRef
    ) -> ModelUpdate | None:
        name = self._volume_file(volume)
        self._copy_to_new(self._snapshot_file(snapshot), name, volume.size * GiB)
        return {"provider_location": name}

    @translated("create_cloned_volume")
    def create_cloned_volume(self, volume: VolumeRef, src: VolumeRef) -> ModelUpdate | None:
        name = self._volume_file(volume)
        self._copy_to_new(self._volume_file(src), name, volume.size * GiB)
        return {"provider_location": name}

    @translated("extend_volume")
    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        name = self._volume_file(volume)
        fd = self._open_existing(name, os.O_RDWR)
        try:
            current = os.fstat(fd).st_size
            wanted = new_size * GiB
            if wanted < current:
                raise VolumeBackendAPIException(
                    data=f"refusing to shrink {name} from {current} to {wanted} bytes"
                )
            if wanted > current:
                os.ftruncate(fd, wanted)
                os.fsync(fd)
        finally:
            os.close(fd)

    @translated("revert_to_snapshot")
    def revert_to_snapshot(self, volume: VolumeRef, snapshot: SnapshotRef) -> None:
        name = self._volume_file(volume)
        vol_st = os.lstat(self._path(name))
        if not stat.S_ISREG(vol_st.st_mode):
            raise VolumeBackendAPIException(data=f"{name} is not a regular file")
        snap_fd = self._open_existing(self._snapshot_file(snapshot))
        try:
            size = max(vol_st.st_size, os.fstat(snap_fd).st_size, volume.size * GiB)
            # The only deliberate replace: the old file stays until the copy is complete.
            with fileops.atomic_file(self.volumes_dir, name, replace=True) as fd:
                self._copy(snap_fd, fd)
                fileops.grow_fd(fd, size)
                os.fchmod(fd, stat.S_IMODE(vol_st.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, vol_st.st_uid, vol_st.st_gid)
        finally:
            os.close(snap_fd)

    def local_path(self, volume: VolumeRef) -> str:
        return self._path(self._volume_file(volume))
