"""Reflink snapshots and clones on a real XFS filesystem (loop-mounted image).

Needs root, mkfs.xfs (xfsprogs), losetup and a kernel that lets us loop-mount;
skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cinderblock.drivers.refs import GiB, SnapshotRef, VolumeRef

MiB = 1024**2
DATA_MIB = 200

pytestmark = pytest.mark.root


def free_bytes(path: Path) -> int:
    os.sync()
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def shared(path: Path) -> bool:
    out = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True, check=True)
    return "shared" in out.stdout


@pytest.fixture(scope="module")
def xfs_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to loop-mount an XFS image")
    for tool in ("mkfs.xfs", "losetup", "mount", "umount", "filefrag"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install xfsprogs e2fsprogs util-linux)")
    base = tmp_path_factory.mktemp("xfs")
    image = base / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(GiB)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mnt = base / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount XFS here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])


def fill(path: str, mib: int) -> None:
    """Write `mib` MiB of non-zero data (distinct per MiB) at the start of the file."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for i in range(mib):
            os.pwrite(fd, bytes([i % 251 + 1]) * MiB, i * MiB)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path: Path | str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_reflink_snapshots_and_clones_share_extents(make_file_driver: Any, xfs_mount: Path) -> None:
    driver = make_file_driver(xfs_mount / "reflink", file_reflink="always")
    assert driver.reflink_supported
    assert driver.get_volume_stats(refresh=True)["pools"][0]["reflink_support"] is True
    vol = VolumeRef(id="v1", size=1, provider_location="volume-v1")
    driver.create_volume(vol)
    src = driver.local_path(vol)
    fill(src, DATA_MIB)

    before = free_bytes(xfs_mount)
    snap = SnapshotRef(id="s1", volume=vol, size=1, provider_location="volume-v1@snapshot-s1")
    driver.create_snapshot(snap)
    from_snap = VolumeRef(id="v2", size=2, provider_location="volume-v2")
    driver.create_volume_from_snapshot(from_snap, snap)
    clone = VolumeRef(id="v3", size=1, provider_location="volume-v3")
    driver.create_cloned_volume(clone, vol)
    used = before - free_bytes(xfs_mount)
    # Three more copies of 200 MiB cost almost nothing: the extents are shared.
    assert used < 16 * MiB, f"reflinks used {used / MiB:.1f} MiB"

    snap_path = Path(driver.volumes_dir) / "volume-v1@snapshot-s1"
    for path in (snap_path, Path(driver.local_path(from_snap)), Path(driver.local_path(clone))):
        assert shared(path), path
        assert read_at(path, 150 * MiB, 16) == bytes([150 % 251 + 1]) * 16
    assert os.stat(driver.local_path(from_snap)).st_size == 2 * GiB

    # Copy-on-write: a write to the source does not reach the snapshot.
    with open(src, "r+b") as f:
        f.seek(150 * MiB)
        f.write(b"\xee" * 16)
    assert read_at(snap_path, 150 * MiB, 16) == bytes([150 % 251 + 1]) * 16

    driver.revert_to_snapshot(vol, snap)
    assert read_at(src, 150 * MiB, 16) == bytes([150 % 251 + 1]) * 16
    assert shared(Path(src))


def test_never_mode_copies_even_on_xfs(make_file_driver: Any, xfs_mount: Path) -> None:
    driver = make_file_driver(xfs_mount / "copy", file_reflink="never")
    assert driver.get_volume_stats()["pools"][0]["reflink_support"] is False
    vol = VolumeRef(id="v1", size=1, provider_location="volume-v1")
    driver.create_volume(vol)
    fill(driver.local_path(vol), 64)
    before = free_bytes(xfs_mount)
    snap = SnapshotRef(id="s1", volume=vol, size=1, provider_location="volume-v1@snapshot-s1")
    driver.create_snapshot(snap)
    used = before - free_bytes(xfs_mount)
    assert used >= 60 * MiB, f"a real copy should use ~64 MiB, used {used / MiB:.1f} MiB"
    snap_path = Path(driver.volumes_dir) / "volume-v1@snapshot-s1"
    assert not shared(snap_path)
    assert read_at(snap_path, 63 * MiB, 8) == bytes([63 + 1]) * 8
    assert os.stat(snap_path).st_blocks * 512 < 80 * MiB  # the empty rest stays a hole
