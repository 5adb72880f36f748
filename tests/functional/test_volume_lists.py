"""Volume lists: filters, LIKE filters, sorting, marker/limit paging, next links, counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cbhelpers import assert_fault, mem_volume, sample_body, volume_ids

from conftest import Api, RunningService


@pytest.fixture
def four(api: Api) -> dict[str, dict]:
    """Four volumes with distinct names, sizes, metadata and statuses."""
    vols = {
        "alpha": mem_volume(api, size=1, name="alpha", metadata={"env": "prod", "team": "a"}),
        "beta": mem_volume(api, size=2, name="beta", metadata={"env": "dev"}),
        "gamma": mem_volume(api, size=3, name="gamma-ray", metadata={"env": "prod"}),
        "delta": mem_volume(api, size=2, name="delta"),
    }
    resp = api.post(
        f"/volumes/{vols['delta']['id']}/action", {"os-reset_status": {"status": "error"}}
    )
    assert resp.status_code == 202
    return vols


def _ids(vols: dict[str, dict], *names: str) -> set[str]:
    return {vols[n]["id"] for n in names}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?name=alpha", ("alpha",)),
        ("?name=gamma", ()),  # exact match, not a substring
        ("?status=error", ("delta",)),
        ("?status=available", ("alpha", "beta", "gamma")),
        ("?size=2", ("beta", "delta")),
        ("?metadata={'env':'prod'}", ("alpha", "gamma")),
        ("?metadata={'env':'prod','team':'a'}", ("alpha",)),
        ("?metadata={'env':'nope'}", ()),
        ("?bootable=false", ("alpha", "beta", "gamma", "delta")),
        ("?bootable=true", ()),
        ("?name=alpha&status=error", ()),
        ("?availability_zone=nova&size=3", ("gamma",)),
    ],
)
def test_filters(
    api: Api, member_api: Api, four: dict[str, dict], query: str, expected: tuple[str, ...]
) -> None:
    for client in (api, member_api):
        for path in ("/volumes", "/volumes/detail"):
            resp = client.get(f"{path}{query}")
            assert resp.status_code == 200, resp.text
            assert {v["id"] for v in resp.json()["volumes"]} == _ids(four, *expected), (
                client.user,
                path,
                query,
            )


def test_like_filter_from_3_34(api: Api, member_api: Api, four: dict[str, dict]) -> None:
    resp = member_api.get("/volumes?name~=amm", version="3.34")
    assert resp.status_code == 200
    assert {v["id"] for v in resp.json()["volumes"]} == _ids(four, "gamma")
    resp = member_api.get("/volumes?name~=a", version="3.34")
    assert {v["id"] for v in resp.json()["volumes"]} == _ids(
        four, "alpha", "beta", "gamma", "delta"
    )
    # LIKE wildcards in the value are literal characters.
    assert member_api.get("/volumes?name~=%25", version="3.34").json()["volumes"] == []
    assert member_api.get("/volumes?name~=_", version="3.34").json()["volumes"] == []


def test_like_filter_before_3_34(member_api: Api, four: dict[str, dict]) -> None:
    # 3.31-3.33 know no such filter: a 400 for a non-admin.
    assert_fault(member_api.get("/volumes?name~=amm", version="3.33"), 400)
    # Before 3.31 unknown filters are dropped silently.
    resp = member_api.get("/volumes?name~=amm", version="3.30")
    assert resp.status_code == 200
    assert len(resp.json()["volumes"]) == 4


def test_unknown_filter_is_400_from_3_31_for_members(
    member_api: Api, four: dict[str, dict]
) -> None:
    resp = member_api.get("/volumes?colour=blue", version="3.31")
    assert_fault(resp, 400, "Invalid filters colour are found in query options.")
    resp = member_api.get("/volumes/detail?colour=blue", version="3.31")
    assert_fault(resp, 400)


def test_unknown_filter_is_ignored_before_3_31(member_api: Api, four: dict[str, dict]) -> None:
    resp = member_api.get("/volumes?colour=blue", version="3.30")
    assert resp.status_code == 200
    assert len(resp.json()["volumes"]) == 4
    resp = member_api.get("/volumes?host=testhost@mem", version="3.0")
    assert resp.status_code == 200
    assert len(resp.json()["volumes"]) == 4


def test_admin_filters_on_host(api: Api, four: dict[str, dict]) -> None:
    resp = api.get("/volumes?host=testhost@mem%23mem")
    assert resp.status_code == 200
    assert {v["id"] for v in resp.json()["volumes"]} == _ids(
        four, "alpha", "beta", "gamma", "delta"
    )
    assert api.get("/volumes?host=elsewhere").json()["volumes"] == []


def test_bootable_filter_is_strict_from_3_2(member_api: Api, four: dict[str, dict]) -> None:
    message = assert_fault(member_api.get("/volumes?bootable=perhaps", version="3.2"), 400)
    assert "bootable" in message
    # Before 3.2 anything that is not false-like means true.
    assert member_api.get("/volumes?bootable=perhaps", version="3.1").json()["volumes"] == []


def test_size_filter_must_be_an_integer(member_api: Api, four: dict[str, dict]) -> None:
    assert_fault(member_api.get("/volumes?size=big"), 400)


def test_bad_metadata_filter_is_400(member_api: Api, four: dict[str, dict]) -> None:
    assert_fault(member_api.get("/volumes?metadata=not-a-dict"), 400)
    assert_fault(member_api.get("/volumes?metadata=['a']"), 400)


# --- sorting -------------------------------------------------------------------------------
def _names(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [v["name"] for v in resp.json()["volumes"]]


def test_default_sort_is_newest_first(api: Api, four: dict[str, dict]) -> None:
    assert _names(api.get("/volumes")) == ["delta", "gamma-ray", "beta", "alpha"]


def test_sort_parameter(api: Api, four: dict[str, dict]) -> None:
    assert _names(api.get("/volumes?sort=name:asc")) == ["alpha", "beta", "delta", "gamma-ray"]
    assert _names(api.get("/volumes?sort=name:desc")) == ["gamma-ray", "delta", "beta", "alpha"]
    assert _names(api.get("/volumes/detail?sort=size:desc,name:asc")) == [
        "gamma-ray",
        "beta",
        "delta",
        "alpha",
    ]
    assert _names(api.get("/volumes?sort=created_at:asc")) == [
        "alpha",
        "beta",
        "gamma-ray",
        "delta",
    ]


def test_sort_key_and_sort_dir(api: Api, four: dict[str, dict]) -> None:
    assert _names(api.get("/volumes?sort_key=name&sort_dir=asc")) == [
        "alpha",
        "beta",
        "delta",
        "gamma-ray",
    ]
    assert _names(api.get("/volumes?sort_key=size&sort_dir=asc"))[0] == "alpha"


def test_sort_and_sort_key_together_is_400(api: Api, four: dict[str, dict]) -> None:
    assert_fault(api.get("/volumes?sort=name:asc&sort_key=size"), 400)
    assert_fault(api.get("/volumes?sort=name:asc&sort_dir=asc"), 400)


def test_bad_sort_key_is_400_with_cinder_message(api: Api, member_api: Api) -> None:
    expected = sample_body("error_bad_sort_key.json")
    for client in (api, member_api):
        resp = client.get("/volumes?sort=nope:asc", version="3.8")
        assert_fault(resp, 400)
        assert resp.json() == expected
        assert_fault(
            client.get("/volumes/detail?sort_key=nope"), 400, expected["badRequest"]["message"]
        )


def test_bad_sort_direction_is_400(api: Api) -> None:
    assert_fault(
        api.get("/volumes?sort=name:sideways"),
        400,
        "Invalid input received: Unknown sort direction, must be 'desc' or 'asc'.",
    )
    assert_fault(api.get("/volumes?sort_key=name&sort_dir=up"), 400)


# --- paging --------------------------------------------------------------------------------
def _walk(api: Api, first: str) -> list[list[str]]:
    """Follow volumes_links next hrefs until a page comes without one."""
    pages = []
    url: str | None = api.url(first)
    while url is not None:
        resp = api.client.get(url, headers=api.headers())
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append([v["name"] for v in body["volumes"]])
        links = body.get("volumes_links")
        url = None
        if links:
            assert links[0]["rel"] == "next"
            url = links[0]["href"]
        assert len(pages) < 10, "paging does not end"
    return pages


def test_next_links_walk_every_volume_once(api: Api, four: dict[str, dict]) -> None:
    pages = _walk(api, "/volumes?limit=2&sort=name:asc")
    assert pages[:2] == [["alpha", "beta"], ["delta", "gamma-ray"]]
    assert pages[2:] in ([], [[]])  # a full last page may link to an empty one
    pages = _walk(api, "/volumes/detail?limit=3")
    assert pages == [["delta", "gamma-ray", "beta"], ["alpha"]]


def test_next_link_keeps_the_other_parameters(api: Api, four: dict[str, dict]) -> None:
    resp = api.get("/volumes/detail?limit=1&status=available&sort=size:asc&with_count=true")
    href = resp.json()["volumes_links"][0]["href"]
    parts = urlsplit(href)
    assert parts.path == f"/v3/{api.project}/volumes/detail"
    query = parse_qs(parts.query)
    assert query["limit"] == ["1"]
    assert query["status"] == ["available"]
    assert query["sort"] == ["size:asc"]
    assert query["marker"] == [resp.json()["volumes"][0]["id"]]
    assert resp.json()["count"] == 3
    pages = _walk(api, "/volumes/detail?limit=1&status=available&sort=size:asc")
    assert [p for p in pages if p] == [["alpha"], ["beta"], ["gamma-ray"]]


def test_no_next_link_when_page_is_not_full(api: Api, four: dict[str, dict]) -> None:
    body = api.get("/volumes?limit=5").json()
    assert len(body["volumes"]) == 4
    assert "volumes_links" not in body
    assert "volumes_links" not in api.get("/volumes").json()


def test_marker_and_offset(api: Api, four: dict[str, dict]) -> None:
    marker = four["beta"]["id"]
    assert _names(api.get(f"/volumes?sort=name:asc&marker={marker}")) == ["delta", "gamma-ray"]
    assert _names(api.get("/volumes?sort=name:asc&offset=3")) == ["gamma-ray"]
    assert _names(api.get(f"/volumes?sort=name:asc&marker={marker}&limit=1")) == ["delta"]


def test_unknown_marker_is_404(api: Api, four: dict[str, dict]) -> None:
    assert_fault(api.get("/volumes?marker=00000000-0000-0000-0000-000000000000"), 404)


def test_marker_of_another_project_is_404(api: Api, member_api: Api, four: dict[str, dict]) -> None:
    other = Api(api.base, "0123456789abcdef0123456789abcdef", user="demo")
    try:
        resp = other.get(f"/volumes?marker={four['alpha']['id']}")
        assert_fault(resp, 404)
    finally:
        other.client.close()


def test_with_count_from_3_45(api: Api, four: dict[str, dict]) -> None:
    body = api.get("/volumes?with_count=true&limit=1", version="3.45").json()
    assert body["count"] == 4 and len(body["volumes"]) == 1
    body = api.get("/volumes/detail?with_count=true&status=available").json()
    assert body["count"] == 3
    assert "count" not in api.get("/volumes?with_count=true", version="3.44").json()
    assert "count" not in api.get("/volumes?with_count=false").json()
    assert_fault(api.get("/volumes?with_count=lots"), 400)


def test_lists_are_scoped_to_the_project(api: Api, four: dict[str, dict]) -> None:
    other = Api(api.base, "fedcba9876543210fedcba9876543210")
    try:
        assert set(four[n]["id"] for n in four).isdisjoint(volume_ids(other))
    finally:
        other.client.close()


# --- paging over ties and NULLs ---------------------------------------------------------------
@pytest.mark.parametrize(
    "sort",
    [
        "name:asc",
        "name:desc",
        "size:asc",
        "size:desc,name:asc",
        "status:asc",
        "bootable:desc",
        "updated_at:asc",
        "description:asc",
    ],
)
def test_paging_visits_every_volume_once_despite_ties_and_nulls(api: Api, sort: str) -> None:
    made = set()
    for i, (name, size) in enumerate(
        [(None, 1), ("b", 1), (None, 2), ("a", 1), ("b", 2), (None, 1), ("", 1)]
    ):
        fields = {"name": name} if name is not None else {}
        if i % 3 == 0:
            fields["description"] = f"d{i}"
        made.add(mem_volume(api, size=size, **fields)["id"])
    full = api.get(f"/volumes/detail?sort={sort}").json()["volumes"]
    assert {v["id"] for v in full} == made
    for limit in (1, 2, 3):
        seen: list[str] = []
        url: str | None = api.url(f"/volumes/detail?sort={sort}&limit={limit}")
        while url:
            body = api.client.get(url, headers=api.headers()).json()
            seen.extend(v["id"] for v in body["volumes"])
            url = body["volumes_links"][0]["href"] if body.get("volumes_links") else None
            assert len(seen) <= len(made) + limit, "paging loops"
        assert seen == [v["id"] for v in full], (sort, limit)


def test_time_filters_from_3_60(api: Api) -> None:
    first = mem_volume(api, name="first")
    second = mem_volume(api, name="second")
    created = second["created_at"]
    names = lambda q, v="3.60": sorted(  # noqa: E731
        x["name"] for x in api.get(f"/volumes{q}", version=v).json()["volumes"]
    )
    assert names(f"?created_at=gte:{created}") == ["second"]
    assert names(f"?created_at=lt:{created}") == ["first"]
    assert names(f"?created_at=gt:{first['created_at']},lte:{created}") == ["second"]
    assert names(f"?created_at=eq:{first['created_at']}") == ["first"]
    assert names(f"?created_at=neq:{first['created_at']}") == ["second"]
    assert names("?updated_at=gt:2000-01-01T00:00:00") == ["first", "second"]
    assert names(f"?created_at=gte:{created}", v="3.59") == ["first", "second"]
    assert_fault(api.get("/volumes?created_at=after:2000-01-01", version="3.60"), 400)
    assert_fault(api.get("/volumes?created_at=gt:yesterday", version="3.60"), 400)


@pytest.fixture
def max_limit_2(cinder: RunningService) -> Iterator[None]:
    """Run the service with osapi_max_limit = 2 for one test (settings are read per request)."""
    deps = cinder.service.deps
    original = deps.settings
    deps.settings = dataclasses.replace(original, osapi_max_limit=2)
    try:
        yield
    finally:
        deps.settings = original


def test_limit_is_capped_at_osapi_max_limit(api: Api, max_limit_2: None) -> None:
    made = {mem_volume(api, name=f"c{i}")["id"] for i in range(3)}
    for query in ("?limit=100", "", "?limit=99999999999999999999"):
        body = api.get(f"/volumes{query}").json()
        assert len(body["volumes"]) == 2, query
        assert "volumes_links" in body  # a full page, even without an explicit limit
    seen: list[str] = []
    url: str | None = api.url("/volumes/detail?limit=100")
    while url:
        body = api.client.get(url, headers=api.headers()).json()
        seen.extend(v["id"] for v in body["volumes"])
        url = body["volumes_links"][0]["href"] if body.get("volumes_links") else None
        assert len(seen) <= 6
    assert sorted(seen) == sorted(made)


def test_consumes_quota_filter_from_3_65(member_api: Api) -> None:
    mem_volume(member_api)
    assert len(volume_ids(member_api, "?consumes_quota=true", version="3.65")) == 1
    assert volume_ids(member_api, "?consumes_quota=false", version="3.65") == []
    # Version-gated filters are dropped below their version.
    assert len(volume_ids(member_api, "?consumes_quota=false", version="3.64")) == 1
    assert_fault(member_api.get("/volumes?consumes_quota=maybe", version="3.65"), 400)
