"""In-use extend (3.42) through the API: the live export shows the new size.

`cinderblock serve` exports a file-driver volume through a private tgtd (or
qemu-nbd); a real initiator writes a pattern, the volume is extended while
in-use, and the initiator then sees the new capacity on the same target with
the same credentials, still reads the pattern, and can write past the old end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .tgt_support import (
    DataPathService,
    Tgtd,
    assert_ok,
    capacity,
    connector,
    file_has,
    image_opts,
    qemu_io,
    running_tgtd,
)

GiB = 1024**3
MiB = 1024**2


@pytest.fixture(scope="module")
def tgtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tgtd]:
    with running_tgtd(tmp_path_factory.mktemp("tgtd") / "log") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def iscsi_service(
    tgtd: Tgtd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DataPathService]:
    service = DataPathService(tmp_path_factory.mktemp("extend-iscsi"), "iscsi", tgtd)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def extend(service: DataPathService, volume_id: str, new_size: int, version: str = "3.42") -> Any:
    body = {"os-extend": {"new_size": new_size}}
    return service.request("POST", f"/volumes/{volume_id}/action", body, version=version)


def test_in_use_extend_resizes_the_iscsi_export(iscsi_service: DataPathService, tgtd: Tgtd) -> None:
    service = iscsi_service
    vol = service.create_volume(1)
    conn = connector()
    att = service.attach(vol["id"], conn)
    data = att["connection_info"]
    assert data["driver_volume_type"] == "iscsi" and data["auth_method"] == "CHAP"
    assert capacity(data, conn["initiator"]) == GiB
    assert_ok(qemu_io(image_opts(data, conn["initiator"]), "write -P 0x5c 1020M 4M"))
    tid_before = tgtd.show().partition(data["target_iqn"])[0].rpartition("Target ")[2]

    # Below 3.42 an in-use volume cannot be extended.
    refused = extend(service, vol["id"], 2, version="3.41")
    assert refused.status_code == 400, refused.text
    resp = extend(service, vol["id"], 2)
    assert resp.status_code == 202, resp.text
    shown = service.wait_volume(vol["id"], "in-use")
    assert shown["size"] == 2

    # A new login sees the new size: same target (same tid), same CHAP account.
    assert capacity(data, conn["initiator"]) == 2 * GiB
    show = tgtd.show()
    assert show.partition(data["target_iqn"])[0].rpartition("Target ")[2] == tid_before
    assert data["auth_username"] in show and conn["initiator"] in show
    spec = image_opts(data, conn["initiator"])
    assert_ok(qemu_io(spec, "read -P 0x5c 1020M 4M", "write -P 0xe7 1536M 4M"))
    assert_ok(qemu_io(spec, "read -P 0xe7 1536M 4M", "read -P 0 2044M 4M"))
    path = service.volumes_dir / f"volume-{vol['id']}"
    assert path.stat().st_size == 2 * GiB
    assert file_has(path, 1020 * MiB, 4 * MiB, 0x5C)
    assert file_has(path, 1536 * MiB, 4 * MiB, 0xE7)

    # The API hands out the same target and credentials as before the extend.
    info = service.initialize_connection(vol["id"], conn)
    for key in ("target_iqn", "target_portal", "target_lun", "auth_username", "auth_password"):
        assert info["data"][key] == data[key], key
    resp = service.request("DELETE", f"/attachments/{att['id']}")
    assert resp.status_code == 200, resp.text
    assert data["target_iqn"] not in tgtd.show()


def test_in_use_extend_keeps_an_open_session(iscsi_service: DataPathService) -> None:
    """A client logged in across the extend keeps working (tgt re-creates only the LUN)."""
    service = iscsi_service
    vol = service.create_volume(1)
    conn = connector()
    data = service.attach(vol["id"], conn)["connection_info"]
    spec = image_opts(data, conn["initiator"])
    commands = ["write -P 0x31 0 1M", "sleep 6000", "read -P 0x31 0 1M", "write -P 0x32 1M 1M"]
    argv = ["qemu-io", "--image-opts"]
    for command in commands:
        argv += ["-c", command]
    client = subprocess.Popen(
        [*argv, spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert extend(service, vol["id"], 2).status_code == 202
        assert service.wait_volume(vol["id"], "in-use")["size"] == 2
        out, err = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == 0, (out, err)
    assert "read 1048576/1048576" in out and "wrote 1048576/1048576" in out, (out, err)
    assert "failed" not in out + err, (out, err)
    assert capacity(data, conn["initiator"]) == 2 * GiB


@pytest.mark.skipif(shutil.which("qemu-nbd") is None, reason="qemu-nbd is not installed")
def test_in_use_extend_resizes_the_nbd_export(tmp_path: Path) -> None:
    service = DataPathService(tmp_path, "nbd")
    service.start()
    try:
        vol = service.create_volume(1)
        att = service.attach(vol["id"], {"host": "nbd-client"})
        data = att["connection_info"]
        assert data["driver_volume_type"] == "nbd"
        url = f"nbd://{data['host']}:{data['port']}/{data['export_name']}"
        assert nbd_size(url) == GiB
        assert_ok(qemu_io(url, "write -P 0x4d 1020M 4M"))

        assert extend(service, vol["id"], 3).status_code == 202
        assert service.wait_volume(vol["id"], "in-use")["size"] == 3
        # Same host, port and export name; the new size.
        info = service.initialize_connection(vol["id"], {"host": "nbd-client"})["data"]
        assert (info["host"], info["port"], info["export_name"]) == (
            data["host"],
            data["port"],
            data["export_name"],
        )
        assert nbd_size(url) == 3 * GiB
        assert_ok(qemu_io(url, "read -P 0x4d 1020M 4M", "write -P 0x4e 2G 4M"))
        path = service.volumes_dir / f"volume-{vol['id']}"
        assert file_has(path, 2 * GiB, 4 * MiB, 0x4E)
        # The last detach stops the qemu-nbd the service started.
        assert service.request("DELETE", f"/attachments/{att['id']}").status_code == 200
        assert not list((service.volumes_dir / ".nbd").glob("*.pid"))
    finally:
        service.stop()


def nbd_size(url: str) -> int:
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "raw", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["virtual-size"])
