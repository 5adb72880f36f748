"""The shared manageable helpers: sort validation, markers, paging, reason codes."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.drivers import manageable as mg
from cinderblock.exceptions import InvalidInput, ManageExistingInvalidReference


def entries(sizes: dict[str, int]) -> list[Any]:
    return [mg.make_entry(name, size) for name, size in sizes.items()]


def names(page: list[Any]) -> list[str]:
    return [e["reference"]["source-name"] for e in page]


SIZES = {"b": 2, "a": 2, "d": 1, "c": 3, "e": 1}


def test_codes_are_stable_strings() -> None:
    assert {
        "already_managed",
        "in_use",
        "not_regular_file",
        "symlink",
        "hard_linked",
        "not_raw",
        "unreadable",
        "bad_name",
    } == mg.LISTING_CODES
    assert mg.LISTING_CODES < mg.MANAGE_CODES


def test_make_entry_and_mark_unsafe() -> None:
    safe = mg.make_entry("x", 1)
    assert safe == {
        "reference": {"source-name": "x"},
        "size": 1,
        "safe_to_manage": True,
        "reason_not_safe": None,
        "cinder_id": None,
        "extra_info": None,
    }
    managed = mg.make_entry("v@s", 1, cinder_id="id", source_name="v", snapshots=True)
    assert managed["safe_to_manage"] is False
    assert managed["reason_not_safe"] == "already managed"
    assert managed["extra_info"] == {"reason_code": "already_managed"}
    assert managed["source_reference"] == {"source-name": "v"}
    mg.mark_unsafe(safe, mg.IN_USE, mg.reason_in_use(snapshots=False))
    assert (safe["safe_to_manage"], safe["reason_not_safe"], safe["extra_info"]) == (
        False,
        "volume in use",
        {"reason_code": "in_use"},
    )
    assert mg.reason_in_use(snapshots=True) == "snapshot in use"


def test_invalid_reference_carries_its_code_outside_the_message() -> None:
    err = mg.invalid_reference({"source-name": "x"}, mg.IN_USE, "'x' is in use by another process")
    assert isinstance(err, ManageExistingInvalidReference)
    assert str(err) == (
        "Manage existing volume failed due to invalid backend reference {'source-name': 'x'}: "
        "'x' is in use by another process"
    )
    assert mg.reason_code_of(err) == "in_use"
    assert mg.reason_code_of(ManageExistingInvalidReference(existing_ref={}, reason="r")) is None
    assert mg.reason_code_of(ValueError("x")) is None


@pytest.mark.parametrize(
    ("keys", "dirs", "expected"),
    [
        (None, None, ["e", "d", "c", "b", "a"]),  # default: reference desc
        ([], [], ["e", "d", "c", "b", "a"]),
        (["reference"], ["asc"], ["a", "b", "c", "d", "e"]),
        (["identifier"], ["asc"], ["a", "b", "c", "d", "e"]),
        (["size"], ["asc"], ["d", "e", "a", "b", "c"]),  # ties: name ascending
        (["size"], [], ["c", "a", "b", "d", "e"]),  # missing direction: desc
        (["size", "reference"], ["asc", "desc"], ["e", "d", "b", "a", "c"]),
        ([" size "], ["desc"], ["c", "a", "b", "d", "e"]),
    ],
)
def test_ordering(keys: Any, dirs: Any, expected: list[str]) -> None:
    assert names(mg.paginate(entries(SIZES), None, None, 0, keys, dirs)) == expected


@pytest.mark.parametrize(
    ("keys", "dirs"),
    [(["name"], None), (["size"], ["sideways"]), (["size"], ["asc", "asc"]), (["SIZE"], None)],
)
def test_bad_sort_is_invalid_input(keys: Any, dirs: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        mg.paginate(entries(SIZES), None, 10, 0, keys, dirs)
    assert err.value.code == 400


def test_marker_offset_limit() -> None:
    all_asc = ["reference"], ["asc"]
    page = mg.paginate(entries(SIZES), {"source-name": "b"}, 2, 0, *all_asc)
    assert names(page) == ["c", "d"]
    page = mg.paginate(entries(SIZES), {"source-id": "a"}, 2, 1, *all_asc)
    assert names(page) == ["c", "d"]
    page = mg.paginate(entries(SIZES), '{"source-name": "d"}', None, 0, *all_asc)
    assert names(page) == ["e"]
    assert mg.paginate(entries(SIZES), None, -1, 0, *all_asc) == entries(
        dict(sorted(SIZES.items()))
    )
    assert mg.paginate(entries(SIZES), {}, 0, 0, *all_asc) == []


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ({"source-name": "zz"}, "Invalid input received: marker not found: {'source-name': 'zz'}"),
        ({"other": "a"}, "Invalid input received: marker not found: {'other': 'a'}"),
        (
            "zz",
            "Invalid input received: marker zz can not be analysed, please use json like format",
        ),
        ("[1]", "please use json like format"),
        (["a"], "marker not found"),
    ],
)
def test_bad_markers(marker: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        mg.paginate(entries(SIZES), marker, 10, 0, None, None)
    assert message in str(err.value)


def test_ceil_gib() -> None:
    gib = 1024**3
    assert [mg.ceil_gib(n) for n in (0, 1, gib, gib + 1, 3 * gib)] == [1, 1, 1, 2, 3]
