"""Manage-existing on the file driver: confinement refusals, formats, listings.

Every refusal must leave the disk exactly as it was: each test compares an
lstat picture of the whole tmp_path (inside and outside the volumes dir).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.file import manage
from cinderblock.drivers.file.driver import FileDriver
from cinderblock.drivers.refs import GiB, SnapshotRef, VolumeRef
from cinderblock.exceptions import ManageExistingInvalidReference

MiB = 1024**2
QEMU_IMG = shutil.which("qemu-img")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img not installed")


def tree_state(root: Path) -> dict[str, tuple[int, ...]]:
    """lstat of everything under root (symlinks not followed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            state[path] = (st.st_mode, st.st_size, st.st_ino, st.st_nlink, st.st_mtime_ns)
    return state


def make_file(path: Path, size: int = GiB + 1, data: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(data)


def qemu_img_create(path: Path, fmt: str) -> None:
    assert QEMU_IMG
    subprocess.run([QEMU_IMG, "create", "-q", "-f", fmt, str(path), "64M"], check=True)


# Each setup prepares the directory and returns the reference to try.
Setup = Callable[[Path, Path], Any]


def _symlink_inside(d: Path, _: Path) -> Any:
    os.symlink("good", d / "link")
    return {"source-name": "link"}


def _symlink_outside(d: Path, outside: Path) -> Any:
    os.symlink(outside, d / "link")
    return {"source-name": "link"}


def _dangling_symlink(d: Path, _: Path) -> Any:
    os.symlink("nowhere", d / "link")
    return {"source-name": "link"}


def _fifo(d: Path, _: Path) -> Any:
    os.mkfifo(d / "pipe")
    return {"source-name": "pipe"}


def _socket(d: Path, _: Path) -> Any:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock"))
    sock.close()
    return {"source-name": "sock"}


def _char_device(d: Path, _: Path) -> Any:
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    os.mknod(d / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    return {"source-name": "dev"}


def _directory(d: Path, _: Path) -> Any:
    (d / "adir").mkdir()
    return {"source-name": "adir"}


def _hard_link_outside(d: Path, outside: Path) -> Any:
    os.link(outside, d / "hl")
    return {"source-name": "hl"}


def _hard_link_inside(d: Path, _: Path) -> Any:
    os.link(d / "good", d / "hl")
    return {"source-name": "good"}


def _qcow2_magic(d: Path, _: Path) -> Any:
    make_file(d / "img", MiB, b"QFI\xfb\x00\x00\x00\x03")
    return {"source-name": "img"}


def _qcow2_real(d: Path, _: Path) -> Any:
    if QEMU_IMG is None:
        pytest.skip("qemu-img not installed")
    qemu_img_create(d / "img", "qcow2")
    return {"source-name": "img"}


def _parallels(d: Path, _: Path) -> Any:
    # No magic check of ours knows this one: only qemu-img's probe catches it.
    if QEMU_IMG is None:
        pytest.skip("qemu-img not installed")
    qemu_img_create(d / "img", "parallels")
    return {"source-name": "img"}


def _slash(d: Path, _: Path) -> Any:
    (d / "sub").mkdir()
    make_file(d / "sub" / "inner")
    return {"source-name": "sub/inner"}


def _const(ref: Any) -> Setup:
    return lambda d, outside: ref


# case -> (setup, expected words in the message, reason code)
REFUSALS: dict[str, tuple[Setup, str, str]] = {
    "absolute-inside": (lambda d, _: {"source-name": str(d / "good")}, "absolute", "bad_name"),
    "absolute-outside": (lambda d, o: {"source-name": str(o)}, "absolute", "bad_name"),
    "dotdot": (_const({"source-name": "../outside.img"}), "'..'", "bad_name"),
    "dotdot-inner": (_const({"source-name": "sub/../good"}), "'..'", "bad_name"),
    "dotdot-alone": (_const({"source-name": ".."}), "'..'", "bad_name"),
    "slash": (_slash, "'/'", "bad_name"),
    "nul": (_const({"source-name": "good\x00"}), "NUL", "bad_name"),
    "hidden": (
        lambda d, _: make_file(d / ".hidden") or {"source-name": ".hidden"},
        "hidden",
        "bad_name",
    ),
    "dot": (_const({"source-name": "."}), "hidden", "bad_name"),
    "too-long": (_const({"source-name": "a" * 300}), "too long", "bad_name"),
    "empty": (_const({"source-name": ""}), "non-empty", "bad_reference"),
    "not-a-string": (_const({"source-name": 5}), "non-empty", "bad_reference"),
    "no-key": (_const({"name": "good"}), "source-name", "bad_reference"),
    "not-a-dict": (_const(["good"]), "source-name", "bad_reference"),
    "missing": (_const({"source-name": "absent"}), "no file named 'absent'", "not_found"),
    "symlink-inside": (_symlink_inside, "'link' is a symlink", "symlink"),
    "symlink-outside": (_symlink_outside, "'link' is a symlink", "symlink"),
    "symlink-dangling": (_dangling_symlink, "'link' is a symlink", "symlink"),
    "fifo": (_fifo, "'pipe' is not a regular file (fifo)", "not_regular_file"),
    "socket": (_socket, "'sock' is not a regular file (socket)", "not_regular_file"),
    "char-device": (_char_device, "not a regular file (character device)", "not_regular_file"),
    "directory": (_directory, "'adir' is not a regular file (directory)", "not_regular_file"),
    "hard-link-outside": (_hard_link_outside, "'hl' is hard-linked (2 names)", "hard_linked"),
    "hard-link-inside": (_hard_link_inside, "'good' is hard-linked (2 names)", "hard_linked"),
    "qcow2-magic": (_qcow2_magic, "'img' is qcow2, not raw", "not_raw"),
    "qcow2-qemu-img": (_qcow2_real, "'img' is qcow2, not raw", "not_raw"),
    "parallels-qemu-img": (_parallels, "'img' is parallels, not raw", "not_raw"),
    "snapshot-file": (
        lambda d, _: make_file(d / "x@y") or {"source-name": "x@y"},
        "'x@y' is a snapshot file",
        "wrong_kind",
    ),
}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside.img"
    make_file(path, MiB, b"outside data")
    return path


@pytest.mark.parametrize("case", list(REFUSALS))
def test_manage_refusals_touch_nothing(
    file_driver: FileDriver, tmp_path: Path, outside: Path, case: str
) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "good", GiB, b"good data")
    setup, reason, code = REFUSALS[case]
    ref = setup(d, outside)
    before = tree_state(tmp_path)
    vol = VolumeRef(id="m1", size=1)
    with pytest.raises(ManageExistingInvalidReference) as size_err:
        file_driver.manage_existing_get_size(vol, ref)
    with pytest.raises(ManageExistingInvalidReference) as manage_err:
        file_driver.manage_existing(vol, ref)
    for err in (size_err, manage_err):
        assert reason in str(err.value)
        assert str(err.value).startswith("Manage existing volume failed due to invalid backend")
        assert mg.reason_code_of(err.value) == code
    assert tree_state(tmp_path) == before
    assert outside.read_bytes().startswith(b"outside data")


@pytest.mark.parametrize("case", ["symlink-inside", "fifo", "hard-link-inside", "qcow2-magic"])
def test_manage_snapshot_refusals_touch_nothing(
    file_driver: FileDriver, tmp_path: Path, outside: Path, case: str
) -> None:
    d = Path(file_driver.volumes_dir)
    parent = VolumeRef(id="p", size=1, provider_location="volume-p")
    make_file(d / "volume-p", GiB)
    make_file(d / "good", GiB)
    setup, _, code = REFUSALS[case]
    name = setup(d, outside)["source-name"]
    os.rename(d / name, d / f"volume-p@{name}")  # make it a snapshot file of volume-p
    ref = {"source-name": f"volume-p@{name}"}
    before = tree_state(tmp_path)
    snap = SnapshotRef(id="s1", volume=parent, size=1)
    for call in (
        file_driver.manage_existing_snapshot_get_size,
        file_driver.manage_existing_snapshot,
    ):
        with pytest.raises(ManageExistingInvalidReference, match=re.escape(f"'volume-p@{name}'")):
            call(snap, ref)
        assert mg.reason_code_of(excinfo_value(call, snap, ref)) == code
    assert tree_state(tmp_path) == before


def excinfo_value(call: Callable[..., Any], *args: Any) -> BaseException:
    with pytest.raises(ManageExistingInvalidReference) as err:
        call(*args)
    return err.value


def test_manage_grows_sparsely_to_whole_gib(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "legacy", GiB + GiB // 2, b"boot sector")
    vol = VolumeRef(id="m1", size=2)
    assert file_driver.manage_existing_get_size(vol, {"source-id": "legacy"}) == 2
    update = file_driver.manage_existing(vol, {"source-id": "legacy"})
    assert update == {
        "provider_location": "volume-m1",
        "provider_id": "legacy",
        # The exact original size survives the growth to whole GiB.
        "admin_metadata": {
            "manage_original_name": "legacy",
            "manage_original_size_bytes": str(GiB + GiB // 2),
        },
    }
    st = os.stat(d / "volume-m1")
    assert st.st_size == 2 * GiB
    assert st.st_blocks * 512 < MiB
    assert (d / "volume-m1").read_bytes()[:11] == b"boot sector"


def test_tiny_file_counts_as_one_gib(file_driver: FileDriver) -> None:
    make_file(Path(file_driver.volumes_dir) / "empty", 0)
    assert (
        file_driver.manage_existing_get_size(VolumeRef(id="m", size=1), {"source-name": "empty"})
        == 1
    )


def test_manage_without_rename_keeps_the_name(make_file_driver: Any) -> None:
    driver = make_file_driver(file_manage_rename="false")
    d = Path(driver.volumes_dir)
    make_file(d / "legacy", GiB, b"x")
    vol = VolumeRef(id="m1", size=1)
    update = driver.manage_existing(vol, {"source-name": "legacy"})
    assert update is not None
    assert (update["provider_location"], update["provider_id"]) == ("legacy", "legacy")
    vol = VolumeRef(id="m1", size=1, provider_location="legacy", provider_id="legacy")
    assert driver.volume_exists(vol)
    assert driver.local_path(vol) == str(d / "legacy")
    driver.unmanage(vol)
    assert os.listdir(d) == ["legacy"]


def test_family_rename_refused_when_a_snapshot_target_exists(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "old", GiB)
    make_file(d / "old@daily", GiB)
    make_file(d / "volume-m1@daily", GiB)  # stray file in the way
    before = tree_state(d)
    with pytest.raises(ManageExistingInvalidReference, match="already exists"):
        file_driver.manage_existing(VolumeRef(id="m1", size=1), {"source-name": "old"})
    assert tree_state(d) == before


def test_listing_reports_why_entries_are_unsafe(file_driver: FileDriver, outside: Path) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "good", 3 * GiB)
    make_file(d / "volume-m1", GiB)
    make_file(d / "qcow", MiB, b"QFI\xfb\x00\x00\x00\x03")
    make_file(d / "vmdk", MiB, b"KDMV")
    os.mkfifo(d / "pipe")
    os.symlink("good", d / "link")
    os.link(outside, d / "hl")
    (d / "adir").mkdir()
    make_file(d / ".hidden")
    make_file(d / ".tmp-123")
    make_file(d / "good@snap", GiB)
    managed = [VolumeRef(id="m1", size=1, provider_location="volume-m1")]
    entries = file_driver.get_manageable_volumes(managed, None, 100, 0, ["reference"], ["asc"])
    by_name = {e["reference"]["source-name"]: e for e in entries}
    assert sorted(by_name) == ["adir", "good", "hl", "link", "pipe", "qcow", "vmdk", "volume-m1"]
    reasons = {
        name: (e["reason_not_safe"], (e["extra_info"] or {}).get("reason_code"))
        for name, e in by_name.items()
    }
    assert reasons == {
        "adir": ("not a regular file (directory)", "not_regular_file"),
        "good": (None, None),
        "hl": ("hard-linked", "hard_linked"),
        "link": ("symlink", "symlink"),
        "pipe": ("not a regular file (fifo)", "not_regular_file"),
        "qcow": ("file is qcow2, not raw", "not_raw"),
        "vmdk": ("file is vmdk, not raw", "not_raw"),
        "volume-m1": ("already managed", "already_managed"),
    }
    assert by_name["good"]["safe_to_manage"] is True
    assert by_name["good"]["extra_info"] is None
    assert by_name["good"]["size"] == 3
    assert by_name["volume-m1"]["cinder_id"] == "m1"
    assert all(e["safe_to_manage"] is (e["extra_info"] is None) for e in entries)

    (snap,) = file_driver.get_manageable_snapshots([], None, 10, 0, [], [])
    assert snap["reference"] == {"source-name": "good@snap"}
    assert snap["source_reference"] == {"source-name": "good"}
    assert snap["safe_to_manage"] is True


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        (b"QFI\xfb\x00\x00\x00\x02", "qcow2"),
        (b"QFI\xfb\x00\x00\x00\x01", "qcow"),
        (b"QED\x00", "qed"),
        (b"KDMV\x01\x00\x00\x00", "vmdk"),
        (b"# Disk DescriptorFile\n", "vmdk"),
        (b"vhdxfile", "vhdx"),
        (b"conectix", "vpc"),
        (b"LUKS\xba\xbe\x00\x01", "luks"),
        (b"<<< QEMU VM Virtual Disk Image >>>\n".ljust(0x40, b"\0") + b"\x7f\x10\xda\xbe", "vdi"),
        (bytes(512), "raw"),
        (b"", "raw"),
        (b"\xeb\x63\x90" + bytes(509), "raw"),  # an MBR boot sector is raw data
    ],
)
def test_detect_format(header: bytes, fmt: str) -> None:
    assert manage.detect_format(header) == fmt


@needs_qemu_img
@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed"])
def test_magic_matches_what_qemu_img_writes(tmp_path: Path, fmt: str) -> None:
    qemu_img_create(tmp_path / "img", fmt)
    assert manage.detect_format((tmp_path / "img").read_bytes()[:512]) == fmt
