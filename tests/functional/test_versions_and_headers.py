"""Versions documents, microversion negotiation and the headers every response carries."""

from __future__ import annotations

import pytest
from cbhelpers import (
    UNKNOWN_ID,
    assert_fault,
    assert_request_ids,
    assert_version_headers,
    backend_type,
    mem_volume,
    raw,
    sample,
    sample_body,
    unversioned,
)

from conftest import Api, RunningService


def _strip_hosts(doc: dict) -> dict:
    """The versions document with the self link's scheme://host removed."""
    out = {"versions": []}
    for version in doc["versions"]:
        version = dict(version)
        version["links"] = [
            {**link, "href": "/" + link["href"].split("/", 3)[3]} if link["rel"] == "self" else link
            for link in version["links"]
        ]
        out["versions"].append(version)
    return out


def test_root_is_300_with_the_versions_document(cinder: RunningService) -> None:
    resp = raw(cinder, "GET", "/")
    assert resp.status_code == 300
    assert _strip_hosts(resp.json()) == _strip_hosts(sample_body("versions_root.json"))
    self_link = next(x for x in resp.json()["versions"][0]["links"] if x["rel"] == "self")
    assert self_link["href"] == f"{cinder.url}/v3/"
    assert_request_ids(resp)
    assert_version_headers(resp, "3.0")


def test_v3_slash_is_200_with_the_same_document(cinder: RunningService) -> None:
    resp = raw(cinder, "GET", "/v3/")
    assert resp.status_code == 200
    assert _strip_hosts(resp.json()) == _strip_hosts(sample_body("versions_v3.json"))
    version = resp.json()["versions"][0]
    assert (version["version"], version["min_version"]) == ("3.71", "3.0")
    assert_request_ids(resp)


def test_versions_need_no_token(cinder: RunningService) -> None:
    assert raw(cinder, "GET", "/", token=None).status_code == 300
    assert raw(cinder, "GET", "/v3/", token=None).status_code == 200


def test_v3_without_slash_redirects_to_v3_slash(cinder: RunningService) -> None:
    resp = raw(cinder, "GET", "/v3")
    assert resp.status_code == 302
    assert resp.headers["location"].endswith("/v3/")
    assert_request_ids(resp)
    followed = raw(cinder, "GET", "/v3", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json()["versions"][0]["id"] == "v3.0"


def test_headers_on_success_match_the_sample(api: Api) -> None:
    volume = mem_volume(api)
    resp = api.get(f"/volumes/{volume['id']}", version="3.8")
    assert resp.status_code == 200
    expected = sample("response_headers.json")["headers"]
    assert resp.headers["openstack-api-version"] == expected["openstack-api-version"]
    assert resp.headers["vary"] == expected["vary"]
    assert resp.headers["content-type"] == expected["content-type"]
    assert_request_ids(resp)


def test_every_response_has_a_fresh_request_id(api: Api) -> None:
    ids = {assert_request_ids(api.get("/volumes")) for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/volumes", 200),
        ("GET", f"/volumes/{UNKNOWN_ID}", 404),
        ("DELETE", f"/volumes/{UNKNOWN_ID}", 404),
        ("GET", "/volumes?limit=-1", 400),
        ("GET", "/volumes?sort=nope:asc", 400),
        ("POST", "/volumes", 400),
        ("GET", "/types/default", 200),
        ("GET", "/snapshots/detail", 200),
        ("GET", f"/snapshots/{UNKNOWN_ID}", 404),
        ("GET", "/messages", 200),
    ],
)
@pytest.mark.parametrize("version", [None, "3.0", "3.27", "3.71"])
def test_version_and_request_id_headers_on_every_response(
    api: Api, method: str, path: str, status: int, version: str | None
) -> None:
    client = unversioned(api) if version is None else api
    resp = client.request(method, path, version=version)
    if path == "/messages" and version in (None, "3.0"):
        status = 404  # messages appear at 3.3
    assert resp.status_code == status, resp.text
    assert_request_ids(resp)
    assert_version_headers(resp, version or "3.0")
    if status >= 400:
        assert_fault(resp, status)


def test_error_from_auth_carries_version_headers(cinder: RunningService, project: str) -> None:
    resp = raw(cinder, "GET", f"/v3/{project}/volumes", version="volume 3.50")
    assert_fault(resp, 401)
    assert_version_headers(resp, "3.50")


def test_unknown_route_carries_request_ids(api: Api) -> None:
    resp = api.get("/no-such-resource", version="3.8")
    assert_fault(resp, 404, "The resource could not be found.")
    assert_request_ids(resp)


def test_no_header_means_3_0(api: Api) -> None:
    volume = mem_volume(api)
    resp = unversioned(api).get(f"/volumes/{volume['id']}")
    assert resp.status_code == 200
    assert resp.headers["openstack-api-version"] == "volume 3.0"
    body = resp.json()["volume"]
    assert "group_id" not in body and "volume_type_id" not in body


def test_latest_means_3_71(api: Api) -> None:
    volume = mem_volume(api)
    resp = api.get(f"/volumes/{volume['id']}", version="latest")
    assert resp.status_code == 200
    assert (
        resp.headers["openstack-api-version"]
        == sample("microversion_latest_keyword.json")["response"]["headers"][
            "openstack-api-version"
        ]
    )
    assert resp.headers["openstack-api-version"] == "volume 3.71"
    assert resp.json()["volume"]["consumes_quota"] is True


def test_latest_is_case_insensitive(cinder: RunningService, project: str) -> None:
    resp = raw(
        cinder, "GET", f"/v3/{project}/volumes", token=f"admin:{project}", version="volume LATEST"
    )
    assert resp.status_code == 200
    assert_version_headers(resp, "3.71")


def test_version_entry_among_other_services(cinder: RunningService, project: str) -> None:
    resp = raw(
        cinder,
        "GET",
        f"/v3/{project}/volumes",
        token=f"admin:{project}",
        version="compute 2.1, volume 3.45",
    )
    assert resp.status_code == 200
    assert_version_headers(resp, "3.45")


def test_malformed_version_is_400_with_cinder_message(cinder: RunningService, project: str) -> None:
    expected = sample("error_microversion_malformed.json")["response"]
    resp = raw(
        cinder,
        "GET",
        f"/v3/{project}/volumes",
        token=f"admin:{project}",
        version="volume latest-ish",
    )
    assert resp.status_code == expected["status"] == 400
    assert resp.json() == expected["body"]
    assert_request_ids(resp)


@pytest.mark.parametrize("version", ["3", "3.", "3.01", "v3.1", "03.1", "3.1.1", "abc"])
def test_other_malformed_versions_are_400(
    cinder: RunningService, project: str, version: str
) -> None:
    resp = raw(
        cinder,
        "GET",
        f"/v3/{project}/volumes",
        token=f"admin:{project}",
        version=f"volume {version}",
    )
    message = assert_fault(resp, 400)
    assert "invalid format" in message or "volume" in message


def test_header_without_volume_entry_is_400(cinder: RunningService, project: str) -> None:
    resp = raw(
        cinder, "GET", f"/v3/{project}/volumes", token=f"admin:{project}", version="compute 2.1"
    )
    assert_fault(resp, 400)


def test_too_high_version_is_406_compute_fault(cinder: RunningService, project: str) -> None:
    expected = sample("error_microversion_too_high.json")["response"]
    resp = raw(
        cinder, "GET", f"/v3/{project}/volumes", token=f"admin:{project}", version="volume 3.999"
    )
    assert resp.status_code == 406
    assert resp.json() == expected["body"]
    assert resp.headers["openstack-api-version"] == expected["headers"]["openstack-api-version"]
    assert resp.headers["vary"] == "OpenStack-API-Version"
    assert_request_ids(resp)


@pytest.mark.parametrize("version", ["2.0", "4.0", "3.72"])
def test_out_of_range_versions_are_406(cinder: RunningService, project: str, version: str) -> None:
    resp = raw(
        cinder,
        "GET",
        f"/v3/{project}/volumes",
        token=f"admin:{project}",
        version=f"volume {version}",
    )
    message = assert_fault(resp, 406)
    assert message == (
        f"Version {version} is not supported by the API. Minimum is 3.0 and maximum is 3.71."
    )


def test_min_and_max_versions_are_served(api: Api) -> None:
    for version in ("3.0", "3.71"):
        resp = api.get("/volumes", version=version)
        assert resp.status_code == 200
        assert_version_headers(resp, version)


def test_version_gated_route_is_404_below_its_version(api: Api) -> None:
    assert_fault(
        api.get("/volumes/summary", version="3.11"), 404, "The resource could not be found."
    )
    assert api.get("/volumes/summary", version="3.12").status_code == 200


def test_project_less_urls_work(api: Api, cinder: RunningService) -> None:
    volume = mem_volume(api)
    resp = api.client.get(f"{cinder.url}/v3/volumes/{volume['id']}", headers=api.headers())
    assert resp.status_code == 200
    assert resp.json()["volume"]["id"] == volume["id"]
    links = resp.json()["volume"]["links"]
    assert links[0]["href"] == f"{cinder.url}/v3/volumes/{volume['id']}"
    # With the project in the URL, links carry it too.
    links = api.get(f"/volumes/{volume['id']}").json()["volume"]["links"]
    assert links == [
        {"rel": "self", "href": f"{cinder.url}/v3/{api.project}/volumes/{volume['id']}"},
        {"rel": "bookmark", "href": f"{cinder.url}/{api.project}/volumes/{volume['id']}"},
    ]


def test_global_request_id_is_accepted(api: Api) -> None:
    resp = api.client.get(
        api.url("/volumes"),
        headers=api.headers(
            **{"X-OpenStack-Request-ID": "req-11111111-2222-3333-4444-555555555555"}
        ),
    )
    assert resp.status_code == 200
    # Our own request id is fresh, not the caller's.
    assert assert_request_ids(resp) != "req-11111111-2222-3333-4444-555555555555"


def test_method_not_allowed_is_a_fault(api: Api) -> None:
    resp = api.request("PATCH", "/volumes")
    assert resp.status_code in (404, 405)
    assert_fault(resp, resp.status_code)


def test_headers_on_empty_and_accepted_responses(api: Api) -> None:
    created = api.post(
        "/volumes", {"volume": {"size": 1, "volume_type": backend_type(api, "mem")["name"]}}
    )
    assert created.status_code == 202
    assert_version_headers(created, "3.71")
    assert_request_ids(created)
    api.wait_volume(created.json()["volume"]["id"])
    deleted = api.delete(f"/volumes/{created.json()['volume']['id']}", version="3.50")
    assert deleted.status_code == 202
    assert deleted.content == b""
    assert_version_headers(deleted, "3.50")
    assert_request_ids(deleted)
