"""The manage half of the RBD driver: adopt existing images and snapshots, list them.

A reference names an image of the backend's pool (and namespace), or
``<image>@<snapshot>`` for a snapshot. In use means:

* an image: it has a watcher other than this driver (a VM, qemu-nbd, rbd-nbd,
  ``rbd watch``...): renaming it under a running client is refused;
* a snapshot: clones outside the service depend on it (deleting it later
  would flatten images the service does not own).

Manage renames an image to ``volume-<id>`` (a snapshot to its Cinder name)
and records the original name as provider_id; unmanage renames it back when
that name is still free. Listings stat only the page (sorting by size opens
every image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.rbd import images
from cinderblock.drivers.rbd.client import Cluster
from cinderblock.drivers.rbd.errors import rbd, translated
from cinderblock.drivers.refs import GiB, ManageableEntry, ModelUpdate, SnapshotRef, VolumeRef

LISTING_THREADS = 8


def reference_name(existing_ref: Any) -> str:
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
    if "/" in name or "\x00" in name:
        raise mg.invalid_reference(
            existing_ref, mg.BAD_NAME, "name must be an image of the backend's pool, without '/'"
        )
    return name


class RbdManageMixin:
    cluster: Cluster

    # _image_name / _snapshot_spec come from the driver
    def _image_name(self, volume: VolumeRef) -> str:
        raise NotImplementedError

    def _snapshot_spec(self, snapshot: SnapshotRef) -> tuple[str, str]:
        raise NotImplementedError

    # --- checks ------------------------------------------------------------------
    def _watchers(self, image: Any) -> list[dict[str, Any]]:
        mine = self.cluster.instance_id()
        return [w for w in image.watchers_list() if int(w.get("id", -1)) != mine]

    def _open_for_manage(self, ioctx: Any, name: str, existing_ref: Any) -> Any:
        try:
            image = rbd.Image(ioctx, name)
        except rbd.ImageNotFound:
            raise mg.invalid_reference(
                existing_ref, mg.NOT_FOUND, f"no image named {name!r} in the pool"
            ) from None
        watchers = self._watchers(image)
        if watchers:
            image.close()
            who = ", ".join(str(w.get("addr")) for w in watchers)
            raise mg.invalid_reference(
                existing_ref, mg.IN_USE, f"{name!r} is in use by another client ({who})"
            )
        return image

    def _volume_ref_name(self, existing_ref: Any) -> str:
        name = reference_name(existing_ref)
        if images.SEP in name:
            raise mg.invalid_reference(
                existing_ref, mg.WRONG_KIND, f"{name!r} is a snapshot, not a volume"
            )
        return name

    # --- volumes ---------------------------------------------------------------------
    @translated("manage_existing_get_size")
    def manage_existing_get_size(self, volume: VolumeRef, existing_ref: dict[str, Any]) -> int:
        name = self._volume_ref_name(existing_ref)
        with self.cluster.ioctx() as ioctx, self._open_for_manage(ioctx, name, existing_ref) as img:
            return mg.ceil_gib(img.size())

    @translated("manage_existing")
    def manage_existing(
        self, volume: VolumeRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        name = self._volume_ref_name(existing_ref)
        target = volume.name
        with self.cluster.ioctx() as ioctx:
            if target != name and target in rbd.RBD().list(ioctx):
                raise mg.invalid_reference(
                    existing_ref, mg.NAME_TAKEN, f"target name {target!r} already exists"
                )
            with self._open_for_manage(ioctx, name, existing_ref) as image:
                original_bytes = int(image.size())
                whole = mg.ceil_gib(original_bytes) * GiB
                if whole > original_bytes:  # volumes are whole GiB
                    image.resize(whole)
            if target != name:
                rbd.RBD().rename(ioctx, name, target)
        return {
            "provider_location": target,
            "provider_id": name,
            "admin_metadata": {
                "manage_original_name": name,
                "manage_original_size_bytes": str(original_bytes),
            },
        }

    @translated("unmanage")
    def unmanage(self, volume: VolumeRef) -> None:
        current = self._image_name(volume)
        original = volume.provider_id
        if not original or original == current or images.SEP in original or "/" in original:
            return
        with self.cluster.ioctx() as ioctx:
            if original in rbd.RBD().list(ioctx):
                return  # the old name was reused meanwhile: keep ours
            rbd.RBD().rename(ioctx, current, original)

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
        spec = mg.sort_spec(sort_keys, sort_dirs)
        with self.cluster.ioctx() as ioctx:
            names = sorted(rbd.RBD().list(ioctx))
            sizes: dict[str, int] = {}
            if spec.needs_size:
                sizes = images.sizes(ioctx)
                ordered = mg.ordered(sizes, spec, str, lambda n: mg.ceil_gib(sizes[n]))
                window = mg.names_after_marker(ordered, marker, offset)
            else:
                _, descending = spec.order[0]
                window = mg.names_after_marker(names[::-1] if descending else names, marker, offset)
            wanted = len(window) if limit is None or limit < 0 else limit
            page: list[ManageableEntry] = []
            start = 0
            # Each entry opens its image (watchers); librbd lets opens overlap, so a
            # page's entries are built by a few threads, in chunks, in order.
            with ThreadPoolExecutor(max_workers=LISTING_THREADS) as pool:
                while len(page) < wanted and start < len(window):
                    chunk = window[start : start + max(wanted - len(page), 1)]
                    start += len(chunk)
                    built = pool.map(
                        lambda n: self._volume_entry(ioctx, n, managed, sizes.get(n)), chunk
                    )
                    page += [e for e in built if e is not None]
            return page[:wanted]

    def _volume_entry(
        self, ioctx: Any, name: str, managed: Mapping[str, str], size: int | None
    ) -> ManageableEntry | None:
        try:
            with rbd.Image(ioctx, name, read_only=True) as image:
                size = image.size() if size is None else size
                entry = mg.make_entry(name, mg.ceil_gib(size), cinder_id=managed.get(name))
                if entry["safe_to_manage"] and self._watchers(image):
                    mg.mark_unsafe(entry, mg.IN_USE, mg.reason_in_use(snapshots=False))
                return entry
        except rbd.ImageNotFound:
            return None  # removed while listing

    # --- snapshots ------------------------------------------------------------------------
    def _snapshot_ref(self, snapshot: SnapshotRef, existing_ref: Any) -> tuple[str, str]:
        name = reference_name(existing_ref)
        parent = self._image_name(snapshot.volume)
        image, _, snap = name.partition(images.SEP)
        if image != parent or not snap:
            raise mg.invalid_reference(
                existing_ref,
                mg.WRONG_KIND,
                f"{name!r} is not a snapshot of image {parent!r} "
                f"(expected '{parent}{images.SEP}<name>')",
            )
        if snap.startswith(images.HIDDEN):
            raise mg.invalid_reference(
                existing_ref, mg.BAD_NAME, f"{name!r} is one of the driver's own snapshots"
            )
        return image, snap

    def _checked_snapshot(self, image: Any, name: str, snap: str, existing_ref: Any) -> int:
        """The snapshot's size, after refusing a missing or in-use snapshot."""
        if snap not in images.snap_names(image):
            raise mg.invalid_reference(existing_ref, mg.NOT_FOUND, f"no snapshot {name!r}")
        if images.children_of(image, snap):
            raise mg.invalid_reference(
                existing_ref, mg.IN_USE, f"{name!r} is in use: clones depend on it"
            )
        image.set_snap(snap)
        try:
            return int(image.size())
        finally:
            image.set_snap(None)

    def _open_parent(self, ioctx: Any, image_name: str, existing_ref: Any) -> Any:
        try:
            return rbd.Image(ioctx, image_name)
        except rbd.ImageNotFound:
            raise mg.invalid_reference(
                existing_ref, mg.NOT_FOUND, f"no image named {image_name!r}"
            ) from None

    @translated("manage_existing_snapshot_get_size")
    def manage_existing_snapshot_get_size(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> int:
        image_name, snap = self._snapshot_ref(snapshot, existing_ref)
        name = f"{image_name}{images.SEP}{snap}"
        with (
            self.cluster.ioctx() as ioctx,
            self._open_parent(ioctx, image_name, existing_ref) as img,
        ):
            return mg.ceil_gib(self._checked_snapshot(img, name, snap, existing_ref))

    @translated("manage_existing_snapshot")
    def manage_existing_snapshot(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        image_name, snap = self._snapshot_ref(snapshot, existing_ref)
        name = f"{image_name}{images.SEP}{snap}"
        with (
            self.cluster.ioctx() as ioctx,
            self._open_parent(ioctx, image_name, existing_ref) as img,
        ):
            self._checked_snapshot(img, name, snap, existing_ref)
            if snapshot.name != snap:
                if snapshot.name in images.snap_names(img):
                    raise mg.invalid_reference(
                        existing_ref, mg.NAME_TAKEN, f"snapshot {snapshot.name!r} already exists"
                    )
                img.rename_snap(snap, snapshot.name)
        return {
            "provider_location": f"{image_name}{images.SEP}{snapshot.name}",
            "provider_id": name,
        }

    @translated("unmanage_snapshot")
    def unmanage_snapshot(self, snapshot: SnapshotRef) -> None:
        image_name, snap = self._snapshot_spec(snapshot)
        original = snapshot.provider_id or ""
        orig_image, _, orig_snap = original.partition(images.SEP)
        if orig_image != image_name or not orig_snap or orig_snap == snap:
            return
        with self.cluster.image(image_name) as image:
            names = images.snap_names(image)
            if orig_snap not in names and snap in names:
                image.rename_snap(snap, orig_snap)

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
            try:
                image_name, name = self._snapshot_spec(snap)
            except Exception:  # a corrupt provider_location cannot match anything
                continue
            managed[f"{image_name}{images.SEP}{name}"] = snap.id
        entries: list[ManageableEntry] = []
        with self.cluster.ioctx() as ioctx:
            for image_name in rbd.RBD().list(ioctx):
                try:
                    with rbd.Image(ioctx, image_name, read_only=True) as image:
                        for info in image.list_snaps():
                            snap = info["name"]
                            if snap.startswith(images.HIDDEN):
                                continue
                            full = f"{image_name}{images.SEP}{snap}"
                            entry = mg.make_entry(
                                full,
                                mg.ceil_gib(info["size"]),
                                cinder_id=managed.get(full),
                                source_name=image_name,
                                snapshots=True,
                            )
                            if entry["safe_to_manage"] and images.children_of(image, snap):
                                mg.mark_unsafe(entry, mg.IN_USE, mg.reason_in_use(snapshots=True))
                            entries.append(entry)
                except rbd.ImageNotFound:
                    continue
        return mg.paginate(entries, marker, limit, offset, sort_keys, sort_dirs)
