"""Volume bodies carry exactly Cinder's keys for the microversion and the caller's role."""

from __future__ import annotations

import re
import uuid

import pytest
from cbhelpers import (
    ADMIN_ONLY_VOLUME_KEYS,
    backend_type,
    mem_volume,
    sample_body,
    unversioned,
)

from conftest import Api, RunningService

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def keys_of(sample: str, *path: str | int) -> set[str]:
    body = sample_body(sample)
    for step in path:
        body = body[step]
    return set(body)


SHOW_3_0 = keys_of("volume_show_no_microversion.json", "volume")
SHOW_3_8 = keys_of("volume_show_mv3_8.json", "volume")
SHOW_3_71 = keys_of("volume_show_mv3_71.json", "volume")
CREATE_3_8 = keys_of("volume_create_mv3_8.json", "volume")
CREATE_3_71 = keys_of("volume_create_mv3_71.json", "volume")
DETAIL_3_8 = keys_of("volume_list_detail_limit2.json", "volumes", 0)
DETAIL_3_71 = keys_of("volume_list_detail_limit2_latest.json", "volumes", 0)
SUMMARY = keys_of("volume_list_summary_limit2.json", "volumes", 0)


def test_sample_key_sets_are_what_we_expect() -> None:
    # Guards the comparisons below against a sample file that changed shape.
    assert SHOW_3_0 == SHOW_3_8 == DETAIL_3_8
    assert SHOW_3_71 == DETAIL_3_71
    assert "volume_type_id" in SHOW_3_71 and "volume_type_id" not in SHOW_3_8
    assert SHOW_3_71 - {k for k in SHOW_3_71 if k.startswith("os-vol-")} == CREATE_3_71
    assert {"id", "name", "links"} == SUMMARY


@pytest.mark.parametrize(
    ("version", "expected"), [(None, SHOW_3_0), ("3.8", SHOW_3_8), ("3.71", SHOW_3_71)]
)
def test_show_keys_for_admin(api: Api, version: str | None, expected: set[str]) -> None:
    volume = mem_volume(api)
    client = unversioned(api) if version is None else api
    resp = client.get(f"/volumes/{volume['id']}", version=version)
    assert resp.status_code == 200
    assert set(resp.json()) == {"volume"}
    assert set(resp.json()["volume"]) == expected


@pytest.mark.parametrize(
    ("version", "expected"), [(None, SHOW_3_0), ("3.8", SHOW_3_8), ("3.71", SHOW_3_71)]
)
def test_show_keys_for_member_hide_admin_fields(
    member_api: Api, version: str | None, expected: set[str]
) -> None:
    volume = mem_volume(member_api)
    client = unversioned(member_api) if version is None else member_api
    body = client.get(f"/volumes/{volume['id']}", version=version).json()["volume"]
    assert set(body) == expected - ADMIN_ONLY_VOLUME_KEYS
    assert body["os-vol-tenant-attr:tenant_id"] == member_api.project


@pytest.mark.parametrize(("version", "expected"), [("3.8", CREATE_3_8), ("3.71", CREATE_3_71)])
def test_create_keys(api: Api, version: str, expected: set[str]) -> None:
    resp = api.post(
        "/volumes",
        {"volume": {"size": 1, "name": "v", "volume_type": backend_type(api, "mem")["name"]}},
        version=version,
    )
    assert resp.status_code == 202
    assert set(resp.json()) == {"volume"}
    body = resp.json()["volume"]
    assert set(body) == expected
    assert body["status"] == "creating"
    assert body["updated_at"] is None
    api.wait_volume(body["id"])


def test_create_keys_for_member(member_api: Api) -> None:
    resp = member_api.post(
        "/volumes",
        {"volume": {"size": 1, "volume_type": backend_type(member_api, "mem")["name"]}},
    )
    assert resp.status_code == 202
    assert set(resp.json()["volume"]) == CREATE_3_71 - ADMIN_ONLY_VOLUME_KEYS
    member_api.wait_volume(resp.json()["volume"]["id"])


@pytest.mark.parametrize(("version", "expected"), [("3.8", DETAIL_3_8), ("3.71", DETAIL_3_71)])
def test_detail_list_keys(api: Api, version: str, expected: set[str]) -> None:
    for _ in range(3):
        mem_volume(api)
    resp = api.get("/volumes/detail?limit=2", version=version)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"volumes", "volumes_links"}
    assert len(body["volumes"]) == 2
    for item in body["volumes"]:
        assert set(item) == expected


def test_detail_list_with_count_keys(api: Api) -> None:
    for _ in range(3):
        mem_volume(api)
    resp = api.get("/volumes/detail?limit=2&with_count=true", version="3.71")
    assert set(resp.json()) == set(sample_body("volume_list_detail_limit2_latest.json"))
    assert resp.json()["count"] == 3


def test_detail_list_keys_for_member(member_api: Api) -> None:
    mem_volume(member_api)
    items = member_api.get("/volumes/detail").json()["volumes"]
    assert len(items) == 1
    assert set(items[0]) == DETAIL_3_71 - ADMIN_ONLY_VOLUME_KEYS


def test_summary_list_keys(api: Api, cinder: RunningService) -> None:
    for _ in range(3):
        mem_volume(api)
    body = api.get("/volumes?limit=2", version="3.8").json()
    assert set(body) == set(sample_body("volume_list_summary_limit2.json"))
    for item in body["volumes"]:
        assert set(item) == SUMMARY
        assert item["links"] == [
            {"rel": "self", "href": f"{cinder.url}/v3/{api.project}/volumes/{item['id']}"},
            {"rel": "bookmark", "href": f"{cinder.url}/{api.project}/volumes/{item['id']}"},
        ]


def test_update_returns_the_view_without_extension_keys(api: Api) -> None:
    volume = mem_volume(api)
    resp = api.put(f"/volumes/{volume['id']}", {"volume": {"name": "renamed"}})
    assert resp.status_code == 200
    assert set(resp.json()["volume"]) == CREATE_3_71
    assert resp.json()["volume"]["name"] == "renamed"


def test_show_values_have_cinder_types(api: Api) -> None:
    vtype = backend_type(api, "mem")
    created = api.post(
        "/volumes",
        {"volume": {"size": 2, "name": "typed", "description": "d", "volume_type": vtype["name"]}},
    ).json()["volume"]
    assert created["shared_targets"] is True and created["service_uuid"] is None
    assert TIMESTAMP.match(created["created_at"])
    volume = api.wait_volume(created["id"])
    assert volume["id"] == created["id"]
    uuid.UUID(volume["id"])
    assert volume["size"] == 2
    assert volume["name"] == "typed" and volume["description"] == "d"
    assert volume["bootable"] == "false"
    assert volume["encrypted"] is False
    assert volume["multiattach"] is False
    assert volume["attachments"] == []
    assert volume["metadata"] == {}
    assert volume["availability_zone"] == "nova"
    assert volume["volume_type"] == vtype["name"]
    assert volume["volume_type_id"] == vtype["id"]
    assert volume["user_id"] == "admin"
    assert volume["os-vol-tenant-attr:tenant_id"] == api.project
    assert volume["os-vol-host-attr:host"] == "testhost@mem#mem"
    assert volume["os-vol-mig-status-attr:migstat"] is None
    assert volume["migration_status"] is None
    assert volume["consumes_quota"] is True
    assert volume["snapshot_id"] is None and volume["source_volid"] is None
    assert volume["group_id"] is None
    assert volume["shared_targets"] is False
    uuid.UUID(volume["service_uuid"])
    assert TIMESTAMP.match(volume["created_at"]) and TIMESTAMP.match(volume["updated_at"])
    assert volume["created_at"] == created["created_at"]


def test_shared_targets_before_3_69_is_never_null(api: Api) -> None:
    volume = mem_volume(api)
    for version in ("3.48", "3.68", "3.69"):
        body = api.get(f"/volumes/{volume['id']}", version=version).json()["volume"]
        assert isinstance(body["shared_targets"], bool)
    assert (
        "shared_targets" not in api.get(f"/volumes/{volume['id']}", version="3.47").json()["volume"]
    )
