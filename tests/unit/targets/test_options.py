"""Choosing and configuring a target from backend options (nothing is started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cinderblock.drivers.base import ExportVD, capabilities_of
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.file.driver import FileDriver
from cinderblock.targets import NbdTarget, TgtTarget, make_target
from cinderblock.targets.nbd import NbdOptions
from cinderblock.targets.tgt import TgtOptions


def config(**options: str) -> BackendConfig:
    return BackendConfig("b1", "file", "b1", options)


def test_iscsi_is_the_default_with_cinder_defaults(tmp_path: Path) -> None:
    target = make_target(config(), str(tmp_path))
    assert isinstance(target, TgtTarget)
    assert target.options == TgtOptions(state_dir=os.path.join(tmp_path, ".tgt"))
    assert target.options.prefix == "iqn.2010-10.org.openstack:"
    assert target.portals == ["127.0.0.1:3260"]
    assert target.iqn_for("volume-1") == "iqn.2010-10.org.openstack:volume-1"


def test_iscsi_options(tmp_path: Path) -> None:
    target = make_target(
        config(
            target_protocol="ISCSI",
            iscsi_target_prefix="iqn.2024-01.org.example:",
            target_ip_address="10.0.0.1",
            target_port="3261",
            iscsi_secondary_ip_addresses=" 10.0.1.1, fd00::1 ,",
            tgt_manage_daemon="yes",
            tgt_control_port="7",
            tgt_state_dir="/var/lib/cb/tgt",
            tgt_backing_store_flags="direct",
        ),
        str(tmp_path),
    )
    assert isinstance(target, TgtTarget)
    assert target.portals == ["10.0.0.1:3261", "10.0.1.1:3261", "[fd00::1]:3261"]
    assert target.options.manage_daemon and target.options.control_port == 7
    assert target.options.state_dir == "/var/lib/cb/tgt"
    assert target.options.supervise_interval == 10.0  # a managed tgtd is supervised
    assert target.iqn_for("snapshot-9") == "iqn.2024-01.org.example:snapshot-9"


def test_iscsi_login_parameters(tmp_path: Path) -> None:
    default = make_target(config(), str(tmp_path))
    assert isinstance(default, TgtTarget)
    assert ("MaxBurstLength", "1048576") in default.options.target_params
    assert ("InitialR2T", "No") in default.options.target_params
    for off in ("none", "", " None "):
        target = make_target(config(tgt_target_params=off), str(tmp_path))
        assert isinstance(target, TgtTarget) and target.options.target_params == ()
    target = make_target(config(tgt_target_params=" HeaderDigest=CRC32C "), str(tmp_path))
    assert isinstance(target, TgtTarget)
    assert target.options.target_params == (("HeaderDigest", "CRC32C"),)


def test_nbd_options(tmp_path: Path) -> None:
    target = make_target(config(target_protocol="nbd"), str(tmp_path))
    assert isinstance(target, NbdTarget)
    assert target.options == NbdOptions(state_dir=os.path.join(tmp_path, ".nbd"))
    assert (target.options.port_min, target.options.port_max) == (10809, 10909)
    target = make_target(
        config(target_protocol="nbd", nbd_port_range="2000-2003", nbd_tls="PSK"), str(tmp_path)
    )
    assert isinstance(target, NbdTarget)
    assert (target.options.port_min, target.options.port_max, target.options.tls) == (
        2000,
        2003,
        "psk",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target_protocol": "fc"}, "target_protocol must be one of iscsi, nbd"),
        ({"target_port": "0"}, "target_port"),
        ({"target_port": "http"}, "target_port must be an integer"),
        ({"tgt_control_port": "40000"}, "tgt_control_port must be 0-32767"),
        ({"tgt_manage_daemon": "maybe"}, "tgt_manage_daemon must be a boolean"),
        ({"tgt_backing_store_flags": "fast"}, "tgt_backing_store_flags"),
        ({"tgt_supervise_interval": "-1"}, "tgt_supervise_interval must be 0 or more"),
        ({"tgt_supervise_interval": "nan"}, "tgt_supervise_interval must be 0 or more"),
        ({"iscsi_target_prefix": "iqn x:"}, "iscsi_target_prefix"),
        ({"tgt_target_params": "MaxBurstLength"}, "tgt_target_params must be Name=value"),
        ({"tgt_target_params": "A=1,,B=2"}, "tgt_target_params must be Name=value"),
        ({"target_protocol": "nbd", "nbd_port_range": "a-b"}, "nbd_port_range must be like"),
        ({"target_protocol": "nbd", "nbd_port_range": "3000-2000"}, "is not a port range"),
        ({"target_protocol": "nbd", "nbd_tls": "x509"}, "nbd_tls must be one of none, psk"),
        ({"target_protocol": "nbd", "nbd_cache": "fast"}, "nbd_cache must be one of"),
        ({"target_protocol": "nbd", "nbd_shared_clients": "0"}, "nbd_shared_clients"),
    ],
)
def test_bad_options_are_refused_at_start(
    tmp_path: Path, options: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_target(config(**options), str(tmp_path))
    with pytest.raises(ValueError, match=message):
        FileDriver(config(file_volumes_dir=str(tmp_path), **options), "h@b1")


def test_the_file_driver_exports(tmp_path: Path) -> None:
    driver = FileDriver(config(file_volumes_dir=str(tmp_path)), "h@b1")
    assert isinstance(driver, ExportVD)
    assert "export" in capabilities_of(driver)
    assert isinstance(driver.target, TgtTarget)
    nbd = FileDriver(config(file_volumes_dir=str(tmp_path), target_protocol="nbd"), "h@b1")
    assert isinstance(nbd.target, NbdTarget)
    assert nbd.target.options.state_dir == os.path.join(tmp_path, ".nbd")
