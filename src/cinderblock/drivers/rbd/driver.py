"""RBD driver: each volume is an RBD image in one Ceph pool (and namespace).

Names: a volume is the image ``<provider_location>`` (``volume-<id>`` unless
it was managed under another name and kept it); a snapshot is
``<image>@<snapshot name>``, its provider_location. Snapshot names starting
with '.' are the driver's own (clone snapshots, images.py) and never listed.

Clones, volumes from snapshots and deletes follow images.py's policy:
copy-on-write children, flattened past rbd_max_clone_depth; deleting a parent
flattens its children first. Manage is in manage.py, connections and the NBD
export in export.py, vendor-error translation in errors.py, options in
client.py.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from cinderblock.drivers.base import (
    BaseVD,
    CloneVD,
    ExportVD,
    ExtendVD,
    ManageableSnapshotsVD,
    ManageableVD,
    MigrateVD,
    RevertVD,
    SnapshotVD,
)
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.rbd import images
from cinderblock.drivers.rbd.client import Cluster, RbdOptions
from cinderblock.drivers.rbd.errors import bindings_missing, rbd, translated
from cinderblock.drivers.rbd.export import RbdExportMixin
from cinderblock.drivers.rbd.manage import RbdManageMixin
from cinderblock.drivers.rbd.migrate import RbdMigrateMixin
from cinderblock.drivers.refs import GiB, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import VolumeBackendAPIException, VolumeIsBusy

LOG = logging.getLogger(__name__)


class RbdDriver(
    RbdManageMixin,  # first, so its methods implement the Manageable* abstract ones
    RbdExportMixin,  # likewise for ExportVD
    RbdMigrateMixin,  # and for MigrateVD
    BaseVD,
    SnapshotVD,
    CloneVD,
    ExtendVD,
    RevertVD,
    ManageableVD,
    ManageableSnapshotsVD,
    ExportVD,
    MigrateVD,
):
    VERSION = "1.0.0"
    VENDOR_NAME = "cinderblock"
    STORAGE_PROTOCOL = "ceph"

    def __init__(self, config: BackendConfig, host: str) -> None:
        super().__init__(config, host)
        self.options = RbdOptions.from_config(config)
        self.cluster = Cluster(self.options)
        self.max_over_subscription_ratio = config.get_float("max_over_subscription_ratio", 20.0)
        self.reserved_percentage = config.get_int("reserved_percentage", 0)
        self._stats: dict[str, Any] | None = None
        self._init_export(config)

    # --- lifecycle ---------------------------------------------------------------
    @translated("do_setup")
    def do_setup(self) -> None:
        missing = bindings_missing()
        if missing:
            raise VolumeBackendAPIException(data=missing)
        with self.cluster.ioctx() as ioctx:
            if self.options.namespace and not rbd.RBD().namespace_exists(
                ioctx, self.options.namespace
            ):
                ioctx.set_namespace("")
                rbd.RBD().namespace_create(ioctx, self.options.namespace)

    @translated("check_for_setup_error")
    def check_for_setup_error(self) -> None:
        with self.cluster.ioctx() as ioctx:
            rbd.RBD().list(ioctx)

    # --- names -----------------------------------------------------------------------
    @staticmethod
    def _image_name(volume: VolumeRef) -> str:
        name = volume.provider_location or volume.name
        if images.SEP in name or "/" in name:
            raise VolumeBackendAPIException(data=f"invalid RBD image name {name!r}")
        return name

    def _snapshot_spec(self, snapshot: SnapshotRef) -> tuple[str, str]:
        if snapshot.provider_location:
            try:
                return images.split_snapshot(snapshot.provider_location)
            except ValueError as exc:
                raise VolumeBackendAPIException(data=str(exc)) from exc
        return self._image_name(snapshot.volume), snapshot.name

    # --- required core ------------------------------------------------------------------
    @translated("create_volume")
    def create_volume(self, volume: VolumeRef) -> ModelUpdate | None:
        name = self._image_name(volume)
        with self.cluster.ioctx() as ioctx:
            rbd.RBD().create(ioctx, name, volume.size * GiB, order=self.options.order)
        return {"provider_location": name}

    @translated("delete_volume")
    def delete_volume(self, volume: VolumeRef) -> None:
        name = self._image_name(volume)
        with self.cluster.ioctx() as ioctx:
            try:
                image = rbd.Image(ioctx, name)
            except rbd.ImageNotFound:
                return  # already gone: deleting is idempotent
            with image:
                names = images.snap_names(image)
                if any(not n.startswith(images.HIDDEN) for n in names):
                    raise VolumeIsBusy(volume_name=name)
                for snap in names:  # clone snapshots: their clones are flattened first
                    images.remove_snapshot(self.cluster.connection(), image, snap)
                parent = images.parent_of(image)
            rbd.RBD().remove(ioctx, name)
            images.release_parent(self.cluster.connection(), parent)

    @translated("volume_exists")
    def volume_exists(self, volume: VolumeRef) -> bool:
        try:
            with self.cluster.image(self._image_name(volume), read_only=True):
                return True
        except rbd.ImageNotFound:
            return False

    @translated("get_volume_stats")
    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        if self._stats is None or refresh:
            self._stats = self._compute_stats()
        return copy.deepcopy(self._stats)

    def _compute_stats(self) -> dict[str, Any]:
        total_gb: float = 0.0
        free_gb: float = 0.0
        df = json.loads(self.cluster.mon_command("df", detail="detail"))
        for pool in df.get("pools", []):
            if pool.get("name") == self.options.pool:
                stats = pool["stats"]
                free = stats.get("max_avail", 0)
                used = stats.get("stored", stats.get("bytes_used", 0))
                total_gb = round((free + used) / GiB, 2)
                free_gb = round(free / GiB, 2)
        with self.cluster.ioctx() as ioctx:
            provisioned = sum(images.sizes(ioctx).values())
        provisioned_gb = round(provisioned / GiB, 2)
        return {
            "volume_backend_name": self.backend_name,
            "vendor_name": self.VENDOR_NAME,
            "driver_version": self.VERSION,
            "storage_protocol": self.STORAGE_PROTOCOL,
            # Cluster, pool and namespace: a source driver decides from it whether it
            # can move a volume here itself (migrate.py).
            "location_info": self.location_info(),
            "pools": [
                {
                    "pool_name": self.backend_name,
                    "total_capacity_gb": total_gb,
                    "free_capacity_gb": free_gb,
                    "allocated_capacity_gb": provisioned_gb,
                    "provisioned_capacity_gb": provisioned_gb,
                    "max_over_subscription_ratio": self.max_over_subscription_ratio,
                    "reserved_percentage": self.reserved_percentage,
                    "thin_provisioning_support": True,
                    "thick_provisioning_support": False,
                    "QoS_support": False,
                    "multiattach": False,
                    "rbd_pool": self.options.pool,
                }
            ],
        }

    # --- snapshots ---------------------------------------------------------------------------
    @translated("create_snapshot")
    def create_snapshot(self, snapshot: SnapshotRef) -> ModelUpdate | None:
        image_name = self._image_name(snapshot.volume)
        with self.cluster.image(image_name) as image:
            image.create_snap(snapshot.name)
        return {"provider_location": f"{image_name}{images.SEP}{snapshot.name}"}

    @translated("delete_snapshot")
    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        image_name, snap = self._snapshot_spec(snapshot)
        with self.cluster.ioctx() as ioctx:
            try:
                image = rbd.Image(ioctx, image_name)
            except rbd.ImageNotFound:
                return
            with image:
                if snap in images.snap_names(image):
                    images.remove_snapshot(self.cluster.connection(), image, snap)

    @translated("snapshot_exists")
    def snapshot_exists(self, snapshot: SnapshotRef) -> bool:
        image_name, snap = self._snapshot_spec(snapshot)
        try:
            with self.cluster.image(image_name, read_only=True) as image:
                return snap in images.snap_names(image)
        except rbd.ImageNotFound:
            return False

    @translated("create_volume_from_snapshot")
    def create_volume_from_snapshot(
        self, volume: VolumeRef, snapshot: SnapshotRef
    ) -> ModelUpdate | None:
        image_name, snap = self._snapshot_spec(snapshot)
        name = self._image_name(volume)
        with self.cluster.ioctx() as ioctx:
            with rbd.Image(ioctx, image_name) as parent:
                parent.set_snap(snap)
                snap_size = parent.size()
                parent.set_snap(None)
                self._check_size(volume, snap_size, f"snapshot {image_name}@{snap}")
                if not parent.is_protected_snap(snap):
                    parent.protect_snap(snap)
            self._clone(ioctx, image_name, snap, name, volume.size * GiB)
            if self.options.flatten_from_snapshot or self._too_deep(ioctx, name):
                images.flatten(self.cluster.connection(), ioctx, name)
        return {"provider_location": name}

    @translated("create_cloned_volume")
    def create_cloned_volume(self, volume: VolumeRef, src: VolumeRef) -> ModelUpdate | None:
        src_name = self._image_name(src)
        name = self._image_name(volume)
        snap = f"{images.CLONE_SNAP_PREFIX}{volume.id}"
        with self.cluster.ioctx() as ioctx:
            with rbd.Image(ioctx, src_name) as source:
                self._check_size(volume, source.size(), f"volume {src_name}")
                source.create_snap(snap)
                source.protect_snap(snap)
            try:
                self._clone(ioctx, src_name, snap, name, volume.size * GiB)
            except Exception:
                with rbd.Image(ioctx, src_name) as source:
                    source.unprotect_snap(snap)
                    source.remove_snap(snap)
                raise
            if self._too_deep(ioctx, name):
                images.flatten(
                    self.cluster.connection(), ioctx, name
                )  # also drops the clone snapshot
        return {"provider_location": name}

    def _check_size(self, volume: VolumeRef, source_bytes: int, what: str) -> None:
        if volume.size * GiB < source_bytes:
            raise VolumeBackendAPIException(
                data=f"requested size {volume.size} GiB is smaller than {what} "
                f"({source_bytes} bytes)"
            )

    def _clone(self, ioctx: Any, parent: str, snap: str, name: str, size: int) -> None:
        rbd.RBD().clone(ioctx, parent, snap, ioctx, name, order=self.options.order)
        try:
            with rbd.Image(ioctx, name) as child:
                if child.size() < size:
                    child.resize(size)
        except Exception:
            rbd.RBD().remove(ioctx, name)
            raise

    def _too_deep(self, ioctx: Any, name: str) -> bool:
        return images.depth(self.cluster.connection(), ioctx, name) > self.options.max_clone_depth

    # --- extend / revert -------------------------------------------------------------------
    @translated("extend_volume")
    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        name = self._image_name(volume)
        with self.cluster.image(name) as image:
            current, wanted = image.size(), new_size * GiB
            if wanted < current:
                raise VolumeBackendAPIException(
                    data=f"refusing to shrink {name} from {current} to {wanted} bytes"
                )
            if wanted > current:
                image.resize(wanted)

    @translated("revert_to_snapshot")
    def revert_to_snapshot(self, volume: VolumeRef, snapshot: SnapshotRef) -> None:
        image_name, snap = self._snapshot_spec(snapshot)
        with self.cluster.image(image_name) as image:
            keep = max(image.size(), volume.size * GiB)
            image.rollback_to_snap(snap)  # also takes the snapshot's size
            if image.size() < keep:
                image.resize(keep)
