"""GET manageable_volumes[/detail]: keys, order, paging by marker/offset/limit, refusals.

Runs on a service of its own (own database, own volumes directory) so the
listing holds exactly what this module put there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from cbhelpers import assert_fault, sample_body

from conftest import Api, RunningService, scratch_database, start_service

GiB = 1024**3
HOST = "testhost@files"
SUMMARY_KEYS = {"reference", "size", "safe_to_manage"}
DETAIL_KEYS = SUMMARY_KEYS | {"reason_not_safe", "cinder_id", "extra_info"}
COUNT = 300


def _size_bytes(i: int) -> int:
    """Varied sizes: 1..5 GiB after rounding up, many ties, some exact GiB."""
    whole = (i * 7) % 5
    return whole * GiB + (0 if i % 4 == 0 and whole else 1 + (i * 104729) % (GiB - 1))


def _expected_size(i: int) -> int:
    return max(1, -(-_size_bytes(i) // GiB))


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with scratch_database(tmp_path_factory.mktemp("listdb"), "cb_lists") as url:
        yield url


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, module_db: str) -> Iterator[RunningService]:
    running = start_service(tmp_path_factory.mktemp("lists"), module_db)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def populated(own: RunningService) -> dict[str, Any]:
    """300 sparse foreign files f0..f299 plus two volumes Cinder made (already managed)."""
    own.volumes_dir.mkdir(parents=True, exist_ok=True)
    for i in range(COUNT):
        with open(own.volumes_dir / f"f{i}", "xb") as f:
            f.truncate(_size_bytes(i))
    admin = Api(own.url, uuid.uuid4().hex)
    resp = admin.post(
        "/types",
        {"volume_type": {"name": "files", "extra_specs": {"volume_backend_name": "files"}}},
    )
    assert resp.status_code == 200, resp.text
    ours = [admin.create_volume(size=s, volume_type="files")["id"] for s in (1, 3)]
    admin.client.close()
    expected = {f"f{i}": _expected_size(i) for i in range(COUNT)}
    expected.update({f"volume-{ours[0]}": 1, f"volume-{ours[1]}": 3})
    return {"sizes": expected, "ours": ours}


@pytest.fixture
def lapi(own: RunningService, populated: dict[str, Any]) -> Iterator[Api]:
    client = Api(own.url, uuid.uuid4().hex)
    yield client
    client.client.close()


def _get(api: Api, query: str, detail: bool = True, **kw: Any) -> list[dict[str, Any]]:
    path = "/manageable_volumes/detail" if detail else "/manageable_volumes"
    resp = api.get(f"{path}?host={HOST}{query}", **kw)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"manageable-volumes"}, body.keys()  # no _links, no count
    return body["manageable-volumes"]


def _names(entries: list[dict[str, Any]]) -> list[str]:
    return [e["reference"]["source-name"] for e in entries]


def _marker(name: str) -> str:
    return quote(json.dumps({"source-name": name}))


def _reference_order(sizes: dict[str, int], keys: list[tuple[str, bool]]) -> list[str]:
    """The order the API promises: the given keys, ties by name ascending."""
    names = sorted(sizes)
    for key, descending in reversed(keys):
        names.sort(key=(lambda n: sizes[n]) if key == "size" else (lambda n: n), reverse=descending)
    return names


def test_entries_have_exactly_cinders_keys(lapi: Api, populated: dict[str, Any]) -> None:
    sizes = populated["sizes"]
    summary = _get(lapi, "", detail=False)
    detail = _get(lapi, "")
    sample_summary = sample_body("manageable_volumes_list.json")["manageable-volumes"][0]
    sample_detail = sample_body("manageable_volumes_detail.json")["manageable-volumes"][0]
    assert set(sample_summary) == SUMMARY_KEYS and set(sample_detail) == DETAIL_KEYS
    assert len(summary) == len(detail) == len(sizes) == COUNT + 2
    for entry in summary:
        assert set(entry) == SUMMARY_KEYS, entry
    for entry in detail:
        assert set(entry) == DETAIL_KEYS, entry
        name = entry["reference"]["source-name"]
        assert entry["reference"] == {"source-name": name}
        assert entry["size"] == sizes[name], entry
        assert isinstance(entry["safe_to_manage"], bool)
    by_name = {e["reference"]["source-name"]: e for e in detail}
    for i in range(COUNT):
        entry = by_name[f"f{i}"]
        assert entry["safe_to_manage"] is True, entry
        assert entry["reason_not_safe"] is None
        assert entry["cinder_id"] is None
    for volume_id in populated["ours"]:
        entry = by_name[f"volume-{volume_id}"]
        assert entry["safe_to_manage"] is False
        assert entry["reason_not_safe"] == "already managed"
        assert entry["cinder_id"] == volume_id
    assert [e["safe_to_manage"] for e in summary] == [e["safe_to_manage"] for e in detail]


def test_default_order_is_reference_descending(lapi: Api, populated: dict[str, Any]) -> None:
    expected = sorted(populated["sizes"], reverse=True)
    assert _names(_get(lapi, "")) == expected
    assert _names(_get(lapi, "", detail=False)) == expected
    assert _names(_get(lapi, "&sort=reference")) == expected
    assert _names(_get(lapi, "&sort_key=reference")) == expected
    # The pool part of the host is ignored.
    resp = lapi.get(f"/manageable_volumes?host={HOST}%23files")
    assert _names(resp.json()["manageable-volumes"]) == expected


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("&sort=size:asc,reference:asc", [("size", False), ("reference", False)]),
        ("&sort=size:desc,reference:asc", [("size", True), ("reference", False)]),
        ("&sort=size:asc,reference:desc", [("size", False), ("reference", True)]),
        ("&sort=size", [("size", True)]),
        ("&sort=size:asc", [("size", False)]),
        ("&sort=reference:asc", [("reference", False)]),
        ("&sort=reference:asc,size:desc", [("reference", False), ("size", True)]),
        ("&sort_key=size&sort_dir=asc", [("size", False)]),
        ("&sort_dir=asc", [("reference", False)]),
    ],
)
def test_sort_orders(lapi: Api, populated: dict[str, Any], query: str, keys: list) -> None:
    sizes = populated["sizes"]
    got = _get(lapi, query)
    assert _names(got) == _reference_order(sizes, keys)
    assert [e["size"] for e in got] == [sizes[n] for n in _names(got)]


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("", [("reference", True)]),
        ("&sort=size:asc,reference:asc", [("size", False), ("reference", False)]),
        ("&sort=size:desc", [("size", True)]),
    ],
)
@pytest.mark.parametrize("limit", [7, 37, 100, 302, 1000])
def test_marker_paging_covers_every_entry_once(
    lapi: Api, populated: dict[str, Any], query: str, keys: list, limit: int
) -> None:
    expected = _reference_order(populated["sizes"], keys)
    seen: list[str] = []
    page = _get(lapi, f"{query}&limit={limit}")
    pages = 0
    while page:
        pages += 1
        assert len(page) <= limit
        seen += _names(page)
        if len(page) < limit:
            break
        page = _get(lapi, f"{query}&limit={limit}&marker={_marker(seen[-1])}")
        assert pages <= len(expected) + 1
    assert seen == expected
    assert len(set(seen)) == len(seen)
    assert pages == -(-len(expected) // limit)


def test_offset_and_limit(lapi: Api, populated: dict[str, Any]) -> None:
    full = sorted(populated["sizes"], reverse=True)
    assert _names(_get(lapi, "&limit=20&offset=10")) == full[10:30]
    assert _names(_get(lapi, "&offset=295")) == full[295:]
    assert _get(lapi, f"&offset={len(full)}") == []
    assert _get(lapi, "&offset=5000") == []
    assert _get(lapi, "&limit=0") == []
    assert _names(_get(lapi, "&limit=5")) == full[:5]
    # Paging by offset alone covers everything once.
    seen: list[str] = []
    for start in range(0, len(full), 45):
        seen += _names(_get(lapi, f"&limit=45&offset={start}"))
    assert seen == full
    # The offset counts from the marker.
    marker = full[100]
    got = _names(_get(lapi, f"&marker={_marker(marker)}&offset=7&limit=11"))
    assert got == full[108:119]
    # source-id works as a marker key too; the last entry as marker gives nothing.
    assert (
        _names(_get(lapi, f"&marker={quote(json.dumps({'source-name': full[0]}))}&limit=3"))
        == full[1:4]
    )
    assert _get(lapi, f"&marker={_marker(full[-1])}") == []
    # Marker with a sort: positions are taken in that order.
    by_size = _reference_order(populated["sizes"], [("size", False), ("reference", False)])
    got = _names(_get(lapi, f"&sort=size:asc,reference:asc&marker={_marker('f123')}&limit=4"))
    at = by_size.index("f123")
    assert got == by_size[at + 1 : at + 5]


def test_bad_paging_parameters(lapi: Api) -> None:
    for raw in ("f123", "{source-name:f1}", "{'source-name': 'f1'}", "%7B"):
        resp = lapi.get(f"/manageable_volumes?host={HOST}&marker={quote(raw)}")
        message = assert_fault(resp, 400)
        assert message == (
            f"Invalid input received: marker {raw} can not be analysed, please use json like format"
        ) or message.endswith("can not be analysed, please use json like format"), message
    for unknown in (
        {"source-name": "no-such-file"},
        {"source-name": "nope"},
        {"other-key": "f1"},
        123,
        "f1",
        ["f1"],
    ):
        resp = lapi.get(f"/manageable_volumes?host={HOST}&marker={quote(json.dumps(unknown))}")
        message = assert_fault(resp, 400)
        assert "marker not found" in message, message
    for query, message in (
        ("sort=x", "Invalid sort keys passed: x"),
        ("sort=size:asc,name:desc", "Invalid sort keys passed: name"),
        ("sort_key=created_at", "Invalid sort keys passed: created_at"),
        ("sort=size:up", "Invalid sort dirs passed: up"),
        ("sort_key=size&sort_dir=sideways", "Invalid sort dirs passed: sideways"),
    ):
        assert_fault(lapi.get(f"/manageable_volumes?host={HOST}&{query}"), 400, message)
    assert_fault(lapi.get(f"/manageable_volumes?host={HOST}&sort=size&sort_key=size"), 400)
    for query in ("limit=-1", "limit=x", "offset=-1", "offset=x"):
        assert_fault(lapi.get(f"/manageable_volumes?host={HOST}&{query}"), 400)


def test_host_and_cluster_rules(lapi: Api) -> None:
    missing = "Invalid input received: Host field is missing."
    one_of = "Invalid input received: One and only one of cluster and host must be set."
    # Cinder's own answer at 3.8 (samples/manageable_volumes_no_host.json).
    no_host = sample_body("manageable_volumes_no_host.json")
    for version in ("3.8", "3.16"):
        for path in ("/manageable_volumes", "/manageable_volumes/detail"):
            resp = lapi.get(path, version=version)
            assert_fault(resp, 400, missing)
            assert resp.json() == no_host
            # Below 3.17 a cluster is not even looked at.
            assert_fault(lapi.get(f"{path}?cluster=c1", version=version), 400, missing)
    assert_fault(lapi.get("/os-volume-manage", version="3.0"), 400, missing)
    for version in ("3.17", "3.71"):
        assert_fault(lapi.get("/manageable_volumes", version=version), 400, one_of)
        assert_fault(
            lapi.get(f"/manageable_volumes?host={HOST}&cluster=c1", version=version), 400, one_of
        )
        assert_fault(lapi.get("/manageable_volumes?host=&cluster=", version=version), 400, one_of)
        assert_fault(lapi.get("/manageable_volumes?cluster=nope", version=version), 404)
    for host in ("testhost@nope", "otherhost@files", "otherhost"):
        assert_fault(lapi.get(f"/manageable_volumes?host={host}"), 404)
        assert_fault(lapi.get(f"/manageable_volumes/detail?host={host}"), 404)
    assert_fault(lapi.get(f"/manageable_volumes?host={HOST}", version="3.7"), 404)


def test_members_are_refused_before_anything_else(own: RunningService, populated: dict) -> None:
    member = Api(own.url, uuid.uuid4().hex, user="demo")
    try:
        for path in (
            f"/manageable_volumes?host={HOST}",
            f"/manageable_volumes/detail?host={HOST}",
            "/manageable_volumes",
            f"/manageable_volumes?host={HOST}&sort=x",
            "/manageable_volumes?host=testhost@nope",
            f"/os-volume-manage?host={HOST}",
            f"/manageable_snapshots?host={HOST}",
            f"/manageable_snapshots/detail?host={HOST}",
        ):
            assert_fault(member.get(path), 403)
    finally:
        member.client.close()


def test_listing_follows_changes_in_the_directory(
    own: RunningService, lapi: Api, populated: dict[str, Any]
) -> None:
    extra = own.volumes_dir / f"late-{uuid.uuid4().hex[:6]}"
    extra.write_bytes(b"x")
    try:
        entries = _get(lapi, "")
        names = _names(entries)
        assert extra.name in names
        assert next(e for e in entries if e["reference"]["source-name"] == extra.name)["size"] == 1
        # Snapshot files ('@') are not volumes.
        snap = own.volumes_dir / "f7@snap"
        snap.write_bytes(b"s")
        try:
            assert "f7@snap" not in _names(_get(lapi, ""))
            snaps = lapi.get(f"/manageable_snapshots/detail?host={HOST}").json()
            entry = next(
                e
                for e in snaps["manageable-snapshots"]
                if e["reference"]["source-name"] == "f7@snap"
            )
            assert entry["source_reference"] == {"source-name": "f7"}
        finally:
            snap.unlink()
    finally:
        extra.unlink()
    assert extra.name not in _names(_get(lapi, ""))
