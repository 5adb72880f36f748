"""The export half of the file driver: volume and snapshot files on the data path.

The driver *has* a target (cinderblock.targets; chosen by ``target_protocol =
iscsi|nbd``, default iscsi) and only tells it which file to export under
which name. It never speaks iSCSI or NBD itself.

What is persisted: the file driver's provider_location is, and stays, the
name of the volume's file (every other operation finds the file by it), so
exports return only ``provider_auth`` (``"CHAP <user> <secret>"`` for iSCSI,
``"PSK <identity> <key>"`` for NBD with TLS). The target's own location
(``"<ip>:<port>,<tid> <iqn> 1"``) is rebuilt from the names: the IQN is
``<prefix>volume-<id>``. Snapshots have no provider_auth column, so their
(read-only) exports use credentials the target derives from the snapshot
name and a key in its state directory: the same after every restart.
"""

from __future__ import annotations

import logging
from typing import Any

from cinderblock.drivers.file.layout import FileLayout, translated
from cinderblock.drivers.refs import Connector, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import BackendObjectNotFound
from cinderblock.targets import ExportRef, Target

LOG = logging.getLogger(__name__)


class FileExportMixin(FileLayout):
    """ExportVD for files, plus the snapshot export methods."""

    target: Target

    def _file_path(self, name: str, must_exist: bool) -> str:
        if must_exist and not self._is_file(name):
            raise BackendObjectNotFound(name=name)
        return self._path(name)

    def _volume_export(self, volume: VolumeRef, *, must_exist: bool = True) -> ExportRef:
        return ExportRef(
            object_id=volume.id,
            name=volume.name,
            path=self._file_path(self._volume_file(volume), must_exist),
            provider_auth=volume.provider_auth,
        )

    def _snapshot_export(self, snapshot: SnapshotRef, *, must_exist: bool = True) -> ExportRef:
        return ExportRef(
            object_id=snapshot.id,
            name=snapshot.name,
            path=self._file_path(self._snapshot_file(snapshot), must_exist),
            read_only=True,
            provider_auth=self.target.stable_auth(snapshot.name),
        )

    def _auth_update(self, volume: VolumeRef, provider_auth: str | None) -> ModelUpdate | None:
        if provider_auth == volume.provider_auth:
            return None
        return {"provider_auth": provider_auth}

    # --- volumes -----------------------------------------------------------------
    @translated("create_export")
    def create_export(self, volume: VolumeRef, connector: Connector | None) -> ModelUpdate | None:
        export = self.target.create_export(self._volume_export(volume))
        return self._auth_update(volume, export.provider_auth)

    @translated("ensure_export")
    def ensure_export(self, volume: VolumeRef) -> ModelUpdate | None:
        export = self.target.ensure_export(self._volume_export(volume))
        return self._auth_update(volume, export.provider_auth)

    @translated("remove_export")
    def remove_export(self, volume: VolumeRef) -> None:
        self.target.remove_export(self._volume_export(volume, must_exist=False))

    def validate_connector(self, connector: Connector) -> None:
        self.target.validate_connector(connector)

    @translated("initialize_connection")
    def initialize_connection(self, volume: VolumeRef, connector: Connector) -> dict[str, Any]:
        return self.target.initialize_connection(self._volume_export(volume), connector)

    @translated("terminate_connection")
    def terminate_connection(self, volume: VolumeRef, connector: Connector | None) -> None:
        self.target.terminate_connection(self._volume_export(volume, must_exist=False), connector)

    # --- snapshots (read-only exports) ----------------------------------------------
    @translated("create_export_snapshot")
    def create_export_snapshot(
        self, snapshot: SnapshotRef, connector: Connector | None
    ) -> ModelUpdate | None:
        self.target.create_export(self._snapshot_export(snapshot))
        return None  # provider_location stays the file name; credentials are derived

    @translated("remove_export_snapshot")
    def remove_export_snapshot(self, snapshot: SnapshotRef) -> None:
        self.target.remove_export(self._snapshot_export(snapshot, must_exist=False))

    @translated("initialize_connection_snapshot")
    def initialize_connection_snapshot(
        self, snapshot: SnapshotRef, connector: Connector
    ) -> dict[str, Any]:
        return self.target.initialize_connection(self._snapshot_export(snapshot), connector)

    @translated("terminate_connection_snapshot")
    def terminate_connection_snapshot(
        self, snapshot: SnapshotRef, connector: Connector | None
    ) -> None:
        ref = self._snapshot_export(snapshot, must_exist=False)
        self.target.terminate_connection(ref, connector)
