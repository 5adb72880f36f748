"""Manager half of attaching: exports and connections through the driver.

Mixed into VolumeManager. The API side owns the attachment and volume statuses
(compare-and-swap); these RPC calls only talk to the backend and persist what
the driver returns (provider_location / provider_auth of the export).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cinderblock import exceptions as exc
from cinderblock.db.repo import attachments as attachments_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.drivers.base import ExportVD
from cinderblock.drivers.refs import VolumeRef
from cinderblock.states import AttachStatus, VolumeStatus
from cinderblock.volume.refs import volume_ref

if TYPE_CHECKING:
    from cinderblock.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)
_EXPORT_KEYS = ("provider_location", "provider_auth", "provider_id")
_CONNECTED = (AttachStatus.ATTACHING, AttachStatus.ATTACHED)


class AttachOps:
    """RPC methods for the data path; `self` is the VolumeManager."""

    def _export_driver(self: VolumeManager) -> ExportVD:
        self._require_driver()
        if not isinstance(self.driver, ExportVD):
            raise exc.UnsupportedOperation(operation="attaching volumes")
        return self.driver

    def _ref_for(self: VolumeManager, volume_id: str) -> tuple[VolumeRef, str]:
        with self.db.session() as session:
            volume = volumes_repo.get(session, volume_id)
            admin = volumes_repo.admin_metadata_of(volume)
            mode = "ro" if admin.get("readonly", "").lower() == "true" else "rw"
            return volume_ref(volume), mode

    def initialize_connection(
        self: VolumeManager,
        volume_id: str,
        connector: dict[str, Any],
        mode: str | None = None,
    ) -> dict[str, Any]:
        """Export the volume (if needed) and allow this connector; returns connection_info."""
        driver = self._export_driver()
        driver.validate_connector(connector)
        ref, default_mode = self._ref_for(volume_id)
        with self._locked(volume_id):
            update = driver.create_export(ref, connector) or {}
            values = {k: update[k] for k in _EXPORT_KEYS if k in update}  # type: ignore[literal-required]
            if values:
                with self.db.session() as session:
                    volumes_repo.compare_and_swap(session, volume_id, {}, values)
                ref, _ = self._ref_for(volume_id)
            info = driver.initialize_connection(ref, connector)
        data = info.setdefault("data", {})
        data.setdefault("volume_id", volume_id)
        data.setdefault("discard", False)
        data["access_mode"] = mode or default_mode
        data.setdefault("qos_specs", None)
        data.setdefault("encrypted", False)
        data.setdefault("cacheable", False)
        return info

    def terminate_connection(
        self: VolumeManager,
        volume_id: str,
        connector: dict[str, Any] | None,
        remove_export: bool = False,
    ) -> None:
        """Revoke a connector; with remove_export, also take the export down."""
        driver = self._export_driver()
        ref, _ = self._ref_for(volume_id)
        with self._locked(volume_id):
            driver.terminate_connection(ref, connector)
            if remove_export:
                driver.remove_export(ref)

    def refresh_export(self: VolumeManager, ref: VolumeRef) -> None:
        """After an in-use extend: the live export serves the new size.

        ensure_export notices the grown backing object (tgt re-creates the LUN on
        the same target; qemu-nbd restarts on the same port), keeping the
        credentials. A failure does not undo the extend: the next
        initialize_connection or service start ensures the export again.
        """
        if not isinstance(self.driver, ExportVD):
            return
        try:
            update = self.driver.ensure_export(ref) or {}
        except Exception:
            LOG.exception("volume %s was extended, but its export still has the old size", ref.id)
            return
        values = {k: update[k] for k in _EXPORT_KEYS if k in update}  # type: ignore[literal-required]
        if values:
            with self.db.session() as session:
                volumes_repo.compare_and_swap(session, ref.id, {}, values)

    def ensure_exports(self: VolumeManager) -> None:
        """At start-up: every attached volume is exported again, with its old credentials.

        The connectors of its attachments are let in again too: a target daemon
        that restarted (tgtd keeps nothing on disk) has lost their ACL entries,
        and an attached host logs in again on its own, without asking us.
        """
        if not isinstance(self.driver, ExportVD):
            return
        statuses = (
            VolumeStatus.IN_USE,
            VolumeStatus.ATTACHING,
            VolumeStatus.RESERVED,  # a multiattach volume may be reserved while attached
            VolumeStatus.DETACHING,
        )
        todo: list[tuple[VolumeRef, list[dict[str, Any]]]] = []
        with self.db.session() as session:
            for volume in volumes_repo.ids_on_host(session, self.host, statuses):
                connectors = [
                    attachments_repo.loads(a.connector)
                    for a in attachments_repo.of_volume(session, volume.id)
                    if a.attach_status in _CONNECTED and a.connection_info and a.connector
                ]
                busy = volume.status in (VolumeStatus.IN_USE, VolumeStatus.ATTACHING)
                if busy or connectors:
                    todo.append((volume_ref(volume), [c for c in connectors if c]))
        for ref, connectors in todo:
            try:
                update = self.driver.ensure_export(ref) or {}
                values = {k: update[k] for k in _EXPORT_KEYS if k in update}  # type: ignore[literal-required]
                if values:
                    with self.db.session() as session:
                        volumes_repo.compare_and_swap(session, ref.id, {}, values)
                    ref, _ = self._ref_for(ref.id)
                for connector in connectors:
                    self.driver.initialize_connection(ref, connector)
            except Exception:
                LOG.exception("could not re-export volume %s", ref.id)
