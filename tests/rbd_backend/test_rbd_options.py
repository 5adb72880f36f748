"""RBD driver options and the qemu `rbd:` source it hands qemu-nbd (no cluster needed)."""

from __future__ import annotations

import pytest

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.rbd.client import RbdOptions
from cinderblock.drivers.rbd.export import rbd_source


def options(**values: str) -> RbdOptions:
    return RbdOptions.from_config(
        BackendConfig(name="ceph", volume_driver="rbd", volume_backend_name="ceph", options=values)
    )


def test_defaults_follow_cinder() -> None:
    opts = options()
    assert (opts.pool, opts.user, opts.ceph_conf) == ("rbd", "cinder", "/etc/ceph/ceph.conf")
    assert opts.max_clone_depth == 5
    assert opts.flatten_from_snapshot is False
    assert opts.order == 22  # 4 MiB objects


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("rbd_max_clone_depth", "-1", "rbd_max_clone_depth"),
        ("rbd_store_chunk_size", "3", "power of two"),
        ("rbd_flatten_volume_from_snapshot", "maybe", "boolean"),
    ],
)
def test_bad_options_are_refused_at_start(key: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options(**{key: value})


def test_rbd_source_escapes_qemu_separators() -> None:
    opts = options(
        rbd_pool="vols",
        rbd_namespace="ns1",
        rbd_user="cb",
        rbd_ceph_conf="/etc/ce:ph/ceph.conf",
        rbd_keyring="/k/cb.keyring",
    )
    assert rbd_source(opts, "volume-1") == (
        "rbd:vols/ns1/volume-1:id=cb:conf=/etc/ce\\:ph/ceph.conf:keyring=/k/cb.keyring"
    )
    assert rbd_source(options(rbd_pool="p", rbd_user="u"), "i", "s").startswith("rbd:p/i@s:id=u:")
