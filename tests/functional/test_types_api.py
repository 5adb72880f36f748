"""Volume types and extra specs: admin CRUD, visibility, in-use and default protection."""

from __future__ import annotations

import uuid

import pytest
from cbhelpers import UNKNOWN_ID, assert_fault, backend_type, mem_volume

from conftest import Api

VIEW_KEYS = {
    "id",
    "name",
    "description",
    "is_public",
    "os-volume-type-access:is_public",
    "extra_specs",
    "qos_specs_id",
}


def _name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _create(api: Api, **fields) -> dict:
    body = {"name": _name(), **fields}
    resp = api.post("/types", {"volume_type": body})
    assert resp.status_code == 200, resp.text
    return resp.json()["volume_type"]


def _type_names(client: Api, query: str = "") -> set[str]:
    resp = client.get(f"/types{query}")
    assert resp.status_code == 200, resp.text
    return {t["name"] for t in resp.json()["volume_types"]}


def test_create_and_show(api: Api) -> None:
    name = _name()
    resp = api.post(
        "/types",
        {
            "volume_type": {
                "name": name,
                "description": "fast",
                "extra_specs": {"volume_backend_name": "mem", "k": "v"},
            }
        },
    )
    assert resp.status_code == 200, resp.text
    created = resp.json()["volume_type"]
    assert set(created) == VIEW_KEYS
    assert created["name"] == name and created["description"] == "fast"
    assert created["is_public"] is True and created["os-volume-type-access:is_public"] is True
    assert created["extra_specs"] == {"volume_backend_name": "mem", "k": "v"}
    uuid.UUID(created["id"])
    shown = api.get(f"/types/{created['id']}").json()["volume_type"]
    assert shown == created
    assert name in _type_names(api)


def test_show_default(api: Api, member_api: Api) -> None:
    for client in (api, member_api):
        resp = client.get("/types/default")
        assert resp.status_code == 200
        assert resp.json()["volume_type"]["name"] == "__DEFAULT__"


def test_show_unknown_type_is_404(api: Api) -> None:
    message = assert_fault(api.get(f"/types/{UNKNOWN_ID}"), 404)
    assert UNKNOWN_ID in message


def test_duplicate_name_is_409(api: Api) -> None:
    created = _create(api)
    resp = api.post("/types", {"volume_type": {"name": created["name"]}})
    assert_fault(resp, 409)
    assert_fault(api.post("/types", {"volume_type": {"name": "__DEFAULT__"}}), 409)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"volume_type": {}},
        {"volume_type": {"name": ""}},
        {"volume_type": {"name": "   "}},
        {"volume_type": {"name": "x" * 256}},
        {"volume_type": {"name": "ok", "colour": "red"}},
        {"volume_type": {"name": "ok", "extra_specs": {"bad key": "v"}}},
        {"volume_type": {"name": "ok", "extra_specs": {"k": 5}}},
        {"volume_type": {"name": "ok", "os-volume-type-access:is_public": "perhaps"}},
    ],
)
def test_create_bad_bodies_are_400(api: Api, body: dict) -> None:
    before = _type_names(api, "?is_public=none")
    assert_fault(api.post("/types", body), 400)
    assert _type_names(api, "?is_public=none") == before


def test_members_cannot_manage_types(api: Api, member_api: Api) -> None:
    name = _name()
    assert_fault(member_api.post("/types", {"volume_type": {"name": name}}), 403)
    assert name not in _type_names(api, "?is_public=none")
    vtype = _create(api)
    tid = vtype["id"]
    assert_fault(member_api.put(f"/types/{tid}", {"volume_type": {"name": "x"}}), 403)
    assert_fault(member_api.delete(f"/types/{tid}"), 403)
    assert_fault(member_api.post(f"/types/{tid}/extra_specs", {"extra_specs": {"a": "b"}}), 403)
    assert_fault(member_api.put(f"/types/{tid}/extra_specs/a", {"a": "b"}), 403)
    assert_fault(member_api.delete(f"/types/{tid}/extra_specs/a"), 403)
    assert api.get(f"/types/{tid}").json()["volume_type"] == vtype


def test_members_do_not_see_backend_names_or_qos(api: Api, member_api: Api) -> None:
    vtype = _create(api, extra_specs={"volume_backend_name": "mem", "visible": "yes"})
    body = member_api.get(f"/types/{vtype['id']}").json()["volume_type"]
    assert set(body) == VIEW_KEYS - {"qos_specs_id"}
    assert body["extra_specs"] == {"visible": "yes"}
    listed = [t for t in member_api.get("/types").json()["volume_types"] if t["id"] == vtype["id"]]
    assert listed[0]["extra_specs"] == {"visible": "yes"}
    assert member_api.get(f"/types/{vtype['id']}/extra_specs").json() == {
        "extra_specs": {"visible": "yes"}
    }
    assert_fault(member_api.get(f"/types/{vtype['id']}/extra_specs/volume_backend_name"), 404)


def test_private_types_are_hidden_from_members(api: Api, member_api: Api) -> None:
    private = _create(api, **{"os-volume-type-access:is_public": False})
    assert private["is_public"] is False
    assert private["name"] not in _type_names(member_api)
    assert private["name"] not in _type_names(api)  # admins list public types by default
    assert private["name"] in _type_names(api, "?is_public=false")
    assert private["name"] in _type_names(api, "?is_public=none")
    assert_fault(member_api.get(f"/types/{private['id']}"), 404)
    assert api.get(f"/types/{private['id']}").status_code == 200


def test_members_cannot_create_volumes_of_private_types(api: Api, member_api: Api) -> None:
    private = _create(
        api,
        extra_specs={"volume_backend_name": "mem"},
        **{"os-volume-type-access:is_public": False},
    )
    for ident in (private["name"], private["id"]):
        resp = member_api.post("/volumes", {"volume": {"size": 1, "volume_type": ident}})
        assert_fault(resp, 404)
    assert member_api.get("/volumes").json()["volumes"] == []
    # Admins may.
    volume = api.create_volume(volume_type=private["name"])
    assert volume["volume_type"] == private["name"]


def test_update_type(api: Api) -> None:
    vtype = _create(api, description="old")
    new_name = _name("renamed")
    resp = api.put(
        f"/types/{vtype['id']}",
        {"volume_type": {"name": new_name, "description": "new", "is_public": False}},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()["volume_type"]
    assert (body["name"], body["description"], body["is_public"]) == (new_name, "new", False)
    shown = api.get(f"/types/{vtype['id']}").json()["volume_type"]
    assert (shown["name"], shown["description"], shown["is_public"]) == (new_name, "new", False)


def test_update_type_errors(api: Api) -> None:
    first, second = _create(api), _create(api)
    assert_fault(api.put(f"/types/{first['id']}", {"volume_type": {"name": second["name"]}}), 409)
    assert_fault(api.put(f"/types/{first['id']}", {"volume_type": {"name": ""}}), 400)
    assert_fault(api.put(f"/types/{first['id']}", {"volume_type": {"colour": "red"}}), 400)
    assert_fault(api.put(f"/types/{UNKNOWN_ID}", {"volume_type": {"name": _name()}}), 404)
    assert api.get(f"/types/{first['id']}").json()["volume_type"]["name"] == first["name"]


def test_delete_type(api: Api) -> None:
    vtype = _create(api)
    resp = api.delete(f"/types/{vtype['id']}")
    assert resp.status_code == 202
    assert_fault(api.get(f"/types/{vtype['id']}"), 404)
    assert vtype["name"] not in _type_names(api, "?is_public=none")
    assert_fault(api.delete(f"/types/{vtype['id']}"), 404)


def test_delete_type_in_use_is_400(api: Api) -> None:
    vtype = _create(api, extra_specs={"volume_backend_name": "mem"})
    volume = api.create_volume(volume_type=vtype["name"])
    assert_fault(api.delete(f"/types/{vtype['id']}"), 400)
    assert api.get(f"/types/{vtype['id']}").status_code == 200
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["volume_type"] == vtype["name"]
    api.delete(f"/volumes/{volume['id']}")
    api.wait_gone(f"/volumes/{volume['id']}")
    assert api.delete(f"/types/{vtype['id']}").status_code == 202


def test_delete_default_type_is_400(api: Api) -> None:
    default = api.get("/types/default").json()["volume_type"]
    assert_fault(api.delete(f"/types/{default['id']}"), 400)
    assert api.get("/types/default").json()["volume_type"]["id"] == default["id"]


def test_type_list_paging(api: Api) -> None:
    names = sorted(_name("page") for _ in range(3))
    for name in names:
        assert api.post("/types", {"volume_type": {"name": name}}).status_code == 200
    listed = [t["name"] for t in api.get("/types?sort=name:asc").json()["volume_types"]]
    assert [n for n in listed if n in names] == names
    first = api.get("/types?sort=name:desc&limit=1").json()["volume_types"]
    assert len(first) == 1
    after = api.get(f"/types?sort=name:desc&marker={first[0]['id']}").json()["volume_types"]
    assert first[0]["name"] not in [t["name"] for t in after]
    assert_fault(api.get("/types?limit=-1"), 400)
    assert_fault(api.get("/types?sort=nope:asc"), 400)


# --- extra specs --------------------------------------------------------------------------------
def test_extra_specs_crud(api: Api) -> None:
    tid = _create(api, extra_specs={"a": "1"})["id"]
    assert api.get(f"/types/{tid}/extra_specs").json() == {"extra_specs": {"a": "1"}}
    resp = api.post(f"/types/{tid}/extra_specs", {"extra_specs": {"b": "2", "a": "11"}})
    assert resp.status_code == 200
    assert resp.json() == {"extra_specs": {"b": "2", "a": "11"}}
    assert api.get(f"/types/{tid}/extra_specs").json() == {"extra_specs": {"a": "11", "b": "2"}}
    assert api.get(f"/types/{tid}/extra_specs/b").json() == {"b": "2"}
    resp = api.put(f"/types/{tid}/extra_specs/b", {"b": "22"})
    assert resp.status_code == 200
    assert resp.json() == {"b": "22"}
    resp = api.delete(f"/types/{tid}/extra_specs/a")
    assert resp.status_code == 202
    assert api.get(f"/types/{tid}/extra_specs").json() == {"extra_specs": {"b": "22"}}
    assert api.get(f"/types/{tid}").json()["volume_type"]["extra_specs"] == {"b": "22"}


def test_extra_specs_errors(api: Api) -> None:
    tid = _create(api, extra_specs={"a": "1"})["id"]
    assert_fault(api.get(f"/types/{tid}/extra_specs/nope"), 404)
    assert_fault(api.delete(f"/types/{tid}/extra_specs/nope"), 404)
    assert_fault(api.put(f"/types/{tid}/extra_specs/a", {"b": "2"}), 400)
    assert_fault(api.put(f"/types/{tid}/extra_specs/a", {"a": "2", "b": "2"}), 400)
    assert_fault(api.put(f"/types/{tid}/extra_specs/a", {}), 400)
    assert_fault(api.post(f"/types/{tid}/extra_specs", {"extra_specs": {"bad key": "v"}}), 400)
    assert_fault(api.post(f"/types/{tid}/extra_specs", {"extra_specs": {"k": "v" * 256}}), 400)
    assert_fault(api.post(f"/types/{tid}/extra_specs", {"specs": {"k": "v"}}), 400)
    assert_fault(api.get(f"/types/{UNKNOWN_ID}/extra_specs"), 404)
    assert_fault(api.post(f"/types/{UNKNOWN_ID}/extra_specs", {"extra_specs": {"k": "v"}}), 404)
    assert api.get(f"/types/{tid}/extra_specs").json() == {"extra_specs": {"a": "1"}}


def test_extra_spec_changes_steer_new_volumes(api: Api) -> None:
    vtype = _create(api, extra_specs={"volume_backend_name": "mem"})
    first = api.create_volume(volume_type=vtype["name"])
    assert first["os-vol-host-attr:host"] == "testhost@mem#mem"
    api.put(
        f"/types/{vtype['id']}/extra_specs/volume_backend_name", {"volume_backend_name": "files"}
    )
    second = api.create_volume(volume_type=vtype["name"])
    assert second["os-vol-host-attr:host"] == "testhost@files#files"
    api.delete(f"/volumes/{second['id']}")


def test_unicode_type_names(api: Api) -> None:
    name = f"тип-{uuid.uuid4().hex[:6]}-ボリューム"
    created = _create(api, name=name)
    assert api.get(f"/types/{created['id']}").json()["volume_type"]["name"] == name
    volume = mem_volume(api)  # unrelated volume; the type list still renders
    assert volume["id"]
    assert name in _type_names(api)


def test_backend_type_helper_is_pinned(api: Api) -> None:
    # The helper types other modules rely on really pin their backend.
    assert backend_type(api, "mem")["extra_specs"] == {"volume_backend_name": "mem"}


def test_type_paging_on_a_boolean_key(api: Api) -> None:
    _create(api, **{"os-volume-type-access:is_public": False})
    _create(api)
    everything = api.get("/types?is_public=none&sort=is_public:asc").json()["volume_types"]
    seen: list[str] = []
    marker = None
    while True:
        query = "?is_public=none&sort=is_public:asc&limit=2" + (
            f"&marker={marker}" if marker else ""
        )
        resp = api.get(f"/types{query}")
        assert resp.status_code == 200, resp.text
        page = resp.json()["volume_types"]
        if not page:
            break
        seen.extend(t["id"] for t in page)
        marker = page[-1]["id"]
        assert len(seen) <= len(everything)
    assert seen == [t["id"] for t in everything]


def test_default_type_cannot_be_renamed(api: Api) -> None:
    default = api.get("/types/default").json()["volume_type"]
    resp = api.put(f"/types/{default['id']}", {"volume_type": {"name": _name("stolen")}})
    assert_fault(resp, 400, "Invalid volume type: The default volume type cannot be renamed.")
    assert api.get("/types/default").json()["volume_type"] == default
    # Other changes to it are fine, and keeping the name is not a rename.
    resp = api.put(
        f"/types/{default['id']}",
        {"volume_type": {"name": "__DEFAULT__", "description": default["description"]}},
    )
    assert resp.status_code == 200, resp.text
    volume = api.create_volume(size=1)
    assert volume["volume_type"] == "__DEFAULT__"
    # Nor may another type take its name.
    other = _create(api)
    assert_fault(api.put(f"/types/{other['id']}", {"volume_type": {"name": "__DEFAULT__"}}), 409)
