"""Cluster access for the RBD driver: options, one librados connection, pool contexts.

Options (Cinder's names where Cinder has one): rbd_pool (default ``rbd``),
rbd_ceph_conf (default /etc/ceph/ceph.conf), rbd_user (default ``cinder``),
rbd_keyring (default: what the ceph.conf says), rbd_secret_uuid (libvirt
secret for connection info), rbd_cluster_name, rbd_namespace (ours: keep the
backend's images in one RBD namespace of the pool), rbd_max_clone_depth
(default 5), rbd_flatten_volume_from_snapshot (default false),
rados_connect_timeout (seconds, default 10), rbd_store_chunk_size (MiB, 4).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.rbd.errors import rados, rbd


@dataclass(frozen=True, slots=True)
class RbdOptions:
    pool: str
    ceph_conf: str
    user: str
    keyring: str | None
    secret_uuid: str | None
    cluster_name: str
    namespace: str
    max_clone_depth: int
    flatten_from_snapshot: bool
    connect_timeout: int
    order: int  # log2 of the object size

    @classmethod
    def from_config(cls, config: BackendConfig) -> RbdOptions:
        chunk_mib = config.get_int("rbd_store_chunk_size", 4)
        if chunk_mib < 1 or chunk_mib & (chunk_mib - 1):
            raise ValueError(f"[{config.name}] rbd_store_chunk_size must be a power of two")
        depth = config.get_int("rbd_max_clone_depth", 5)
        if depth < 0:
            raise ValueError(f"[{config.name}] rbd_max_clone_depth must be >= 0")
        return cls(
            pool=config.get_str("rbd_pool", "rbd").strip(),
            ceph_conf=config.get_str("rbd_ceph_conf", "/etc/ceph/ceph.conf").strip(),
            user=config.get_str("rbd_user", "cinder").strip(),
            keyring=(config.get("rbd_keyring") or "").strip() or None,
            secret_uuid=(config.get("rbd_secret_uuid") or "").strip() or None,
            cluster_name=config.get_str("rbd_cluster_name", "ceph").strip(),
            namespace=config.get_str("rbd_namespace", "").strip(),
            max_clone_depth=depth,
            flatten_from_snapshot=config.get_bool("rbd_flatten_volume_from_snapshot", False),
            connect_timeout=config.get_int("rados_connect_timeout", 10),
            order=20 + chunk_mib.bit_length() - 1,
        )


class Cluster:
    """A lazily made librados connection shared by the driver's threads."""

    def __init__(self, options: RbdOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._rados: Any = None

    def connection(self) -> Any:
        with self._lock:
            if self._rados is None:
                conf: dict[str, str] = {}
                if self.options.keyring:
                    conf["keyring"] = self.options.keyring
                client = rados.Rados(
                    conffile=self.options.ceph_conf,
                    rados_id=self.options.user,
                    clustername=self.options.cluster_name,
                    conf=conf,
                )
                client.connect(timeout=self.options.connect_timeout)
                self._rados = client
            return self._rados

    def instance_id(self) -> int:
        """Our client id as watcher lists show it (`client.<id>`)."""
        return int(self.connection().get_instance_id())

    @contextlib.contextmanager
    def ioctx(self) -> Iterator[Any]:
        ioctx = self.connection().open_ioctx(self.options.pool)
        try:
            if self.options.namespace:
                ioctx.set_namespace(self.options.namespace)
            yield ioctx
        finally:
            ioctx.close()

    @contextlib.contextmanager
    def image(
        self, name: str, *, snapshot: str | None = None, read_only: bool = False
    ) -> Iterator[Any]:
        with (
            self.ioctx() as ioctx,
            rbd.Image(ioctx, name, snapshot=snapshot, read_only=read_only) as image,
        ):
            yield image

    def mon_command(self, prefix: str, **args: Any) -> bytes:
        import json

        ret, out, err = self.connection().mon_command(
            json.dumps({"prefix": prefix, "format": "json", **args}), b""
        )
        if ret != 0:
            raise rados.Error(f"mon command {prefix} failed ({ret}): {err}")
        return bytes(out)

    def close(self) -> None:
        with self._lock:
            if self._rados is not None:
                self._rados.shutdown()
                self._rados = None
