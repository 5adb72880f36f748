"""Bad input never makes a 500, always a one-key Cinder fault, and never leaves anything behind."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from cbhelpers import (
    UNKNOWN_ID,
    assert_fault,
    assert_request_ids,
    files_in,
    mem_volume,
    raw,
    sample,
    sample_body,
    volume_ids,
)

from conftest import Api, RunningService


@pytest.fixture
def nothing_created(api: Api, cinder: RunningService) -> Iterator[None]:
    """The test's refused requests leave the project's volume list and the disk unchanged."""
    before_ids, before_files = volume_ids(api), files_in(cinder)
    yield
    cinder.wait_idle()
    assert volume_ids(api) == before_ids
    assert files_in(cinder) == before_files


def _post_raw(api: Api, path: str, content: bytes | str, **headers: str) -> httpx.Response:
    return api.client.post(
        api.url(path),
        content=content,
        headers=api.headers(**{"Content-Type": "application/json", **headers}),
    )


# --- bodies -----------------------------------------------------------------------------------
def test_invalid_json_is_400_malformed(api: Api, nothing_created: None) -> None:
    expected = sample("error_create_invalid_json.json")
    resp = _post_raw(api, "/volumes", expected["request"]["body"])
    assert_fault(resp, 400)
    assert resp.json() == expected["response"]["body"]


@pytest.mark.parametrize(
    "content", [b"", b"   ", b"\xff\xfe\x00", b"{'volume': {}}", b'{"volume": {"size": 1}', b"nul"]
)
def test_unparseable_bodies_are_400(api: Api, nothing_created: None, content: bytes) -> None:
    assert_fault(_post_raw(api, "/volumes", content), 400)


def test_missing_body_is_400_not_500(api: Api, nothing_created: None) -> None:
    # Cinder answers 500 here (samples/error_create_missing_body.json); we do not copy that.
    assert sample("error_create_missing_body.json")["response"]["status"] == 500
    resp = api.client.post(api.url("/volumes"), headers=api.headers())
    assert_fault(resp, 400)
    for path in (f"/volumes/{UNKNOWN_ID}/action", "/snapshots", "/types"):
        assert_fault(api.client.post(api.url(path), headers=api.headers()), 400)
    assert_fault(api.client.put(api.url(f"/volumes/{UNKNOWN_ID}"), headers=api.headers()), 400)


def test_empty_object_is_400_volume_required(api: Api, nothing_created: None) -> None:
    resp = api.post("/volumes", {})
    assert_fault(resp, 400)
    assert resp.json() == sample_body("error_create_empty_object.json")


@pytest.mark.parametrize(
    "body",
    [[], "text", 5, None, {"volume": None}, {"volume": []}, {"volume": {"size": 1}, "x": 1}],
)
def test_wrong_body_shapes_are_400(api: Api, nothing_created: None, body) -> None:
    resp = _post_raw(api, "/volumes", json.dumps(body))
    assert_fault(resp, 400)


# --- sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "message"),
    [
        (-1, sample_body("error_create_size_minus1.json")["badRequest"]["message"]),
        ("abc", sample_body("error_create_size_string.json")["badRequest"]["message"]),
        (0, "Invalid input for field/attribute size. Value: 0. 0 is less than the minimum of 1"),
        (
            1.5,
            "Invalid input for field/attribute size. Value: 1.5. "
            "1.5 is not of type 'integer', 'string', 'null'",
        ),
        (
            True,
            "Invalid input for field/attribute size. Value: True. "
            "True is not of type 'integer', 'string', 'null'",
        ),
        ("0", "Invalid input received: Volume size '0' must be an integer and greater than 0"),
        (
            2147483648,
            "Invalid input for field/attribute size. Value: 2147483648. "
            "2147483648 is greater than the maximum of 2147483647",
        ),
        ("2147483648", None),
        ("99999999999999999999", None),
        (" 1", None),
        ("", None),
        ([1], None),
        ({"gb": 1}, None),
        (None, None),  # no size and no source
    ],
)
def test_bad_sizes_are_400(api: Api, nothing_created: None, size, message: str | None) -> None:
    resp = api.post("/volumes", {"volume": {"size": size, "name": "refused"}}, version="3.8")
    assert_fault(resp, 400, message)


def test_size_samples_match_exactly(api: Api, nothing_created: None) -> None:
    for name in ("error_create_size_minus1.json", "error_create_size_string.json"):
        captured = sample(name)
        resp = api.post("/volumes", captured["request"]["body"], version="3.8")
        assert resp.status_code == captured["response"]["status"]
        assert resp.json() == captured["response"]["body"]


@pytest.mark.parametrize("new_size", ["99999999999999999999", "2147483648", "0", 2147483648])
def test_bad_extend_sizes_are_400(api: Api, new_size) -> None:
    volume = mem_volume(api)
    resp = api.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": new_size}})
    assert_fault(resp, 400)
    after = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert (after["size"], after["status"]) == (1, "available")


# --- other create fields ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"volume_type": "no-such-type"}, 404),
        ({"volume_type": UNKNOWN_ID}, 404),
        ({"volume_type": "x" * 256}, 400),
        ({"availability_zone": "nowhere"}, 400),
        ({"availability_zone": ""}, 400),
        ({"snapshot_id": UNKNOWN_ID}, 404),
        ({"snapshot_id": "abc"}, 400),
        ({"source_volid": UNKNOWN_ID}, 404),
        ({"source_volid": "abc"}, 400),
        ({"name": "x" * 256}, 400),
        ({"description": "x" * 256}, 400),
        ({"name": 5}, 400),
        ({"metadata": {"k": 1}}, 400),
        ({"metadata": {"k!": "v"}}, 400),
        ({"metadata": "k=v"}, 400),
        ({"multiattach": True}, 400),
        ({"multiattach": "yes"}, 400),
        ({"imageRef": "cirros"}, 400),
        ({"backup_id": UNKNOWN_ID}, 400),
        ({"consistencygroup_id": UNKNOWN_ID}, 400),
    ],
)
def test_bad_create_fields(api: Api, nothing_created: None, fields: dict, status: int) -> None:
    resp = api.post("/volumes", {"volume": {"size": 1, **fields}})
    assert_fault(resp, status)


def test_unknown_type_message(api: Api, nothing_created: None) -> None:
    resp = api.post("/volumes", {"volume": {"size": 1, "volume_type": "no-such-type"}})
    assert "no-such-type" in assert_fault(resp, 404)


# --- ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        f"/volumes/{UNKNOWN_ID}",
        f"/volumes/{UNKNOWN_ID}/metadata",
        f"/snapshots/{UNKNOWN_ID}",
        f"/types/{UNKNOWN_ID}",
        "/volumes/not-a-uuid",
        "/volumes/" + "x" * 300,
        "/volumes/%00",
        "/volumes/%27%20OR%201%3D1--",
        "/snapshots/not-a-uuid",
        "/types/%27%3B%20DROP%20TABLE%20volume_types%3B--",
    ],
)
def test_unknown_and_malformed_ids_are_404(api: Api, path: str) -> None:
    assert_fault(api.get(path), 404)


def test_unknown_volume_message(api: Api) -> None:
    assert_fault(api.get(f"/volumes/{UNKNOWN_ID}"), 404, f"Volume {UNKNOWN_ID} could not be found.")
    expected = sample("error_show_malformed_id_404.json")["response"]["body"]
    resp = api.get("/volumes/not-a-uuid", version="3.8")
    assert resp.json() == expected


# --- list parameters --------------------------------------------------------------------------
def test_negative_limit_is_400_with_cinder_message(api: Api) -> None:
    resp = api.get("/volumes?limit=-1", version="3.8")
    assert_fault(resp, 400)
    assert resp.json() == sample_body("error_bad_limit.json")


@pytest.mark.parametrize("limit", ["abc", "1.5", "", "0x10", "1e3"])
def test_non_integer_limit_is_400(api: Api, limit: str) -> None:
    assert_fault(api.get(f"/volumes?limit={limit}"), 400, "limit param must be an integer")


@pytest.mark.parametrize("limit", ["1001", "2147483648", "99999999999999999999999"])
def test_huge_limit_is_capped(api: Api, limit: str) -> None:
    mem_volume(api)
    for path in ("/volumes", "/volumes/detail", "/snapshots", "/types"):
        resp = api.get(f"{path}?limit={limit}")
        assert resp.status_code == 200, resp.text
    assert len(api.get(f"/volumes?limit={limit}").json()["volumes"]) == 1


@pytest.mark.parametrize("offset", ["-1", "abc", "99999999999999999999"])
def test_bad_offset_is_400(api: Api, offset: str) -> None:
    assert_fault(api.get(f"/volumes?offset={offset}"), 400)


@pytest.mark.parametrize(
    "query",
    [
        "?name=%27%3B%20DROP%20TABLE%20volumes%3B--",
        "?name=x%27%20OR%20%271%27%3D%271",
        "?status=available%22%20OR%201%3D1",
        "?metadata={'k':\"' OR 1=1 --\"}",
        "?sort=name;drop:asc",
        "?size=99999999999999999999",
        "?size=-1",
        "?metadata=__import__('os').system('true')",
        "?metadata={'a':{'b':'c'}}",
        "?created_at=gt:not-a-date",
        "?bootable=maybe",
        "?marker=%27%20OR%201%3D1",
    ],
)
def test_hostile_query_strings_never_500(api: Api, member_api: Api, query: str) -> None:
    mem_volume(api, name="victim")
    for client in (api, member_api):
        resp = client.get(f"/volumes/detail{query}")
        assert resp.status_code in (200, 400, 404), resp.text
        if resp.status_code == 200:
            assert resp.json()["volumes"] == [] or query.startswith("?metadata={'a'")
        else:
            assert_fault(resp, resp.status_code)
    assert len(volume_ids(api)) == 1


def test_like_filter_with_sql_wildcards(api: Api) -> None:
    mem_volume(api, name="100% real")
    mem_volume(api, name="1000 real")
    resp = api.get("/volumes?name~=0%25", version="3.34")
    assert [v["name"] for v in resp.json()["volumes"]] == ["100% real"]


# --- sizes of requests -------------------------------------------------------------------------
def test_body_at_the_limit_is_read(api: Api) -> None:
    body = json.dumps({"volume": {"size": 1, "volume_type": "no-such-type"}})
    content = body + " " * (114688 - len(body))
    assert len(content) == 114688
    # Parsed, then refused for the type: the size itself was acceptable.
    assert_fault(_post_raw(api, "/volumes", content), 404)


def test_oversized_body_is_413(api: Api, nothing_created: None) -> None:
    body = json.dumps({"volume": {"size": 1}})
    content = body + " " * (114689 - len(body))
    resp = _post_raw(api, "/volumes", content)
    assert_fault(resp, 413)
    assert "overLimit" in resp.json()


def test_oversized_chunked_body_is_413(api: Api, nothing_created: None) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"volume": {"size": 1, "name": "'
        for _ in range(64):
            yield b"x" * 4096
        yield b'"}}'

    resp = api.client.post(
        api.url("/volumes"),
        content=chunks(),
        headers=api.headers(**{"Content-Type": "application/json"}),
    )
    assert_fault(resp, 413)


def test_deeply_nested_json_is_400(api: Api, nothing_created: None) -> None:
    for depth in (200, 900, 5000):
        inner = '{"a": ' * depth + "1" + "}" * depth
        for version in ("3.0", "3.71"):
            content = '{"volume": {"size": 1, "metadata": ' + inner + "}}"
            assert_fault(_post_raw(api, "/volumes", content, **{}), 400)
            content = '{"volume": {"size": 1, "name": "deep", "x": ' + inner + "}}"
            resp = api.client.post(
                api.url("/volumes"),
                content=content,
                headers=api.headers(version, **{"Content-Type": "application/json"}),
            )
            if version == "3.71":
                assert_fault(resp, 400)
            elif resp.status_code == 202:  # unknown keys are ignored before 3.53
                api.wait_volume(resp.json()["volume"]["id"])
                api.delete(f"/volumes/{resp.json()['volume']['id']}")
                api.wait_gone(f"/volumes/{resp.json()['volume']['id']}")
            else:
                assert_fault(resp, 400)
    deep_list = "[" * 100000 + "]" * 100000
    assert_fault(_post_raw(api, "/volumes", deep_list[:110000]), 400)


# --- text --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "ünïcødé 名前",
        "emoji 🚀🔥 in a name",
        "right-to-left \u202e txet",
        "quote ' and \" and \\ backslash",
        "Robert'); DROP TABLE volumes;--",
        "x" * 255,
        "🚀" * 255,
        "名" * 255,
    ],
)
def test_unusual_names_round_trip(api: Api, name: str) -> None:
    volume = mem_volume(api, name=name, description=name[:255], metadata={"k": name[:255]})
    shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert shown["name"] == name
    assert shown["description"] == name[:255]
    assert shown["metadata"] == {"k": name[:255]}
    resp = api.client.get(api.url("/volumes"), params={"name": name}, headers=api.headers())
    assert [v["id"] for v in resp.json()["volumes"]] == [volume["id"]]


def test_nul_characters_are_400(api: Api, nothing_created: None) -> None:
    # No database column can hold them everywhere (PostgreSQL refuses NUL outright).
    for fields in ({"name": "a\x00b"}, {"description": "a\x00b"}, {"metadata": {"k": "a\x00b"}}):
        assert_fault(api.post("/volumes", {"volume": {"size": 1, **fields}}), 400)
    resp = api.client.get(api.url("/volumes"), params={"name": "a\x00b"}, headers=api.headers())
    assert_fault(resp, 400)
    # A literal backslash-u-0000 text is fine.
    volume = mem_volume(api, name="back\\u0000slash")
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["name"] == "back\\u0000slash"
    api.delete(f"/volumes/{volume['id']}")
    api.wait_gone(f"/volumes/{volume['id']}")


# --- routes, projects, tokens --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/no-such-resource"),
        ("GET", "/volumes/detail/extra"),
        ("POST", "/volumes/detail"),
        ("GET", "/backups"),
        ("GET", "/group_types"),
        ("DELETE", "/volumes"),
    ],
)
def test_unknown_routes_are_404_or_405_faults(api: Api, method: str, path: str) -> None:
    resp = api.request(method, path, body={} if method == "POST" else None)
    assert resp.status_code in (404, 405)
    message = assert_fault(resp, resp.status_code)
    if resp.status_code == 404:
        assert message == "The resource could not be found."


def test_unknown_top_level_path_is_404_fault(cinder: RunningService) -> None:
    assert_fault(raw(cinder, "GET", "/v4/volumes", token="admin:abc"), 404)
    assert_fault(raw(cinder, "GET", "/v2/abc/volumes", token="admin:abc"), 404)


def test_non_hex_project_is_404_fault(cinder: RunningService) -> None:
    assert sample("error_project_id_not_hex_404.json")["response"]["status"] == 404
    for project in ("anchor", "ABCDEF", "abc_def"):
        resp = raw(cinder, "GET", f"/v3/{project}/volumes", token=f"admin:{project}")
        assert_fault(resp, 404, "The resource could not be found.")


def test_no_token_is_401(cinder: RunningService, project: str) -> None:
    assert sample("noauth_without_token.json")["response"]["status"] == 204  # Cinder's defect
    for method, path in (
        ("GET", f"/v3/{project}/volumes"),
        ("POST", f"/v3/{project}/volumes"),
        ("GET", "/v3/volumes"),
        ("DELETE", f"/v3/{project}/volumes/{UNKNOWN_ID}"),
    ):
        resp = raw(cinder, method, path, version="volume 3.71")
        assert_fault(resp, 401)
        assert "x-auth-token" not in resp.headers
    for token in ("", ":", ":abc"):
        resp = raw(cinder, "GET", f"/v3/{project}/volumes", headers={"X-Auth-Token": token})
        assert_fault(resp, 401)


def test_project_in_url_must_match_the_token(
    api: Api, cinder: RunningService, nothing_created: None
) -> None:
    other = "0123456789abcdef0123456789abcdef"
    resp = raw(cinder, "GET", f"/v3/{other}/volumes", token=f"admin:{api.project}")
    assert_fault(resp, 400, "Malformed request url")
    resp = httpx.post(
        f"{cinder.url}/v3/{other}/volumes",
        json={"volume": {"size": 1}},
        headers={"X-Auth-Token": f"admin:{api.project}"},
    )
    assert_fault(resp, 400, "Malformed request url")


def test_request_ids_on_refusals(api: Api) -> None:
    for resp in (
        api.post("/volumes", {}),
        api.get(f"/volumes/{UNKNOWN_ID}"),
        api.get("/volumes?limit=-1"),
    ):
        assert_request_ids(resp)


# --- a sweep: odd bodies to every writable route ------------------------------------------
ODD_BODIES = [
    None,
    {},
    [],
    "text",
    0,
    {"x": None},
    {"volume": "x"},
    {"snapshot": []},
    {"metadata": None},
    {"meta": None},
    {"volume_type": {"name": None}},
    {"extra_specs": []},
    {"os-extend": None},
    {"os-extend": {"new_size": None}},
    {"os-reset_status": None},
    {"os-reset_status": {"status": None}},
    {"os-force_delete": None},
    {"revert": None},
    {"revert": {"snapshot_id": None}},
    {"os-reset_status": {"status": "error"}, "os-force_delete": {}},
]


def test_odd_bodies_never_500(api: Api, cinder: RunningService) -> None:
    volume = mem_volume(api, metadata={"k": "v"})
    snap_resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    snap = api.wait_snapshot(snap_resp.json()["snapshot"]["id"])
    type_resp = api.post("/types", {"volume_type": {"name": f"sweep-{api.project[:8]}"}})
    vtype = type_resp.json()["volume_type"]
    routes = [
        ("POST", "/volumes"),
        ("PUT", f"/volumes/{volume['id']}"),
        ("POST", f"/volumes/{volume['id']}/action"),
        ("POST", f"/volumes/{volume['id']}/metadata"),
        ("PUT", f"/volumes/{volume['id']}/metadata"),
        ("PUT", f"/volumes/{volume['id']}/metadata/k"),
        ("POST", "/snapshots"),
        ("PUT", f"/snapshots/{snap['id']}"),
        ("POST", f"/snapshots/{snap['id']}/action"),
        ("POST", f"/snapshots/{snap['id']}/metadata"),
        ("PUT", f"/snapshots/{snap['id']}/metadata"),
        ("PUT", f"/snapshots/{snap['id']}/metadata/k"),
        ("POST", "/types"),
        ("PUT", f"/types/{vtype['id']}"),
        ("POST", f"/types/{vtype['id']}/extra_specs"),
        ("PUT", f"/types/{vtype['id']}/extra_specs/k"),
    ]
    for method, path in routes:
        for body in ODD_BODIES:
            for version in ("3.0", "3.71"):
                resp = api.client.request(
                    method,
                    api.url(path),
                    content=json.dumps(body),
                    headers=api.headers(version, **{"Content-Type": "application/json"}),
                )
                assert resp.status_code < 500, (method, path, body, resp.text)
                if resp.status_code >= 400:
                    assert_fault(resp, resp.status_code)
    cinder.wait_idle()
    shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert shown["status"] in ("available", "error")  # reset_status bodies may apply
    assert api.get(f"/snapshots/{snap['id']}").status_code in (200, 404)


def test_longest_metadata_keys_and_values_fit(api: Api) -> None:
    key = "k" * 255
    volume = mem_volume(api, metadata={key: "é" * 255, "a:b.c-d_e/f g": "v"})
    assert api.get(f"/volumes/{volume['id']}/metadata").json()["metadata"] == {
        key: "é" * 255,
        "a:b.c-d_e/f g": "v",
    }
    assert api.get(f"/volumes/{volume['id']}/metadata/{key}").json() == {"meta": {key: "é" * 255}}
