"""The manage half of the file driver: adopt existing files, give them back, list them."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from cinderblock.drivers.file import fileops, manage
from cinderblock.drivers.file.layout import SEP, FileLayout, translated
from cinderblock.drivers.refs import GiB, ManageableEntry, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import ManageExistingInvalidReference, VolumeBackendAPIException

LOG = logging.getLogger(__name__)


class FileManageMixin(FileLayout):
    """ManageableVD + ManageableSnapshotsVD for files (see manage.py for the checks)."""

    manage_rename: bool

    def _inspect(self, name: str, existing_ref: Any, *, writable: bool) -> int:
        """Open a confined, raw file for managing; returns the open fd."""
        fd, _ = manage.open_confined(self.volumes_dir, name, existing_ref, writable=writable)
        try:
            fmt = manage.detect_format(manage.read_header(fd))
            if fmt == "raw":
                fmt = manage.qemu_img_format(fd) or "raw"
            problem = manage.format_problem(fmt)
            if problem:
                raise ManageExistingInvalidReference(existing_ref=existing_ref, reason=problem)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _volume_ref_name(self, existing_ref: Any) -> str:
        name = manage.reference_name(existing_ref)
        if SEP in name:
            raise ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=f"{name!r} is a snapshot file ('@'); manage it as a snapshot",
            )
        return name

    @translated("manage_existing_get_size")
    def manage_existing_get_size(self, volume: VolumeRef, existing_ref: dict[str, Any]) -> int:
        fd = self._inspect(self._volume_ref_name(existing_ref), existing_ref, writable=False)
        try:
            return manage.ceil_gib(os.fstat(fd).st_size)
        finally:
            os.close(fd)

    @translated("manage_existing")
    def manage_existing(
        self, volume: VolumeRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        name = self._volume_ref_name(existing_ref)
        target = self._checked(volume.name, snapshot=False) if self.manage_rename else name
        fd = self._inspect(name, existing_ref, writable=True)
        try:
            renames = self._family_renames(name, target) if target != name else []
            taken = [new for _, new in renames if os.path.lexists(self._path(new))]
            if taken:
                raise ManageExistingInvalidReference(
                    existing_ref=existing_ref, reason=f"target name {taken[0]!r} already exists"
                )
            self._adopt(fd, renames)
        finally:
            os.close(fd)
        return {"provider_location": target, "provider_id": name}

    def _family_renames(self, old: str, new: str) -> list[tuple[str, str]]:
        """A volume file and its snapshot files move together so '@' parents stay right."""
        renames = [(old, new)]
        for snap in self._snapshot_files_of(old):
            renames.append((snap, new + snap[len(old) :]))
        return renames

    def _adopt(self, fd: int, renames: list[tuple[str, str]]) -> None:
        """Rename (all or nothing), then grow the file via its fd to whole GiB."""
        self._rename_all(renames)
        try:
            fileops.grow_fd(fd, manage.ceil_gib(os.fstat(fd).st_size) * GiB)
            os.fsync(fd)
        except BaseException:
            self._rename_all([(new, old) for old, new in reversed(renames)])
            raise

    def _rename_all(self, renames: list[tuple[str, str]]) -> None:
        done: list[tuple[str, str]] = []
        try:
            for old, new in renames:
                fileops.rename_noreplace(self._path(old), self._path(new))
                done.append((old, new))
        except BaseException:
            for old, new in reversed(done):
                fileops.rename_noreplace(self._path(new), self._path(old))
            raise
        if renames:
            fileops.fsync_dir(self.volumes_dir)

    def _restore_name(self, current: str, original: str | None, *, snapshot: bool) -> None:
        """Give an unmanaged file back its pre-manage name when that is possible."""
        if not original or original == current or not self._is_file(current):
            return
        if manage.name_problem(original) or (SEP in original) != snapshot:
            LOG.warning("not restoring %s to invalid original name %r", current, original)
            return
        renames = [(current, original)]
        if not snapshot:
            renames = self._family_renames(current, original)
        if any(os.path.lexists(self._path(new)) for _, new in renames):
            LOG.warning("original name %r is taken; %s keeps its name", original, current)
            return
        self._rename_all(renames)

    @translated("unmanage")
    def unmanage(self, volume: VolumeRef) -> None:
        self._restore_name(self._volume_file(volume), volume.provider_id, snapshot=False)

    @translated("get_manageable_volumes")
    def get_manageable_volumes(
        self,
        cinder_volumes: Sequence[VolumeRef],
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]:
        managed: dict[str, str] = {}
        for vol in cinder_volumes:
            for name in (vol.name, vol.provider_location):
                if name:
                    managed[name] = vol.id
        return self._listing(managed, False, marker, limit, offset, sort_keys, sort_dirs)

    def _listing(
        self,
        managed: dict[str, str],
        snapshots: bool,
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]:
        items = manage.scan_dir(self.volumes_dir, snapshots=snapshots)
        entries = [manage.preliminary_entry(i, managed, snapshots=snapshots) for i in items]
        page = manage.paginate(entries, marker, limit, offset, sort_keys, sort_dirs)
        # Reading headers is the slow part: only for the entries actually returned.
        for entry in page:
            manage.check_content(self.volumes_dir, entry)
        return page

    # --- manage snapshots ------------------------------------------------------------------
    def _snapshot_ref_name(self, snapshot: SnapshotRef, existing_ref: Any) -> str:
        name = manage.reference_name(existing_ref)
        parent = self._volume_file(snapshot.volume)
        if not name.startswith(parent + SEP):
            raise ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=f"{name!r} is not a snapshot file of volume file {parent!r} "
                f"(expected '{parent}{SEP}<name>')",
            )
        return name

    @translated("manage_existing_snapshot_get_size")
    def manage_existing_snapshot_get_size(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> int:
        name = self._snapshot_ref_name(snapshot, existing_ref)
        fd = self._inspect(name, existing_ref, writable=False)
        try:
            return manage.ceil_gib(os.fstat(fd).st_size)
        finally:
            os.close(fd)

    @translated("manage_existing_snapshot")
    def manage_existing_snapshot(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        name = self._snapshot_ref_name(snapshot, existing_ref)
        parent = self._volume_file(snapshot.volume)
        target = name
        if self.manage_rename:
            target = self._checked(f"{parent}{SEP}{snapshot.name}", snapshot=True)
        fd = self._inspect(name, existing_ref, writable=True)
        try:
            if target != name and os.path.lexists(self._path(target)):
                raise ManageExistingInvalidReference(
                    existing_ref=existing_ref, reason=f"target name {target!r} already exists"
                )
            self._adopt(fd, [(name, target)] if target != name else [])
        finally:
            os.close(fd)
        return {"provider_location": target, "provider_id": name}

    @translated("unmanage_snapshot")
    def unmanage_snapshot(self, snapshot: SnapshotRef) -> None:
        self._restore_name(self._snapshot_file(snapshot), snapshot.provider_id, snapshot=True)

    @translated("get_manageable_snapshots")
    def get_manageable_snapshots(
        self,
        cinder_snapshots: Sequence[SnapshotRef],
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]:
        managed: dict[str, str] = {}
        for snap in cinder_snapshots:
            with contextlib.suppress(VolumeBackendAPIException):
                managed[self._snapshot_file(snap)] = snap.id
        return self._listing(managed, True, marker, limit, offset, sort_keys, sort_dirs)
