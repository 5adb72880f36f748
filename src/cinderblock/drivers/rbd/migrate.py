"""Driver-assisted migration of the RBD driver: move an image to another rbd backend of
the same Ceph cluster (another pool, or another namespace of the pool).

The destination is named by its `location_info` (``RBDDriver:<fsid>:<pool>:<namespace>``);
another cluster (other fsid) cannot be reached: moved=False. The image is copied
with librbd (a flattening copy, so a clone's data no longer depends on a parent in
the source pool) to a temporary name in the destination, renamed to its final name
there (a rename never replaces an image), and only then is the source deleted
(its clone snapshots flatten their children first, as any delete does). A failure
before the rename removes the temporary image; the source is untouched until the
copy is complete under its final name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cinderblock.drivers.rbd import images
from cinderblock.drivers.rbd.errors import rbd, translated
from cinderblock.drivers.refs import ModelUpdate, VolumeRef
from cinderblock.exceptions import VolumeBackendAPIException

if TYPE_CHECKING:
    from cinderblock.drivers.rbd.client import Cluster, RbdOptions

LOG = logging.getLogger(__name__)

LOCATION_PREFIX = "RBDDriver"
TMP_PREFIX = ".migrating-"


def parse_location(info: str) -> tuple[str, str, str] | None:
    """(fsid, pool, namespace) of an rbd location_info, or None for anything else."""
    parts = info.split(":")
    if len(parts) != 4 or parts[0] != LOCATION_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2], parts[3]


class RbdMigrateMixin:
    """MigrateVD for RBD images."""

    cluster: Cluster
    options: RbdOptions

    def location_info(self) -> str:
        fsid = self.cluster.connection().get_fsid()
        return f"{LOCATION_PREFIX}:{fsid}:{self.options.pool}:{self.options.namespace}"

    if TYPE_CHECKING:  # the driver's own

        def _image_name(self, volume: VolumeRef) -> str: ...

        def delete_volume(self, volume: VolumeRef) -> None: ...

    def _reachable(self, host: dict[str, Any]) -> tuple[str, str] | None:
        """(pool, namespace) of a destination in our cluster other than our own place."""
        info = str((host.get("capabilities") or {}).get("location_info") or "")
        where = parse_location(info)
        if where is None:
            return None
        fsid, pool, namespace = where
        if fsid != self.cluster.connection().get_fsid():
            return None  # another cluster: librbd cannot copy there
        if (pool, namespace) == (self.options.pool, self.options.namespace):
            return None
        return pool, namespace

    @contextlib.contextmanager
    def _ioctx_at(self, pool: str, namespace: str) -> Iterator[Any]:
        ioctx = self.cluster.connection().open_ioctx(pool)
        try:
            ioctx.set_namespace(namespace)
            yield ioctx
        finally:
            ioctx.close()

    @translated("migrate_volume")
    def migrate_volume(
        self, volume: VolumeRef, host: dict[str, Any]
    ) -> tuple[bool, ModelUpdate | None]:
        where = self._reachable(host)
        if where is None:
            LOG.info("volume %s: %s is not another place of this cluster", volume.id, host)
            return False, None
        name = self._image_name(volume)
        tmp = f"{TMP_PREFIX}{name}"
        with (
            self._ioctx_at(*where) as dest,
            self.cluster.image(name, read_only=True) as image,
        ):
            if any(not n.startswith(images.HIDDEN) for n in images.snap_names(image)):
                raise VolumeBackendAPIException(data=f"{name} has snapshots; not moved")
            with contextlib.suppress(rbd.ImageNotFound):
                rbd.RBD().remove(dest, tmp)  # a leftover of an interrupted attempt
            try:
                image.copy(dest, tmp, order=self.options.order)
                rbd.RBD().rename(dest, tmp, name)  # fails if name exists: never replaces
            except BaseException:
                with contextlib.suppress(Exception):
                    rbd.RBD().remove(dest, tmp)
                raise
        # The complete copy is in place under its name: only now does the source go.
        self.delete_volume(volume)
        return True, {"provider_location": name}

    @translated("migration_destination_holds")
    def migration_destination_holds(self, volume: VolumeRef, host: dict[str, Any]) -> bool:
        where = self._reachable(host)
        if where is None:
            return False
        with self._ioctx_at(*where) as dest:
            try:
                rbd.Image(dest, self._image_name(volume), read_only=True).close()
            except rbd.ImageNotFound:
                return False
        return True
