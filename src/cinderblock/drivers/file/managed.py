"""The manage half of the file driver: adopt existing files, give them back, list them.

A file is "in use" when any process holds it open (one /proc scan, see
inuse.py). Listings report it; every manage call re-checks it on the fd it
is about to adopt, so a file opened since the listing is refused too. A
process that opens the file after that check is not seen: nothing on Linux
can prevent that without the other process's cooperation.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.file import fileops, inuse, manage
from cinderblock.drivers.file.layout import SEP, FileLayout, translated
from cinderblock.drivers.refs import GiB, ManageableEntry, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import VolumeBackendAPIException

LOG = logging.getLogger(__name__)


class FileManageMixin(FileLayout):
    """ManageableVD + ManageableSnapshotsVD for files (see manage.py for the checks)."""

    manage_rename: bool
    own_fds: inuse.OwnFds  # descriptors the /proc scan must not count
    name_cache: manage.NameCache
    proc_root: str = inuse.PROC

    @contextlib.contextmanager
    def _inspected(self, name: str, existing_ref: Any, *, writable: bool) -> Iterator[int]:
        """Open a confined, raw file that no process holds open; yields the fd."""
        fd, fst = manage.open_confined(
            self.volumes_dir, name, existing_ref, writable=writable, own_fds=self.own_fds
        )
        try:
            fmt = manage.detect_format(manage.read_header(fd))
            if fmt == "raw":
                fmt = manage.qemu_img_format(fd) or "raw"
            problem = manage.format_problem(fmt)
            if problem is None and inuse.is_open(
                fst, ignore_fds=self.own_fds.snapshot(), proc_root=self.proc_root
            ):
                problem = manage.in_use_problem(snapshots=SEP in name)
            if problem:
                raise problem.refusal(name, existing_ref)
            yield fd
        finally:
            self.own_fds.close(fd)

    def _volume_ref_name(self, existing_ref: Any) -> str:
        name = manage.reference_name(existing_ref)
        if SEP in name:
            raise mg.invalid_reference(
                existing_ref,
                mg.WRONG_KIND,
                f"{name!r} is a snapshot file ('@'); manage it as a snapshot",
            )
        return name

    @translated("manage_existing_get_size")
    def manage_existing_get_size(self, volume: VolumeRef, existing_ref: dict[str, Any]) -> int:
        name = self._volume_ref_name(existing_ref)
        with self._inspected(name, existing_ref, writable=False) as fd:
            return manage.ceil_gib(os.fstat(fd).st_size)

    @translated("manage_existing")
    def manage_existing(
        self, volume: VolumeRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        name = self._volume_ref_name(existing_ref)
        target = self._checked(volume.name, snapshot=False) if self.manage_rename else name
        with self._inspected(name, existing_ref, writable=True) as fd:
            renames = self._family_renames(name, target) if target != name else []
            taken = [new for _, new in renames if os.path.lexists(self._path(new))]
            if taken:
                raise mg.invalid_reference(
                    existing_ref, mg.NAME_TAKEN, f"target name {taken[0]!r} already exists"
                )
            original_bytes = os.fstat(fd).st_size
            self._adopt(fd, renames)
        return {
            "provider_location": target,
            "provider_id": name,
            # The file was grown to whole GiB; the operator keeps its true size.
            "admin_metadata": {
                "manage_original_name": name,
                "manage_original_size_bytes": str(original_bytes),
            },
        }

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
        managed = mg.managed_names(cinder_volumes)
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
        spec = mg.sort_spec(sort_keys, sort_dirs)
        names, odd = self.name_cache.names(self.volumes_dir, snapshots=snapshots)

        def build(name: str, st: os.stat_result | None = None) -> manage.Item | None:
            raw = odd.get(name, name)
            return manage.build_item(
                self.volumes_dir, name, raw, managed, snapshots=snapshots, st=st
            )

        candidates: Iterable[manage.Item | None]
        if spec.needs_size:  # every file's size is needed to sort: lstat them all
            stats = manage.lstat_all(self.volumes_dir, names, odd)
            by_size = mg.ordered(stats, spec, str, lambda name: manage.listed_size(stats[name]))
            window = mg.names_after_marker(by_size, marker, offset)
            candidates = (build(name, stats[name]) for name in window)
        else:  # names are unique and enough to sort: stat only what ends up on the page
            _, descending = spec.order[0]
            window = mg.names_after_marker(names[::-1] if descending else names, marker, offset)
            candidates = map(build, window)
        present = (item for item in candidates if item is not None)
        page = list(islice(present, limit)) if limit is not None and limit >= 0 else list(present)
        self._check_page(page, snapshots=snapshots)
        return [item.entry for item in page]

    def _check_page(self, page: list[manage.Item], *, snapshots: bool) -> None:
        """In-use (one /proc scan for the whole page), then content, for entries still safe."""
        if not any(item.entry["safe_to_manage"] for item in page):
            return
        open_ids = inuse.open_file_ids(ignore_fds=self.own_fds.snapshot(), proc_root=self.proc_root)
        for item in page:
            if not item.entry["safe_to_manage"]:
                continue
            if (item.st.st_dev, item.st.st_ino) in open_ids:
                problem = manage.in_use_problem(snapshots=snapshots)
                mg.mark_unsafe(item.entry, problem.code, problem.reason)
                continue
            manage.check_content(self.volumes_dir, item, self.own_fds)

    # --- manage snapshots ------------------------------------------------------------------
    def _snapshot_ref_name(self, snapshot: SnapshotRef, existing_ref: Any) -> str:
        name = manage.reference_name(existing_ref)
        parent = self._volume_file(snapshot.volume)
        if not name.startswith(parent + SEP):
            raise mg.invalid_reference(
                existing_ref,
                mg.WRONG_KIND,
                f"{name!r} is not a snapshot file of volume file {parent!r} "
                f"(expected '{parent}{SEP}<name>')",
            )
        return name

    @translated("manage_existing_snapshot_get_size")
    def manage_existing_snapshot_get_size(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> int:
        name = self._snapshot_ref_name(snapshot, existing_ref)
        with self._inspected(name, existing_ref, writable=False) as fd:
            return manage.ceil_gib(os.fstat(fd).st_size)

    @translated("manage_existing_snapshot")
    def manage_existing_snapshot(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        name = self._snapshot_ref_name(snapshot, existing_ref)
        parent = self._volume_file(snapshot.volume)
        target = name
        if self.manage_rename:
            target = self._checked(f"{parent}{SEP}{snapshot.name}", snapshot=True)
        with self._inspected(name, existing_ref, writable=True) as fd:
            if target != name and os.path.lexists(self._path(target)):
                raise mg.invalid_reference(
                    existing_ref, mg.NAME_TAKEN, f"target name {target!r} already exists"
                )
            self._adopt(fd, [(name, target)] if target != name else [])
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
