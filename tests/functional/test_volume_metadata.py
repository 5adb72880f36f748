"""Volume metadata: list, merge, replace, per-key CRUD, validation, Etag / If-Match (3.15)."""

from __future__ import annotations

import pytest
from cbhelpers import UNKNOWN_ID, assert_fault, mem_volume

from conftest import Api


@pytest.fixture
def volume(api: Api) -> dict:
    return mem_volume(api, metadata={"a": "1", "b": "2"})


def _meta(api: Api, volume_id: str) -> dict[str, str]:
    resp = api.get(f"/volumes/{volume_id}/metadata")
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"metadata"}
    return resp.json()["metadata"]


def test_list(api: Api, volume: dict) -> None:
    assert _meta(api, volume["id"]) == {"a": "1", "b": "2"}


def test_post_merges_and_returns_the_full_set(api: Api, volume: dict) -> None:
    resp = api.post(f"/volumes/{volume['id']}/metadata", {"metadata": {"b": "22", "c": "3"}})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"metadata": {"a": "1", "b": "22", "c": "3"}}
    assert _meta(api, volume["id"]) == {"a": "1", "b": "22", "c": "3"}
    shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert shown["metadata"] == {"a": "1", "b": "22", "c": "3"}


def test_put_replaces_everything(api: Api, volume: dict) -> None:
    resp = api.put(f"/volumes/{volume['id']}/metadata", {"metadata": {"z": "26"}})
    assert resp.status_code == 200
    assert resp.json() == {"metadata": {"z": "26"}}
    assert _meta(api, volume["id"]) == {"z": "26"}
    resp = api.put(f"/volumes/{volume['id']}/metadata", {"metadata": {}})
    assert resp.status_code == 200
    assert _meta(api, volume["id"]) == {}


def test_key_get_put_delete(api: Api, volume: dict) -> None:
    vid = volume["id"]
    resp = api.get(f"/volumes/{vid}/metadata/a")
    assert resp.status_code == 200
    assert resp.json() == {"meta": {"a": "1"}}
    resp = api.put(f"/volumes/{vid}/metadata/a", {"meta": {"a": "one"}})
    assert resp.status_code == 200
    assert resp.json() == {"meta": {"a": "one"}}
    resp = api.put(f"/volumes/{vid}/metadata/new key", {"meta": {"new key": "x"}})
    assert resp.status_code == 200
    assert _meta(api, vid) == {"a": "one", "b": "2", "new key": "x"}
    resp = api.delete(f"/volumes/{vid}/metadata/b")
    assert resp.status_code == 200
    assert resp.content == b""
    assert _meta(api, vid) == {"a": "one", "new key": "x"}


def test_missing_key_is_404(api: Api, volume: dict) -> None:
    vid = volume["id"]
    assert_fault(
        api.get(f"/volumes/{vid}/metadata/nope"),
        404,
        f"Volume {vid} has no metadata with key nope.",
    )
    assert_fault(api.delete(f"/volumes/{vid}/metadata/nope"), 404)
    assert _meta(api, vid) == {"a": "1", "b": "2"}


def test_key_put_body_must_match_the_url(api: Api, volume: dict) -> None:
    vid = volume["id"]
    assert_fault(
        api.put(f"/volumes/{vid}/metadata/a", {"meta": {"b": "x"}}),
        400,
        "Request body and URI mismatch",
    )
    assert_fault(
        api.put(f"/volumes/{vid}/metadata/a", {"meta": {"a": "x", "b": "y"}}),
        400,
        "Request body contains too many items",
    )
    assert_fault(api.put(f"/volumes/{vid}/metadata/a", {"meta": {}}), 400)
    assert_fault(api.put(f"/volumes/{vid}/metadata/a", {"metadata": {"a": "x"}}), 400)
    assert _meta(api, vid) == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    "metadata",
    [
        {"bad!key": "v"},
        {"": "v"},
        {"k" * 256: "v"},
        {"k": "v" * 256},
        {"k": 5},
        {"k": None},
        {"k": ["list"]},
        "not-an-object",
    ],
)
def test_invalid_metadata_is_400_and_changes_nothing(api: Api, volume: dict, metadata) -> None:
    vid = volume["id"]
    assert_fault(api.post(f"/volumes/{vid}/metadata", {"metadata": metadata}), 400)
    assert_fault(api.put(f"/volumes/{vid}/metadata", {"metadata": metadata}), 400)
    assert _meta(api, vid) == {"a": "1", "b": "2"}


def test_invalid_metadata_on_create_makes_no_volume(api: Api) -> None:
    assert_fault(api.post("/volumes", {"volume": {"size": 1, "metadata": {"k": 1}}}), 400)
    assert api.get("/volumes").json()["volumes"] == []


def test_metadata_of_unknown_volume_is_404(api: Api) -> None:
    message = f"Volume {UNKNOWN_ID} could not be found."
    assert_fault(api.get(f"/volumes/{UNKNOWN_ID}/metadata"), 404, message)
    assert_fault(api.post(f"/volumes/{UNKNOWN_ID}/metadata", {"metadata": {"a": "b"}}), 404)
    assert_fault(api.put(f"/volumes/{UNKNOWN_ID}/metadata/a", {"meta": {"a": "b"}}), 404)
    assert_fault(api.delete(f"/volumes/{UNKNOWN_ID}/metadata/a"), 404)


def test_metadata_is_locked_in_maintenance(api: Api, volume: dict) -> None:
    vid = volume["id"]
    api.post(f"/volumes/{vid}/action", {"os-reset_status": {"status": "maintenance"}})
    assert_fault(api.post(f"/volumes/{vid}/metadata", {"metadata": {"x": "y"}}), 400)
    assert_fault(api.delete(f"/volumes/{vid}/metadata/a"), 400)
    assert _meta(api, vid) == {"a": "1", "b": "2"}


# --- Etag / If-Match (3.15) ------------------------------------------------------------------
def test_etag_appears_from_3_15_and_changes_with_the_metadata(api: Api, volume: dict) -> None:
    vid = volume["id"]
    assert "etag" not in api.get(f"/volumes/{vid}/metadata", version="3.14").headers
    first = api.get(f"/volumes/{vid}/metadata", version="3.15").headers["etag"]
    again = api.get(f"/volumes/{vid}/metadata", version="3.15").headers["etag"]
    assert first == again
    api.post(f"/volumes/{vid}/metadata", {"metadata": {"c": "3"}})
    assert api.get(f"/volumes/{vid}/metadata", version="3.15").headers["etag"] != first


def _put_if_match(api: Api, path: str, body: dict, etag: str, version: str = "3.15"):
    return api.client.put(
        api.url(path), json=body, headers=api.headers(version, **{"If-Match": etag})
    )


def test_if_match_with_current_etag_succeeds(api: Api, volume: dict) -> None:
    vid = volume["id"]
    etag = api.get(f"/volumes/{vid}/metadata", version="3.15").headers["etag"]
    resp = _put_if_match(api, f"/volumes/{vid}/metadata", {"metadata": {"n": "1"}}, etag)
    assert resp.status_code == 200, resp.text
    assert _meta(api, vid) == {"n": "1"}
    etag = api.get(f"/volumes/{vid}/metadata", version="3.15").headers["etag"]
    resp = _put_if_match(api, f"/volumes/{vid}/metadata/n", {"meta": {"n": "2"}}, f'"{etag}"')
    assert resp.status_code == 200, resp.text
    assert _meta(api, vid) == {"n": "2"}


def test_if_match_with_stale_etag_is_412(api: Api, volume: dict) -> None:
    vid = volume["id"]
    stale = api.get(f"/volumes/{vid}/metadata", version="3.15").headers["etag"]
    api.post(f"/volumes/{vid}/metadata", {"metadata": {"c": "3"}})
    resp = _put_if_match(api, f"/volumes/{vid}/metadata", {"metadata": {"x": "1"}}, stale)
    assert resp.status_code == 412
    if resp.content:
        assert_fault(resp, 412)
    resp = _put_if_match(api, f"/volumes/{vid}/metadata/a", {"meta": {"a": "9"}}, stale)
    assert resp.status_code == 412
    assert _meta(api, vid) == {"a": "1", "b": "2", "c": "3"}
    # Before 3.15 If-Match is not looked at.
    resp = _put_if_match(api, f"/volumes/{vid}/metadata", {"metadata": {"x": "1"}}, stale, "3.14")
    assert resp.status_code == 200
    assert _meta(api, vid) == {"x": "1"}
