"""The driver interface: a small required core plus one base class per capability.

Mirrors the seeds' BaseVD / SnapshotVD / ExtendVD / ManageableVD ... split.
A driver inherits the capability classes it implements; the volume service
computes the capability set once (`capabilities_of`) and the API refuses an
unsupported action before any state changes.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.refs import (
    Connector,
    ManageableEntry,
    ModelUpdate,
    SnapshotRef,
    VolumeRef,
)
from cinderblock.exceptions import ManageExistingVolumeTypeMismatch


class BaseVD(abc.ABC):
    """Required operations every driver implements (control path only)."""

    VERSION: ClassVar[str] = "N/A"
    VENDOR_NAME: ClassVar[str] = "cinderblock"
    STORAGE_PROTOCOL: ClassVar[str] = "file"

    def __init__(self, config: BackendConfig, host: str) -> None:
        self.config = config
        self.host = host  # host@backend of the owning volume service
        self.initialized = False

    @property
    def backend_name(self) -> str:
        return self.config.volume_backend_name

    def get_version(self) -> str:
        return self.VERSION

    # --- lifecycle ---------------------------------------------------------
    def do_setup(self) -> None:  # noqa: B027 - optional hook
        """Prepare the backend (create directories, connect...). Called once at start."""

    def check_for_setup_error(self) -> None:  # noqa: B027 - optional hook
        """Raise if the backend cannot be used."""

    def set_initialized(self) -> None:
        self.initialized = True

    # --- required control path ----------------------------------------------
    @abc.abstractmethod
    def create_volume(self, volume: VolumeRef) -> ModelUpdate | None:
        """Create an empty volume of volume.size GiB."""

    @abc.abstractmethod
    def delete_volume(self, volume: VolumeRef) -> None:
        """Delete the volume; deleting one that is already gone is not an error."""

    @abc.abstractmethod
    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """Backend stats in Cinder's shape, with a `pools` list."""

    @abc.abstractmethod
    def volume_exists(self, volume: VolumeRef) -> bool:
        """Whether the backend object for this volume exists (used by recovery)."""

    def get_pool(self, volume: VolumeRef) -> str:
        return self.backend_name

    def check_type_compatible(self, volume: VolumeRef) -> None:
        """Raise ManageExistingVolumeTypeMismatch when volume's type asks what we lack.

        Checks `volume_backend_name` and `capabilities:<key>` extra specs against
        this backend's stats; drivers with richer rules override it.
        """
        specs = volume.extra_specs
        wanted = specs.get("volume_backend_name")
        if wanted and wanted != self.backend_name:
            raise ManageExistingVolumeTypeMismatch(
                reason=f"the volume type wants backend {wanted!r}, this is {self.backend_name!r}"
            )
        stats = self.get_volume_stats()
        pools = stats.get("pools") or [{}]
        caps = {**{k: v for k, v in stats.items() if k != "pools"}, **pools[0]}
        for key, value in specs.items():
            if not key.startswith("capabilities:"):
                continue
            name = key.partition(":")[2]
            have = caps.get(name)
            expected = value.removeprefix("<is>").strip() if value.startswith("<is>") else value
            if have is None or str(have).lower() != expected.lower():
                raise ManageExistingVolumeTypeMismatch(
                    reason=f"the volume type requires {name}={expected}; the backend has "
                    f"{name}={have}"
                )

    # --- filter / goodness (scheduler) --------------------------------------
    def get_default_filter_function(self) -> str | None:
        return None

    def get_default_goodness_function(self) -> str | None:
        return None

    def get_filter_function(self) -> str | None:
        return self.config.get("filter_function") or self.get_default_filter_function()

    def get_goodness_function(self) -> str | None:
        return self.config.get("goodness_function") or self.get_default_goodness_function()


class SnapshotVD(abc.ABC):
    @abc.abstractmethod
    def create_snapshot(self, snapshot: SnapshotRef) -> ModelUpdate | None: ...

    @abc.abstractmethod
    def delete_snapshot(self, snapshot: SnapshotRef) -> None: ...

    @abc.abstractmethod
    def create_volume_from_snapshot(
        self, volume: VolumeRef, snapshot: SnapshotRef
    ) -> ModelUpdate | None: ...

    @abc.abstractmethod
    def snapshot_exists(self, snapshot: SnapshotRef) -> bool: ...


class CloneVD(abc.ABC):
    @abc.abstractmethod
    def create_cloned_volume(self, volume: VolumeRef, src: VolumeRef) -> ModelUpdate | None: ...


class ExtendVD(abc.ABC):
    @abc.abstractmethod
    def extend_volume(self, volume: VolumeRef, new_size: int) -> None: ...


class RevertVD(abc.ABC):
    @abc.abstractmethod
    def revert_to_snapshot(self, volume: VolumeRef, snapshot: SnapshotRef) -> None: ...


class LocalVD(abc.ABC):
    @abc.abstractmethod
    def local_path(self, volume: VolumeRef) -> str: ...


class ExportVD(abc.ABC):
    """Data-path half: export and connection (iSCSI, NBD, FC ...)."""

    @abc.abstractmethod
    def create_export(
        self, volume: VolumeRef, connector: Connector | None
    ) -> ModelUpdate | None: ...

    @abc.abstractmethod
    def ensure_export(self, volume: VolumeRef) -> ModelUpdate | None: ...

    @abc.abstractmethod
    def remove_export(self, volume: VolumeRef) -> None: ...

    @abc.abstractmethod
    def validate_connector(self, connector: Connector) -> None: ...

    @abc.abstractmethod
    def initialize_connection(self, volume: VolumeRef, connector: Connector) -> dict[str, Any]: ...

    @abc.abstractmethod
    def terminate_connection(self, volume: VolumeRef, connector: Connector | None) -> None: ...


class ManageableVD(abc.ABC):
    @abc.abstractmethod
    def manage_existing(
        self, volume: VolumeRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None: ...

    @abc.abstractmethod
    def manage_existing_get_size(self, volume: VolumeRef, existing_ref: dict[str, Any]) -> int: ...

    @abc.abstractmethod
    def unmanage(self, volume: VolumeRef) -> None: ...

    @abc.abstractmethod
    def get_manageable_volumes(
        self,
        cinder_volumes: Sequence[VolumeRef],
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]: ...


class ManageableSnapshotsVD(abc.ABC):
    @abc.abstractmethod
    def manage_existing_snapshot(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None: ...

    @abc.abstractmethod
    def manage_existing_snapshot_get_size(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> int: ...

    @abc.abstractmethod
    def unmanage_snapshot(self, snapshot: SnapshotRef) -> None: ...

    @abc.abstractmethod
    def get_manageable_snapshots(
        self,
        cinder_snapshots: Sequence[SnapshotRef],
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]: ...


class MigrateVD(abc.ABC):
    """Driver-assisted migration: the driver moves the data to another backend itself.

    `host` is {"host": "host@backend#pool", "capabilities": {...}} with the destination
    pool's reported stats; `capabilities["location_info"]` tells the driver whether the
    destination is storage it can reach. Returns (moved, model_update); (False, None)
    when it cannot move to that destination (nothing changed). It must never leave a
    half-moved object: the source stays complete until the copy is complete.
    """

    @abc.abstractmethod
    def migrate_volume(
        self, volume: VolumeRef, host: dict[str, Any]
    ) -> tuple[bool, ModelUpdate | None]: ...

    @abc.abstractmethod
    def migration_destination_holds(self, volume: VolumeRef, host: dict[str, Any]) -> bool:
        """Whether the destination already holds the complete volume (crash recovery)."""


# Capability name -> base class. Names are what stats report and the API checks.
CAPABILITY_CLASSES: dict[str, type] = {
    "snapshot": SnapshotVD,
    "clone": CloneVD,
    "extend": ExtendVD,
    "revert": RevertVD,
    "local_path": LocalVD,
    "export": ExportVD,
    "manage_volume": ManageableVD,
    "manage_snapshot": ManageableSnapshotsVD,
    "migrate": MigrateVD,
}


def capabilities_of(driver: BaseVD) -> frozenset[str]:
    """The capability names a driver implements, computed from its base classes."""
    return frozenset(name for name, cls in CAPABILITY_CLASSES.items() if isinstance(driver, cls))
