"""Cinder-shaped locations and connection_info, and connector validation (no daemons)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cinderblock.exceptions import InvalidConnectorException
from cinderblock.targets import process
from cinderblock.targets.base import Credentials, ExportRef, TargetError
from cinderblock.targets.nbd import NbdOptions, NbdTarget, location_of, port_of
from cinderblock.targets.tgt import TgtOptions, TgtTarget, parse_location

CREDS = Credentials("CHAP", "user1", "secretsecret1234")


def ref(read_only: bool = False) -> ExportRef:
    return ExportRef(object_id="v1", name="volume-v1", path="/nowhere", read_only=read_only)


def test_iscsi_connection_info_single_portal(tmp_path: Path) -> None:
    target = TgtTarget(TgtOptions(state_dir=str(tmp_path), ip="10.0.0.1"))
    assert target.connection_info(ref(), CREDS) == {
        "driver_volume_type": "iscsi",
        "data": {
            "target_discovered": False,
            "target_iqn": "iqn.2010-10.org.openstack:volume-v1",
            "target_portal": "10.0.0.1:3260",
            "target_lun": 1,
            "volume_id": "v1",
            "auth_method": "CHAP",
            "auth_username": "user1",
            "auth_password": "secretsecret1234",
            "discard": False,
        },
    }


def test_iscsi_connection_info_multipath_and_read_only(tmp_path: Path) -> None:
    options = TgtOptions(state_dir=str(tmp_path), ip="10.0.0.1", secondary_ips=("10.0.1.1",))
    data = TgtTarget(options).connection_info(ref(read_only=True), CREDS)["data"]
    iqn = "iqn.2010-10.org.openstack:volume-v1"
    assert data["target_portal"] == "10.0.0.1:3260"
    assert data["target_portals"] == ["10.0.0.1:3260", "10.0.1.1:3260"]
    assert data["target_iqns"] == [iqn, iqn]
    assert data["target_luns"] == [1, 1]
    assert data["access_mode"] == "ro"


def test_cinder_provider_location_format() -> None:
    iqn = "iqn.2010-10.org.openstack:volume-v1"
    assert parse_location(f"10.0.0.1:3260,7 {iqn} 1") == (["10.0.0.1:3260"], 7, iqn, 1)
    assert parse_location(f"10.0.0.1:3260;10.0.1.1:3260,2 {iqn} 1") == (
        ["10.0.0.1:3260", "10.0.1.1:3260"],
        2,
        iqn,
        1,
    )
    assert parse_location(f"[fd00::1]:3260,3 {iqn}") == (["[fd00::1]:3260"], 3, iqn, 1)
    assert parse_location("volume-v1") is None  # the file driver's own provider_location
    assert parse_location(None) is None
    assert parse_location(f"10.0.0.1:3260,x {iqn} 1") is None


@pytest.mark.parametrize(
    "connector", [{}, {"ip": "10.0.0.2"}, {"initiator": ""}, {"initiator": "  "}, {"initiator": 5}]
)
def test_iscsi_needs_an_initiator(tmp_path: Path, connector: dict[str, object]) -> None:
    target = TgtTarget(TgtOptions(state_dir=str(tmp_path)))
    with pytest.raises(InvalidConnectorException) as info:
        target.validate_connector(connector)
    assert info.value.kwargs == {"missing": "initiator"}
    assert info.value.code == 400


@pytest.mark.parametrize("enforce", [True, "True", "yes", "1", 1])
def test_enforced_multipath_needs_several_portals(tmp_path: Path, enforce: object) -> None:
    conn = {"initiator": "iqn.x:y", "multipath": True, "enforce_multipath": enforce}
    single = TgtTarget(TgtOptions(state_dir=str(tmp_path), ip="10.0.0.1"))
    with pytest.raises(InvalidConnectorException, match=re.escape("path (10.0.0.1:3260)")) as info:
        single.validate_connector(conn)
    assert info.value.code == 400
    multi = TgtTarget(TgtOptions(state_dir=str(tmp_path), secondary_ips=("10.0.1.1",)))
    multi.validate_connector(conn)
    with pytest.raises(InvalidConnectorException, match="NBD exports have no multipath"):
        NbdTarget(NbdOptions(state_dir=str(tmp_path))).validate_connector(conn)


@pytest.mark.parametrize("enforce", [False, "False", "no", None, 0, "maybe", [True]])
def test_multipath_not_enforced(tmp_path: Path, enforce: object) -> None:
    conn = {"initiator": "iqn.x:y", "multipath": True, "enforce_multipath": enforce}
    TgtTarget(TgtOptions(state_dir=str(tmp_path))).validate_connector(conn)
    NbdTarget(NbdOptions(state_dir=str(tmp_path))).validate_connector(conn)


def test_iscsi_initialize_without_stored_credentials_says_why(tmp_path: Path) -> None:
    target = TgtTarget(TgtOptions(state_dir=str(tmp_path)))
    with pytest.raises(TargetError, match="create_export must run"):
        target.initialize_connection(ref(), {"initiator": "iqn.x:y"})


def test_nbd_needs_nothing_from_the_connector(tmp_path: Path) -> None:
    NbdTarget(NbdOptions(state_dir=str(tmp_path))).validate_connector({})


def test_nbd_locations() -> None:
    assert location_of("10.0.0.1", 10809, "volume-v1") == "nbd://10.0.0.1:10809/volume-v1"
    assert location_of("fd00::1", 10810, "volume-v1") == "nbd://[fd00::1]:10810/volume-v1"
    assert port_of("nbd://[fd00::1]:10810/volume-v1") == 10810
    assert port_of("volume-v1") is None
    assert port_of(None) is None


def test_a_missing_tool_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TargetError, match=r"tgtadm was not found on PATH; install the 'tgt'"):
        process.find_tool("tgtadm", "tgt")


def test_secrets_are_masked_in_commands() -> None:
    argv = ["tgtadm", "--user", "u", "--password", "s3cret", "x=s3cret"]
    assert process.masked(argv, ("s3cret",)) == "tgtadm --user u --password *** x=***"
