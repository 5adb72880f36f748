"""File driver: files open by a process are "in use" (listings and manage time).

Real processes hold the files open (``sleep`` with the file as stdin), or the
test process itself does; the /proc scan itself is also checked on a fake
/proc tree for the cases a real one cannot produce on demand.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.file import inuse
from cinderblock.drivers.file.driver import FileDriver
from cinderblock.drivers.refs import GiB, SnapshotRef, VolumeRef
from cinderblock.exceptions import ManageExistingInvalidReference

MiB = 1024**2


def make_file(path: Path, size: int = GiB, data: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(data)


@pytest.fixture
def holder() -> Iterator[Any]:
    """hold(path): start a process that keeps `path` open as its stdin."""
    procs: list[subprocess.Popen[bytes]] = []

    def hold(path: Path, mode: str = "rb") -> subprocess.Popen[bytes]:
        with open(path, mode) as f:
            proc = subprocess.Popen(["sleep", "300"], stdin=f)
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def volumes(driver: FileDriver, **kwargs: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {
        "marker": None,
        "limit": 1000,
        "offset": 0,
        "sort_keys": ["reference"],
        "sort_dirs": ["asc"],
    }
    args.update(kwargs)
    entries = driver.get_manageable_volumes([], **args)
    return {e["reference"]["source-name"]: e for e in entries}


def reason(entry: dict[str, Any]) -> tuple[bool, str | None, str | None]:
    code = (entry["extra_info"] or {}).get("reason_code")
    return entry["safe_to_manage"], entry["reason_not_safe"], code


IN_USE = (False, "volume in use", "in_use")
SAFE = (True, None, None)


def test_file_open_in_another_process_is_in_use(file_driver: FileDriver, holder: Any) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "busy")
    make_file(d / "idle")
    proc = holder(d / "busy")
    listed = volumes(file_driver)
    assert reason(listed["busy"]) == IN_USE
    assert reason(listed["idle"]) == SAFE
    proc.kill()
    proc.wait()
    assert reason(volumes(file_driver)["busy"]) == SAFE


def test_open_for_writing_and_after_rename_still_in_use(
    file_driver: FileDriver, holder: Any
) -> None:
    """Matching is by inode: the name the process used does not matter."""
    d = Path(file_driver.volumes_dir)
    make_file(d / "before")
    holder(d / "before", "r+b")
    os.rename(d / "before", d / "after")
    assert reason(volumes(file_driver)["after"]) == IN_USE


def test_open_in_this_process_counts(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "mine")
    with open(d / "mine", "rb"):
        assert reason(volumes(file_driver)["mine"]) == IN_USE
    assert reason(volumes(file_driver)["mine"]) == SAFE


def test_manage_refuses_a_file_opened_after_the_listing(
    file_driver: FileDriver, holder: Any
) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "legacy", GiB + MiB, b"data")
    assert reason(volumes(file_driver)["legacy"]) == SAFE
    proc = holder(d / "legacy")
    before = sorted(os.listdir(d)), os.stat(d / "legacy").st_size
    vol = VolumeRef(id="m1", size=2)
    ref = {"source-name": "legacy"}
    for call in (file_driver.manage_existing_get_size, file_driver.manage_existing):
        with pytest.raises(ManageExistingInvalidReference) as err:
            call(vol, ref)
        assert mg.reason_code_of(err.value) == "in_use"
        assert str(err.value) == (
            "Manage existing volume failed due to invalid backend reference "
            "{'source-name': 'legacy'}: 'legacy' is in use by another process"
        )
    assert (sorted(os.listdir(d)), os.stat(d / "legacy").st_size) == before
    proc.kill()
    proc.wait()
    update = file_driver.manage_existing(vol, ref)
    assert update is not None
    assert (update["provider_location"], update["provider_id"]) == ("volume-m1", "legacy")


def test_manage_snapshot_refuses_a_file_in_use(file_driver: FileDriver, holder: Any) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "volume-p")
    make_file(d / "volume-p@nightly")
    holder(d / "volume-p@nightly")
    (entry,) = file_driver.get_manageable_snapshots([], None, 10, 0, [], [])
    assert reason(entry) == (False, "snapshot in use", "in_use")
    snap = SnapshotRef(
        id="s1", volume=VolumeRef(id="p", size=1, provider_location="volume-p"), size=1
    )
    ref = {"source-name": "volume-p@nightly"}
    for call in (
        file_driver.manage_existing_snapshot_get_size,
        file_driver.manage_existing_snapshot,
    ):
        with pytest.raises(ManageExistingInvalidReference, match="is in use by another process"):
            call(snap, ref)
    assert sorted(os.listdir(d)) == ["volume-p", "volume-p@nightly"]


def test_the_parent_volume_in_use_does_not_block_its_snapshot(
    file_driver: FileDriver, holder: Any
) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "volume-p")
    make_file(d / "volume-p@nightly")
    holder(d / "volume-p")  # e.g. the attached volume
    (entry,) = file_driver.get_manageable_snapshots([], None, 10, 0, [], [])
    assert reason(entry) == SAFE


def test_the_drivers_own_descriptors_do_not_count(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "f")
    fd = os.open(d / "f", os.O_RDONLY)
    file_driver.own_fds.add(fd)
    try:
        assert reason(volumes(file_driver)["f"]) == SAFE
    finally:
        file_driver.own_fds.close(fd)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by own_fds.close
    assert file_driver.own_fds.snapshot() == frozenset()


def test_listing_scans_proc_once_and_not_when_nothing_is_safe(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    for i in range(30):
        make_file(d / f"f{i:02d}", MiB)
    real_scandir = os.scandir
    scanned: list[str] = []

    def counting(path: Any = ".") -> Any:
        if str(path) == inuse.PROC:
            scanned.append(str(path))
        return real_scandir(path)

    with mock.patch("os.scandir", side_effect=counting):
        assert len(volumes(file_driver)) == 30
        assert scanned == ["/proc"]
        scanned.clear()
        managed = [VolumeRef(id=f"v{i}", size=1, provider_location=f"f{i:02d}") for i in range(30)]
        file_driver.get_manageable_volumes(managed, None, 100, 0, [], [])
        assert scanned == []


# --- the /proc scan on a fake tree ----------------------------------------------------
@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    root.mkdir()
    return root


def add_process(root: Path, pid: str, targets: dict[str, Path | str]) -> None:
    fd_dir = root / pid / "fd"
    fd_dir.mkdir(parents=True)
    for fd, target in targets.items():
        os.symlink(target, fd_dir / fd)


def test_scan_finds_regular_files_and_skips_what_it_cannot_read(
    tmp_path: Path, fake_proc: Path
) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for path in (a, b, c):
        make_file(path, 0)
    add_process(fake_proc, "10", {"0": a, "1": tmp_path, "2": tmp_path / "gone"})
    add_process(fake_proc, "11", {"3": b})
    (fake_proc / "12").mkdir()  # a process without fd dir (a zombie, or not ours)
    (fake_proc / "13").mkdir()
    (fake_proc / "13" / "fd").write_text("not a directory")
    add_process(fake_proc, "self", {"0": c})  # not a pid: ignored
    add_process(fake_proc, "14", {"5": c})
    ids = {(os.stat(p).st_dev, os.stat(p).st_ino) for p in (a, b, c)}
    assert inuse.open_file_ids(proc_root=str(fake_proc)) == ids
    dev = os.stat(a).st_dev
    assert inuse.open_file_ids(dev + 1, proc_root=str(fake_proc)) == set()
    assert inuse.is_open(os.stat(b), proc_root=str(fake_proc))
    make_file(tmp_path / "d", 0)
    assert not inuse.is_open(os.stat(tmp_path / "d"), proc_root=str(fake_proc))


def test_scan_ignores_permission_errors(tmp_path: Path, fake_proc: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_file(a, 0)
    make_file(b, 0)
    add_process(fake_proc, "20", {"0": a})
    add_process(fake_proc, "21", {"0": b})
    real_scandir = os.scandir

    def denied(path: Any = ".") -> Any:
        if str(path) == f"{fake_proc}/20/fd":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    with mock.patch("os.scandir", side_effect=denied):
        assert inuse.open_file_ids(proc_root=str(fake_proc)) == {
            (os.stat(b).st_dev, os.stat(b).st_ino)
        }


def test_scan_skips_only_the_listed_fds_of_this_process(tmp_path: Path, fake_proc: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_file(a, 0)
    make_file(b, 0)
    own = str(os.getpid())
    add_process(fake_proc, own, {"7": a, "8": b})
    add_process(fake_proc, "999999", {"7": a})
    ids = inuse.open_file_ids(ignore_fds={7, 8}, proc_root=str(fake_proc))
    assert ids == {(os.stat(a).st_dev, os.stat(a).st_ino)}  # pid 999999's fd 7 still counts
    assert not inuse.is_open(os.stat(b), ignore_fds={8}, proc_root=str(fake_proc))


def test_without_proc_nothing_is_in_use(file_driver: FileDriver, tmp_path: Path) -> None:
    file_driver.proc_root = str(tmp_path / "no-proc")
    d = Path(file_driver.volumes_dir)
    make_file(d / "f")
    with open(d / "f", "rb"):
        assert reason(volumes(file_driver)["f"]) == SAFE
        file_driver.manage_existing_get_size(VolumeRef(id="m", size=1), {"source-name": "f"})
