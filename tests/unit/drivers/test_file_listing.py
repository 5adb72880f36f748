"""File driver manageable listings: odd names, unreadable files, cost follows the page."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from cinderblock.drivers.file.driver import FileDriver
from cinderblock.drivers.refs import GiB, VolumeRef
from cinderblock.exceptions import InvalidInput, ManageExistingInvalidReference

MiB = 1024**2


def make_file(path: Path | bytes, size: int = GiB, data: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(data)


def entries(driver: FileDriver, *, snapshots: bool = False, **kwargs: Any) -> list[Any]:
    args: dict[str, Any] = {
        "marker": None,
        "limit": 1000,
        "offset": 0,
        "sort_keys": ["reference"],
        "sort_dirs": ["asc"],
    }
    args.update(kwargs)
    if snapshots:
        return driver.get_manageable_snapshots([], **args)
    return driver.get_manageable_volumes([], **args)


def code(entry: dict[str, Any]) -> str | None:
    return (entry["extra_info"] or {}).get("reason_code")


def test_non_utf8_name_is_listed_escaped_and_unsafe(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(os.fsencode(d) + b"/caf\xe9", MiB)
    make_file(d / "café", MiB)  # a valid UTF-8 name is fine
    listed = {e["reference"]["source-name"]: e for e in entries(file_driver)}
    assert set(listed) == {"caf\\xe9", "café"}
    bad = listed["caf\\xe9"]
    assert (bad["safe_to_manage"], bad["reason_not_safe"], code(bad)) == (
        False,
        "file name is not valid UTF-8",
        "bad_name",
    )
    assert bad["size"] == 1
    assert listed["café"]["safe_to_manage"] is True
    json.dumps(list(listed.values()))  # what the API will do with it
    # The shown name works as a marker, and it cannot be managed by it.
    after = entries(file_driver, marker={"source-name": "caf\\xe9"})
    assert [e["reference"]["source-name"] for e in after] == ["café"]
    with pytest.raises(ManageExistingInvalidReference):
        file_driver.manage_existing(VolumeRef(id="m", size=1), {"source-name": "caf\\xe9"})


def test_snapshot_file_without_parent_name_is_bad_name(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "@orphan", MiB)
    make_file(d / "vol@snap", MiB)
    listed = {e["reference"]["source-name"]: e for e in entries(file_driver, snapshots=True)}
    assert code(listed["@orphan"]) == "bad_name"
    assert listed["@orphan"]["source_reference"] == {"source-name": ""}
    assert code(listed["vol@snap"]) is None


def test_unreadable_file_is_unsafe(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "locked", MiB)
    make_file(d / "open", MiB)
    real_open = os.open
    locked = str(d / "locked")

    def deny(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, flags, *args, **kwargs)

    with mock.patch("os.open", side_effect=deny):
        listed = {e["reference"]["source-name"]: e for e in entries(file_driver)}
        with pytest.raises(ManageExistingInvalidReference, match="cannot open 'locked'") as err:
            file_driver.manage_existing(VolumeRef(id="m", size=1), {"source-name": "locked"})
    assert (listed["locked"]["reason_not_safe"], code(listed["locked"])) == (
        "cannot open: Permission denied",
        "unreadable",
    )
    assert err.value.kwargs["reason_code"] == "unreadable"
    assert code(listed["open"]) is None


@pytest.fixture
def crowded(file_driver: FileDriver) -> list[str]:
    d = Path(file_driver.volumes_dir)
    names = [f"disk-{i:04d}" for i in range(300)]
    for i, name in enumerate(names):
        make_file(d / name, (i % 5 + 1) * GiB)
    return names


def count_lstat(driver: FileDriver, **kwargs: Any) -> tuple[list[Any], int]:
    real = os.lstat
    calls = []

    def counting(path: Any, *args: Any, **kw: Any) -> os.stat_result:
        calls.append(path)
        return real(path, *args, **kw)

    with mock.patch("os.lstat", side_effect=counting):
        result = entries(driver, **kwargs)
    return result, len(calls)


def test_reference_sort_stats_only_the_page(file_driver: FileDriver, crowded: list[str]) -> None:
    page, stats = count_lstat(file_driver, limit=10, sort_dirs=["desc"])
    assert [e["reference"]["source-name"] for e in page] == sorted(crowded, reverse=True)[:10]
    assert stats == 10
    marker = {"source-name": crowded[150]}
    page, stats = count_lstat(file_driver, limit=10, marker=marker, offset=5)
    assert [e["reference"]["source-name"] for e in page] == crowded[156:166]
    assert stats == 10


def test_size_sort_needs_every_size(file_driver: FileDriver, crowded: list[str]) -> None:
    page, stats = count_lstat(file_driver, limit=10, sort_keys=["size"], sort_dirs=["desc"])
    assert [e["size"] for e in page] == [5] * 10
    assert [e["reference"]["source-name"] for e in page] == [
        n for i, n in enumerate(crowded) if i % 5 == 4
    ][:10]
    assert stats == len(crowded)


def test_a_file_removed_during_the_listing_does_not_shorten_the_page(
    file_driver: FileDriver, crowded: list[str]
) -> None:
    real = os.lstat
    gone = os.path.join(file_driver.volumes_dir, crowded[2])

    def vanished(path: Any, *args: Any, **kw: Any) -> os.stat_result:
        if str(path) == gone:
            raise FileNotFoundError(2, "No such file or directory", gone)
        return real(path, *args, **kw)

    with mock.patch("os.lstat", side_effect=vanished):
        page = entries(file_driver, limit=5)
    assert [e["reference"]["source-name"] for e in page] == [
        crowded[0],
        crowded[1],
        crowded[3],
        crowded[4],
        crowded[5],
    ]


def test_marker_must_exist_even_when_sorting_by_name(
    file_driver: FileDriver, crowded: list[str]
) -> None:
    with pytest.raises(InvalidInput, match="marker not found"):
        entries(file_driver, marker={"source-name": "disk-0150x"})
    with pytest.raises(InvalidInput, match="marker not found"):
        entries(file_driver, marker={"source-name": ".tmp-1"})


def test_limit_zero_and_offset_past_the_end(file_driver: FileDriver, crowded: list[str]) -> None:
    assert entries(file_driver, limit=0) == []
    assert entries(file_driver, offset=len(crowded)) == []
    assert len(entries(file_driver, offset=len(crowded) - 3, limit=10)) == 3


# --- the name cache -----------------------------------------------------------------------
def age(directory: Path, seconds: int = 3600) -> None:
    """Make the directory look unchanged for a while (as a quiet backend is)."""
    st = os.stat(directory)
    os.utime(directory, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9))


def listed_names(driver: FileDriver, **kwargs: Any) -> list[str]:
    return [e["reference"]["source-name"] for e in entries(driver, **kwargs)]


def test_names_of_a_quiet_directory_are_read_once(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    for name in ("a", "b", "c"):
        make_file(d / name, MiB)
    age(d)
    cache = file_driver.name_cache
    reads = cache.reads
    assert listed_names(file_driver) == ["a", "b", "c"]
    assert listed_names(file_driver, sort_dirs=["desc"]) == ["c", "b", "a"]
    assert listed_names(file_driver, marker={"source-name": "a"}) == ["b", "c"]
    assert cache.reads == reads + 1
    # Snapshots are listed from their own cache entry.
    assert entries(file_driver, snapshots=True) == []
    assert cache.reads == reads + 2


@pytest.mark.parametrize("change", ["create", "remove", "rename", "manage"])
def test_any_change_is_seen_at_once(file_driver: FileDriver, change: str) -> None:
    d = Path(file_driver.volumes_dir)
    for name in ("a", "b"):
        make_file(d / name, MiB)
    age(d)
    assert listed_names(file_driver) == ["a", "b"]
    expected = {
        "create": ["a", "b", "c"],
        "remove": ["b"],
        "rename": ["b", "z"],
        "manage": ["b", "volume-m1"],
    }[change]
    if change == "create":
        make_file(d / "c", MiB)
    elif change == "remove":
        os.unlink(d / "a")
    elif change == "rename":
        os.rename(d / "a", d / "z")
    else:
        file_driver.manage_existing(VolumeRef(id="m1", size=1), {"source-name": "a"})
    # Immediately, within the same timestamp tick as the listing before.
    assert listed_names(file_driver) == expected
    reads = file_driver.name_cache.reads
    # Just changed: not cached, so a second change right now is seen too.
    make_file(d / "zz", MiB)
    assert listed_names(file_driver) == [*expected, "zz"]
    assert file_driver.name_cache.reads == reads + 1


def test_recently_changed_directory_is_read_every_time(file_driver: FileDriver) -> None:
    d = Path(file_driver.volumes_dir)
    make_file(d / "a", MiB)
    reads = file_driver.name_cache.reads
    for _ in range(3):
        assert listed_names(file_driver) == ["a"]
    assert file_driver.name_cache.reads == reads + 3
