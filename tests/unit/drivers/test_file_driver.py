"""File driver behaviour on the real filesystem under tmp_path (ext4 here: the copy path)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from cinderblock.drivers.file import fileops
from cinderblock.drivers.file.driver import FileDriver
from cinderblock.drivers.refs import GiB, SnapshotRef, VolumeRef
from cinderblock.exceptions import BackendObjectNotFound, VolumeBackendAPIException

MiB = 1024**2


def write_at(path: Path | str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def read_at(path: Path | str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def allocated(path: Path | str) -> int:
    """Bytes really allocated on disk, as opposed to the apparent size."""
    return os.stat(path).st_blocks * 512


def digest(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def shared_extents(path: Path | str) -> bool | None:
    """Whether filefrag reports shared (reflinked) extents; None without filefrag."""
    if not shutil.which("filefrag"):
        return None
    out = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True, check=True)
    return "shared" in out.stdout


def volume(driver: FileDriver, vid: str, size: int = 1) -> VolumeRef:
    ref = VolumeRef(id=vid, size=size)
    update = driver.create_volume(ref)
    assert update
    return VolumeRef(id=vid, size=size, provider_location=update["provider_location"])


def snapshot(driver: FileDriver, sid: str, vol: VolumeRef) -> SnapshotRef:
    ref = SnapshotRef(id=sid, volume=vol, size=vol.size)
    update = driver.create_snapshot(ref)
    assert update
    return SnapshotRef(
        id=sid, volume=vol, size=vol.size, provider_location=update["provider_location"]
    )


@pytest.fixture
def copy_only_dir(volumes_dir: Path) -> Path:
    """tmp_path must lack reflinks for the copy-path tests (ext4 does)."""
    volumes_dir.mkdir(parents=True, exist_ok=True)
    if fileops.probe_reflink(str(volumes_dir)):
        pytest.skip("tmp_path supports reflinks; the copy path is covered by file_reflink=never")
    return volumes_dir


# --- layout -----------------------------------------------------------------------------
def test_create_makes_a_sparse_file_with_the_right_size(file_driver: FileDriver) -> None:
    vol = volume(file_driver, "v1", size=10)
    path = Path(file_driver.local_path(vol))
    assert vol.provider_location == "volume-v1"
    assert path == Path(file_driver.volumes_dir) / "volume-v1"
    assert path.is_absolute()
    assert path.stat().st_size == 10 * GiB
    assert allocated(path) < MiB
    assert path.stat().st_mode & 0o777 == 0o600


def test_snapshot_file_naming_convention(file_driver: FileDriver) -> None:
    vol = volume(file_driver, "v1")
    snap = snapshot(file_driver, "s1", vol)
    assert snap.provider_location == "volume-v1@snapshot-s1"
    assert (Path(file_driver.volumes_dir) / "volume-v1@snapshot-s1").is_file()


def test_create_refuses_to_overwrite_an_existing_file(file_driver: FileDriver) -> None:
    vol = volume(file_driver, "v1")
    path = file_driver.local_path(vol)
    write_at(path, 0, b"precious")
    with pytest.raises(VolumeBackendAPIException):
        file_driver.create_volume(VolumeRef(id="v1", size=2))
    assert read_at(path, 0, 8) == b"precious"
    assert os.stat(path).st_size == GiB
    assert not [n for n in os.listdir(file_driver.volumes_dir) if n.startswith(".")]


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "/etc/passwd", "x\x00y", "v@s"])
def test_names_from_the_database_cannot_leave_the_directory(
    file_driver: FileDriver, tmp_path: Path, bad: str
) -> None:
    (tmp_path / "escape").write_bytes(b"outside")
    vol = VolumeRef(id="v1", size=1, provider_location=bad)
    for call in (file_driver.delete_volume, file_driver.volume_exists, file_driver.local_path):
        with pytest.raises(VolumeBackendAPIException):
            call(vol)
    with pytest.raises(VolumeBackendAPIException):
        file_driver.extend_volume(vol, 2)
    assert (tmp_path / "escape").read_bytes() == b"outside"


def test_do_setup_removes_stale_temp_files_only(make_file_driver: Any, volumes_dir: Path) -> None:
    volumes_dir.mkdir()
    (volumes_dir / ".tmp-deadbeef").write_bytes(b"half written")
    (volumes_dir / ".keep").write_bytes(b"")
    (volumes_dir / "volume-x").write_bytes(b"data")
    make_file_driver()
    assert sorted(os.listdir(volumes_dir)) == [".keep", "volume-x"]


def test_config_errors(make_file_driver: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_reflink"):
        make_file_driver(file_reflink="sometimes")
    driver = make_file_driver(setup=False, file_volumes_dir="")
    with pytest.raises(VolumeBackendAPIException, match="file_volumes_dir"):
        driver.do_setup()


def test_missing_source_is_backend_object_not_found(file_driver: FileDriver) -> None:
    ghost = VolumeRef(id="ghost", size=1)
    with pytest.raises(BackendObjectNotFound):
        file_driver.create_cloned_volume(VolumeRef(id="v2", size=1), ghost)
    with pytest.raises(BackendObjectNotFound):
        file_driver.extend_volume(ghost, 2)
    assert os.listdir(file_driver.volumes_dir) == []


# --- copy path (no reflink) -----------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "never"])
def test_snapshot_and_clone_by_sparse_copy(
    make_file_driver: Any, copy_only_dir: Path, mode: str
) -> None:
    driver = make_file_driver(file_reflink=mode)
    assert driver.get_volume_stats()["pools"][0]["reflink_support"] is False
    vol = volume(driver, "v1", size=4)
    src = driver.local_path(vol)
    for offset in (0, 100 * MiB, 3 * GiB + 5 * MiB):
        write_at(src, offset, os.urandom(MiB))
    write_at(src, 2 * GiB, bytes(MiB))  # written zeros
    snap = snapshot(driver, "s1", vol)
    snap_path = os.path.join(driver.volumes_dir, snap.provider_location or "")
    for offset in (0, 100 * MiB, 2 * GiB, 3 * GiB + 5 * MiB, 3 * GiB):
        assert read_at(snap_path, offset, MiB) == read_at(src, offset, MiB)
    assert os.stat(snap_path).st_size == 4 * GiB
    # Holes stay holes: only the written megabytes take space.
    assert allocated(snap_path) <= 5 * MiB
    assert shared_extents(snap_path) in (False, None)

    clone = VolumeRef(id="v2", size=5)
    update = driver.create_cloned_volume(clone, vol)
    clone_path = os.path.join(driver.volumes_dir, update["provider_location"])
    assert os.stat(clone_path).st_size == 5 * GiB
    assert read_at(clone_path, 100 * MiB, MiB) == read_at(src, 100 * MiB, MiB)
    assert allocated(clone_path) <= 5 * MiB


def test_reflink_always_fails_setup_without_support(
    make_file_driver: Any, copy_only_dir: Path
) -> None:
    with pytest.raises(VolumeBackendAPIException, match="reflink"):
        make_file_driver(file_reflink="always")


def test_failed_copy_leaves_nothing_behind(file_driver: FileDriver) -> None:
    vol = volume(file_driver, "v1")
    src = file_driver.local_path(vol)
    write_at(src, 0, b"keep me")
    no_space = OSError(errno.ENOSPC, "No space left on device")
    with (
        mock.patch.object(fileops, "reflink", side_effect=no_space),
        mock.patch("os.copy_file_range", side_effect=no_space),
        mock.patch("os.pwrite", side_effect=no_space),
        pytest.raises(VolumeBackendAPIException, match="No space"),
    ):
        snapshot(file_driver, "s1", vol)
    assert os.listdir(file_driver.volumes_dir) == ["volume-v1"]
    assert read_at(src, 0, 7) == b"keep me"
    assert os.stat(src).st_size == GiB


def test_failed_revert_keeps_the_volume(file_driver: FileDriver) -> None:
    vol = volume(file_driver, "v1")
    path = file_driver.local_path(vol)
    write_at(path, 0, b"old")
    snap = snapshot(file_driver, "s1", vol)
    write_at(path, 0, b"new")
    no_space = OSError(errno.ENOSPC, "No space left on device")
    with (
        mock.patch.object(fileops, "reflink", side_effect=no_space),
        mock.patch("os.copy_file_range", side_effect=no_space),
        mock.patch("os.pwrite", side_effect=no_space),
        pytest.raises(VolumeBackendAPIException),
    ):
        file_driver.revert_to_snapshot(vol, snap)
    assert read_at(path, 0, 3) == b"new"
    assert sorted(os.listdir(file_driver.volumes_dir)) == ["volume-v1", "volume-v1@snapshot-s1"]
    file_driver.revert_to_snapshot(vol, snap)
    assert read_at(path, 0, 3) == b"old"


def test_revert_keeps_file_mode(file_driver: FileDriver) -> None:
    vol = volume(file_driver, "v1")
    snap = snapshot(file_driver, "s1", vol)
    os.chmod(file_driver.local_path(vol), 0o640)
    file_driver.revert_to_snapshot(vol, snap)
    assert os.stat(file_driver.local_path(vol)).st_mode & 0o777 == 0o640


def test_extend_only_grows(file_driver: FileDriver) -> None:
    vol = volume(file_driver, "v1", size=2)
    file_driver.extend_volume(vol, 2)  # same size: nothing to do
    with pytest.raises(VolumeBackendAPIException, match="shrink"):
        file_driver.extend_volume(vol, 1)
    assert os.stat(file_driver.local_path(vol)).st_size == 2 * GiB
    file_driver.extend_volume(vol, 8)
    assert os.stat(file_driver.local_path(vol)).st_size == 8 * GiB
    assert allocated(file_driver.local_path(vol)) < MiB


# --- stats --------------------------------------------------------------------------------
def test_stats_are_cached_until_refresh(file_driver: FileDriver) -> None:
    first = file_driver.get_volume_stats()
    assert first["pools"][0]["allocated_capacity_gb"] == 0
    volume(file_driver, "v1", size=3)
    assert file_driver.get_volume_stats() == first
    pool = file_driver.get_volume_stats(refresh=True)["pools"][0]
    assert pool["allocated_capacity_gb"] == 3.0
    vfs = os.statvfs(file_driver.volumes_dir)
    assert pool["total_capacity_gb"] == round(vfs.f_blocks * vfs.f_frsize / GiB, 2)
    assert 0 < pool["free_capacity_gb"] <= pool["total_capacity_gb"]
    assert pool["max_over_subscription_ratio"] == 20.0
    assert pool["reserved_percentage"] == 0
    assert pool["thick_provisioning_support"] is False


def test_stats_options(make_file_driver: Any) -> None:
    driver = make_file_driver(max_over_subscription_ratio="2.5", reserved_percentage="10")
    pool = driver.get_volume_stats()["pools"][0]
    assert (pool["max_over_subscription_ratio"], pool["reserved_percentage"]) == (2.5, 10)


# --- fileops --------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel_copy", [True, False])
def test_sparse_copy_keeps_holes_and_content(tmp_path: Path, kernel_copy: bool) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
    write_at(src, 0, b"head")
    write_at(src, 10 * MiB, os.urandom(3 * MiB))
    write_at(src, 40 * MiB, bytes(4 * MiB))  # allocated but zero
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fileops.sparse_copy(sfd, dfd, 64 * MiB, kernel_copy=kernel_copy)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert digest(src) == digest(dst)
    assert os.stat(dst).st_size == 64 * MiB
    limit = 8 * MiB if kernel_copy else 4 * MiB  # read/write also skips the zero block
    assert allocated(dst) <= limit


def test_data_extents_skips_holes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.truncate(32 * MiB)
    write_at(path, 8 * MiB, b"x" * MiB)
    fd = os.open(path, os.O_RDONLY)
    try:
        extents = list(fileops.data_extents(fd, 32 * MiB))
    finally:
        os.close(fd)
    assert sum(length for _, length in extents) <= 2 * MiB
    assert extents[0][0] <= 8 * MiB < extents[0][0] + extents[0][1]


def test_rename_noreplace_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        fileops.rename_noreplace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "a").read_bytes() == b"a"
    assert (tmp_path / "b").read_bytes() == b"b"
    fileops.rename_noreplace(str(tmp_path / "a"), str(tmp_path / "c"))
    assert sorted(os.listdir(tmp_path)) == ["b", "c"]
