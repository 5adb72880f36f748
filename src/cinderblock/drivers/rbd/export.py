"""Connections for RBD volumes: native ``rbd`` connection info, or an NBD export.

``target_protocol = rbd`` (default): no export; initialize_connection returns
what a librbd client (qemu/libvirt through os-brick) needs: ``name``
(pool/image), monitor ``hosts``/``ports``, ``cluster_name``, cephx user and
libvirt ``secret_uuid``, ``discard``.

``target_protocol = nbd``: for hosts without librbd, qemu-nbd serves the
image through its ``rbd:`` driver (qemu-block-extra) with the backend's own
cephx user: the NBD target of cinderblock.targets, fed an ``rbd:`` source
instead of a file. Its state lives in nbd_state_dir (default
/var/lib/cinderblock/rbd-nbd/<backend>).
"""

from __future__ import annotations

import json
import os
from typing import Any

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.rbd import images
from cinderblock.drivers.rbd.client import Cluster, RbdOptions
from cinderblock.drivers.rbd.errors import rbd, translated
from cinderblock.drivers.refs import Connector, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import BackendObjectNotFound
from cinderblock.targets import ExportRef
from cinderblock.targets.nbd import NbdOptions, NbdTarget

PROTOCOLS = ("rbd", "nbd")


def _qemu_escape(value: str) -> str:
    """Escape ':' and '\\' for qemu's legacy rbd: filename syntax."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def rbd_source(options: RbdOptions, image: str, snap: str | None = None) -> str:
    """qemu's ``rbd:pool[/namespace]/image[@snap]:id=..:conf=..`` filename."""
    spec = options.pool + (f"/{options.namespace}" if options.namespace else "") + f"/{image}"
    if snap:
        spec += f"@{snap}"
    parts = [f"rbd:{_qemu_escape(spec)}", f"id={_qemu_escape(options.user)}"]
    parts.append(f"conf={_qemu_escape(options.ceph_conf)}")
    if options.keyring:
        parts.append(f"keyring={_qemu_escape(options.keyring)}")
    return ":".join(parts)


class RbdNbdTarget(NbdTarget):
    """The NBD target with `rbd:` sources (ExportRef.path holds the source)."""

    def _source(self, ref: ExportRef) -> str:
        return ref.path

    def _source_exists(self, source: str) -> bool:
        return source.startswith("rbd:")


class RbdExportMixin:
    cluster: Cluster
    options: RbdOptions
    target: RbdNbdTarget | None

    def _image_name(self, volume: VolumeRef) -> str:
        raise NotImplementedError

    def _snapshot_spec(self, snapshot: SnapshotRef) -> tuple[str, str]:
        raise NotImplementedError

    def _init_export(self, config: BackendConfig) -> None:
        protocol = config.get_str("target_protocol", "rbd").strip().lower()
        if protocol not in PROTOCOLS:
            raise ValueError(f"[{config.name}] target_protocol must be rbd or nbd for RBD")
        self.target = None
        if protocol == "nbd":
            state_root = os.path.join("/var/lib/cinderblock/rbd-nbd", config.name)
            options = NbdOptions.from_config(config, "")
            if not options.state_dir:
                options = NbdOptions.from_config(config, state_root)
            os.makedirs(options.state_dir, mode=0o750, exist_ok=True)
            self.target = RbdNbdTarget(options)

    def _require(self, image: str, snap: str | None = None) -> None:
        try:
            with self.cluster.image(image, read_only=True) as img:
                if snap is not None and snap not in images.snap_names(img):
                    raise BackendObjectNotFound(name=f"{image}@{snap}")
        except rbd.ImageNotFound:
            raise BackendObjectNotFound(name=image) from None

    def _volume_export(self, volume: VolumeRef, *, must_exist: bool = True) -> ExportRef:
        name = self._image_name(volume)
        if must_exist:
            self._require(name)
        return ExportRef(
            object_id=volume.id,
            name=volume.name,
            path=rbd_source(self.options, name),
            provider_auth=volume.provider_auth,
        )

    # --- ExportVD ---------------------------------------------------------------------
    @translated("create_export")
    def create_export(self, volume: VolumeRef, connector: Connector | None) -> ModelUpdate | None:
        return self.ensure_export(volume)

    @translated("ensure_export")
    def ensure_export(self, volume: VolumeRef) -> ModelUpdate | None:
        if self.target is None:
            return None
        export = self.target.ensure_export(self._volume_export(volume))
        if export.provider_auth == volume.provider_auth:
            return None
        return {"provider_auth": export.provider_auth}

    @translated("remove_export")
    def remove_export(self, volume: VolumeRef) -> None:
        if self.target is not None:
            self.target.remove_export(self._volume_export(volume, must_exist=False))

    def validate_connector(self, connector: Connector) -> None:
        if self.target is not None:
            self.target.validate_connector(connector)

    @translated("initialize_connection")
    def initialize_connection(self, volume: VolumeRef, connector: Connector) -> dict[str, Any]:
        if self.target is not None:
            return self.target.initialize_connection(self._volume_export(volume), connector)
        name = self._image_name(volume)
        self._require(name)
        hosts, ports = self._monitors()
        data: dict[str, Any] = {
            "name": f"{self.options.pool}/{name}",
            "hosts": hosts,
            "ports": ports,
            "cluster_name": self.options.cluster_name,
            "auth_enabled": bool(self.options.user),
            "auth_username": self.options.user,
            "secret_type": "ceph",
            "secret_uuid": self.options.secret_uuid,
            "volume_id": volume.id,
            "discard": True,
            "qos_specs": None,
            "access_mode": "rw",
            "encrypted": False,
        }
        if self.options.namespace:
            data["namespace"] = self.options.namespace
        return {"driver_volume_type": "rbd", "data": data}

    @translated("terminate_connection")
    def terminate_connection(self, volume: VolumeRef, connector: Connector | None) -> None:
        if self.target is not None:
            self.target.terminate_connection(
                self._volume_export(volume, must_exist=False), connector
            )

    def _monitors(self) -> tuple[list[str], list[str]]:
        """Monitor addresses (v1, as librbd clients of any age speak it) from the mon map."""
        monmap = json.loads(self.cluster.mon_command("mon dump"))
        hosts: list[str] = []
        ports: list[str] = []
        for mon in monmap.get("mons", []):
            addrs = mon.get("public_addrs", {}).get("addrvec", [])
            chosen = next((a for a in addrs if a.get("type") == "v1"), addrs[0] if addrs else None)
            if chosen is None:
                continue
            host, _, port = chosen["addr"].rpartition(":")
            hosts.append(host.strip("[]"))
            ports.append(port)
        return hosts, ports
