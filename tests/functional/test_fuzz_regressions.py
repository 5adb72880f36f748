"""Regressions for what the schemathesis fuzz (test_fuzz_api.py) found: each was a 500."""

from __future__ import annotations

import uuid

import httpx
import pytest
from cbhelpers import assert_fault, backend_type, mem_volume, snapshot, volume_ids

from conftest import Api


# --- /volumes/summary parsed its filters unlike the lists --------------------------------------
@pytest.mark.parametrize(
    ("query", "version"),
    [
        ("multiattach=false", "3.12"),
        ("multiattach=true&bootable=false", "3.12"),
        ("consumes_quota=true", "3.65"),
        ("created_at=gt:2000-01-01T00:00:00", "3.60"),
        ("updated_at=lte:2999-01-01T00:00:00,gt:2000-01-01T00:00:00", "3.60"),
        ("name~=sum", "3.34"),
        ("description=nothing", "3.12"),
    ],
)
def test_volume_summary_takes_the_list_filters(api: Api, query: str, version: str) -> None:
    # A raw string compared with a boolean or timestamp column was a database error on
    # PostgreSQL (e.g. ?multiattach=NIL, the fuzz's find): the summary now parses filters
    # exactly like GET /volumes.
    mem_volume(api, name="summary-vol", description="nothing")
    listed = api.get(f"/volumes?{query}", version=version)
    assert listed.status_code == 200, listed.text
    resp = api.get(f"/volumes/summary?{query}", version=version)
    assert resp.status_code == 200, resp.text
    assert resp.json()["volume-summary"]["total_count"] == len(listed.json()["volumes"])


def test_volume_summary_bad_boolean_filter_is_400(api: Api) -> None:
    assert_fault(api.get("/volumes/summary?multiattach=NIL", version="3.12"), 400)
    assert_fault(api.get("/volumes/summary?created_at=soon", version="3.60"), 400)


# --- keys that a case-insensitive database collation takes for one ------------------------------
# MySQL/MariaDB compare "k", "K" and "k " as the same key: storing a second one broke the
# unique (owner, key) index and answered 500. It is now a 409 fault there; PostgreSQL and
# SQLite keep them apart. Either way no 500 and nothing half-written.
def _distinct_or_conflict(
    resp: httpx.Response, stored: dict[str, str], wanted: dict[str, str]
) -> None:
    if resp.status_code == 409:
        assert_fault(resp, 409)
    else:
        assert resp.status_code == 200, resp.text
        for key, value in wanted.items():
            assert stored[key] == value, stored


def test_extra_spec_keys_differing_in_case(api: Api) -> None:
    other = "O"
    resp = api.post(
        "/types",
        {"volume_type": {"name": f"case-{uuid.uuid4().hex[:8]}", "extra_specs": {"o": "1"}}},
    )
    assert resp.status_code == 200, resp.text
    tid = resp.json()["volume_type"]["id"]
    resp = api.post(f"/types/{tid}/extra_specs", {"extra_specs": {other: "2"}})
    specs = api.get(f"/types/{tid}/extra_specs").json()["extra_specs"]
    _distinct_or_conflict(resp, specs, {"o": "1", other: "2"})
    if resp.status_code == 409:
        assert specs == {"o": "1"}


def test_extra_specs_differing_in_case_in_one_request(api: Api) -> None:
    name = f"case-{uuid.uuid4().hex[:8]}"
    resp = api.post("/types", {"volume_type": {"name": name, "extra_specs": {"a": "1", "A": "2"}}})
    if resp.status_code == 409:
        assert_fault(resp, 409)
        names = [t["name"] for t in api.get("/types?is_public=none").json()["volume_types"]]
        assert name not in names
    else:
        assert resp.status_code == 200, resp.text
        assert resp.json()["volume_type"]["extra_specs"] == {"a": "1", "A": "2"}


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_volume_metadata_keys_differing_in_case(api: Api, method: str) -> None:
    volume = mem_volume(api, metadata={"k": "1"})
    path = f"/volumes/{volume['id']}/metadata"
    resp = api.request(method, path, {"metadata": {"k": "1", "K": "2"}})
    stored = api.get(path).json()["metadata"]
    _distinct_or_conflict(resp, stored, {"k": "1", "K": "2"})
    if resp.status_code == 409:
        assert stored == {"k": "1"}
    resp = api.put(f"{path}/k ", {"meta": {"k ": "3"}})
    _distinct_or_conflict(resp, api.get(path).json()["metadata"], {"k ": "3"})


def test_volume_created_with_keys_differing_in_case(api: Api) -> None:
    before = volume_ids(api)
    resp = api.post(
        "/volumes",
        {
            "volume": {
                "size": 1,
                "volume_type": backend_type(api, "mem")["name"],
                "metadata": {"a": "1", "A": "2"},
            }
        },
    )
    if resp.status_code == 409:
        assert_fault(resp, 409)
        assert volume_ids(api) == before
    else:
        assert resp.status_code == 202, resp.text
        volume = api.wait_volume(resp.json()["volume"]["id"])
        assert volume["metadata"] == {"a": "1", "A": "2"}


def test_snapshot_metadata_keys_differing_in_case(api: Api) -> None:
    snap = snapshot(api, mem_volume(api)["id"], metadata={"k": "1"})
    path = f"/snapshots/{snap['id']}/metadata"
    resp = api.post(path, {"metadata": {"K": "2"}})
    stored = api.get(path).json()["metadata"]
    _distinct_or_conflict(resp, stored, {"k": "1", "K": "2"})
    if resp.status_code == 409:
        assert stored == {"k": "1"}
