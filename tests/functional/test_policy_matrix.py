"""The authorization matrix: every route the API serves x {member of the owning project,
member of another project, admin, anonymous}, with the status each must get.

The table must name every route of api/app.py's V3_ROUTES (test_every_route_is_in_the_
table fails otherwise): a new endpoint gets its row here. Each row acts on resources of
project A made for that row. The member of project B goes first, on the same resources
the owner then uses: a 2xx for the owner afterwards shows B changed nothing. Admin acts
on a second, identical set when the owner's request changed the first.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cbhelpers import assert_fault, mem_volume, snapshot

from cinderblock.api.app import V3_ROUTES
from cinderblock.policy.defaults import ACTIONS
from conftest import Api, RunningService, start_service

MEM_HOST = "testhost@mem"
CONNECTOR = {"host": "compute-9", "initiator": "iqn.1993-08.org.debian:01:compute-9"}


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # as in V3_ROUTES
    owner: int  # member of the project that owns the resources
    other: int  # member of another project
    admin: int
    body: Any = None
    query: str = ""
    needs: str = ""  # v volume, s snapshot, a attachment, m message, t type
    label: str = ""  # the action, for action routes
    # the policy action named in 403s (checked against the fault message)
    action: str | None = None
    kw: dict[str, Any] = field(default_factory=dict)

    @property
    def all_needs(self) -> str:
        """needs, plus what the route's and body's placeholders name."""
        text = self.route + repr(self.body)
        derived = {
            "{volume_id}": "v",
            "{snapshot_id}": "vs",
            "{attachment_id}": "va",
            "{message_id}": "m",
            "{type_id}": "t",
        }
        return self.needs + "".join(n for ref, n in derived.items() if ref in text)

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}{self.query} {self.label}".strip()


def vol_action(name: str, args: Any, owner: int, other: int, admin: int, **kw: Any) -> Row:
    return Row(
        "POST",
        "/volumes/{volume_id}/action",
        owner,
        other,
        admin,
        body={name: args},
        label=name,
        needs=kw.pop("needs", "v"),
        **kw,
    )


def snap_action(name: str, args: Any, owner: int, other: int, admin: int, **kw: Any) -> Row:
    return Row(
        "POST",
        "/snapshots/{snapshot_id}/action",
        owner,
        other,
        admin,
        body={name: args},
        label=name,
        needs="vs",
        **kw,
    )


RESET = "volume_extension:volume_admin_actions:reset_status"
NEW_TYPE = {"volume_type": {"name": "<unique>"}}
ROWS: list[Row] = [
    # volumes
    Row("GET", "/volumes", 200, 200, 200, needs="v"),
    Row("GET", "/volumes/detail", 200, 200, 200, needs="v"),
    Row("GET", "/volumes/summary", 200, 200, 200, needs="v"),
    Row("POST", "/volumes", 202, 202, 202, body={"volume": {"size": 1, "volume_type": "<mem>"}}),
    Row("GET", "/volumes/{volume_id}", 200, 404, 200, needs="v"),
    Row("PUT", "/volumes/{volume_id}", 200, 404, 200, body={"volume": {"name": "x"}}, needs="v"),
    Row("DELETE", "/volumes/{volume_id}", 202, 404, 202, needs="v"),
    Row(
        "DELETE",
        "/volumes/{volume_id}",
        403,
        404,
        202,
        query="?force=true",
        needs="v",
        action="volume:force_delete",
    ),
    Row("GET", "/volumes/{volume_id}/metadata", 200, 404, 200, needs="v"),
    Row("POST", "/volumes/{volume_id}/metadata", 200, 404, 200, body={"metadata": {"a": "b"}}),
    Row("PUT", "/volumes/{volume_id}/metadata", 200, 404, 200, body={"metadata": {"a": "b"}}),
    Row("GET", "/volumes/{volume_id}/metadata/{key}", 200, 404, 200, needs="v"),
    Row("PUT", "/volumes/{volume_id}/metadata/{key}", 200, 404, 200, body={"meta": {"k": "w"}}),
    Row("DELETE", "/volumes/{volume_id}/metadata/{key}", 200, 404, 200, needs="v"),
    # volume actions
    vol_action("os-extend", {"new_size": 2}, 202, 404, 202),
    vol_action("os-reset_status", {"status": "error"}, 403, 404, 202, action=RESET),
    vol_action(
        "os-force_delete",
        {},
        403,
        404,
        202,
        action="volume_extension:volume_admin_actions:force_delete",
    ),
    vol_action(
        "os-repair_status",
        {},
        403,
        404,
        200,
        action="volume_extension:volume_admin_actions:repair_status",
    ),
    vol_action(
        "os-unmanage", {}, 403, 404, 202, action="volume_extension:volume_unmanage", needs="v"
    ),
    vol_action(
        "os-migrate_volume",
        {"host": "nowhere@nothing"},
        403,
        404,
        400,  # policy passed: no such destination
        action="volume_extension:volume_admin_actions:migrate_volume",
    ),
    vol_action("revert", {"snapshot_id": "{snapshot_id}"}, 202, 404, 202, needs="vs"),
    vol_action("os-reserve", {}, 202, 404, 202),
    vol_action("os-unreserve", {}, 202, 404, 202),
    vol_action("os-begin_detaching", {}, 400, 404, 400),  # policy passed: not attached
    vol_action("os-roll_detaching", {}, 202, 404, 202),
    vol_action("os-attach", {"mountpoint": "/dev/vdb", "host_name": "h"}, 202, 404, 202),
    vol_action("os-detach", {}, 400, 404, 400),  # policy passed: nothing attached
    vol_action("os-initialize_connection", {"connector": CONNECTOR}, 200, 404, 200),
    vol_action("os-terminate_connection", {"connector": CONNECTOR}, 202, 404, 202),
    vol_action("os-update_readonly_flag", {"readonly": True}, 202, 404, 202),
    vol_action("os-set_bootable", {"bootable": True}, 200, 404, 200),
    # snapshots
    Row("GET", "/snapshots", 200, 200, 200, needs="vs"),
    Row("GET", "/snapshots/detail", 200, 200, 200, needs="vs"),
    Row("POST", "/snapshots", 202, 404, 202, body={"snapshot": {"volume_id": "{volume_id}"}}),
    Row("GET", "/snapshots/{snapshot_id}", 200, 404, 200, needs="vs"),
    Row("PUT", "/snapshots/{snapshot_id}", 200, 404, 200, body={"snapshot": {"name": "x"}}),
    Row("DELETE", "/snapshots/{snapshot_id}", 202, 404, 202, needs="vs"),
    Row("GET", "/snapshots/{snapshot_id}/metadata", 200, 404, 200, needs="vs"),
    Row("POST", "/snapshots/{snapshot_id}/metadata", 200, 404, 200, body={"metadata": {"a": "b"}}),
    Row("PUT", "/snapshots/{snapshot_id}/metadata", 200, 404, 200, body={"metadata": {"a": "b"}}),
    Row("GET", "/snapshots/{snapshot_id}/metadata/{key}", 200, 404, 200, needs="vs"),
    Row("PUT", "/snapshots/{snapshot_id}/metadata/{key}", 200, 404, 200, body={"meta": {"k": "w"}}),
    Row("DELETE", "/snapshots/{snapshot_id}/metadata/{key}", 200, 404, 200, needs="vs"),
    snap_action(
        "os-reset_status",
        {"status": "error"},
        403,
        404,
        202,
        action="volume_extension:snapshot_admin_actions:reset_status",
    ),
    snap_action(
        "os-force_delete",
        {},
        403,
        404,
        202,
        action="volume_extension:snapshot_admin_actions:force_delete",
    ),
    snap_action(
        "os-repair_status",
        {},
        403,
        404,
        200,
        action="volume_extension:snapshot_admin_actions:repair_status",
    ),
    snap_action("os-unmanage", {}, 403, 404, 202, action="snapshot_extension:snapshot_unmanage"),
    # types: global; reads for everyone, writes for admins
    Row("GET", "/types", 200, 200, 200),
    Row("POST", "/types", 403, 403, 200, body=NEW_TYPE, action="volume_extension:types_manage"),
    Row("GET", "/types/{type_id}", 200, 200, 200, needs="t"),
    Row(
        "PUT",
        "/types/{type_id}",
        403,
        403,
        200,
        body={"volume_type": {"description": "d"}},
        needs="t",
        action="volume_extension:types_manage",
    ),
    Row("DELETE", "/types/{type_id}", 403, 403, 202, needs="t"),
    Row("GET", "/types/{type_id}/extra_specs", 200, 200, 200, needs="t"),
    Row(
        "POST",
        "/types/{type_id}/extra_specs",
        403,
        403,
        200,
        body={"extra_specs": {"a": "b"}},
        needs="t",
        action="volume_extension:types_extra_specs:create",
    ),
    Row("GET", "/types/{type_id}/extra_specs/{key}", 200, 200, 200, needs="t"),
    Row(
        "PUT",
        "/types/{type_id}/extra_specs/{key}",
        403,
        403,
        200,
        body={"k": "w"},
        needs="t",
        action="volume_extension:types_extra_specs:update",
    ),
    Row(
        "DELETE",
        "/types/{type_id}/extra_specs/{key}",
        403,
        403,
        202,
        needs="t",
        action="volume_extension:types_extra_specs:delete",
    ),
    # messages
    Row("GET", "/messages", 200, 200, 200, needs="m"),
    Row("GET", "/messages/{message_id}", 200, 404, 200, needs="m"),
    Row("DELETE", "/messages/{message_id}", 204, 404, 204, needs="m"),
    # informational
    Row("GET", "/limits", 200, 200, 200),
    Row("GET", "/os-availability-zone", 200, 200, 200),
    Row("GET", "/resource_filters", 200, 200, 200),
    # attachments
    Row(
        "POST",
        "/attachments",
        200,
        404,
        200,
        body={"attachment": {"volume_uuid": "{volume_id}", "instance_uuid": "<uuid>"}},
        needs="v",
    ),
    Row("GET", "/attachments", 200, 200, 200, needs="va"),
    Row("GET", "/attachments/detail", 200, 200, 200, needs="va"),
    Row("GET", "/attachments/{attachment_id}", 200, 404, 200, needs="va"),
    Row(
        "PUT",
        "/attachments/{attachment_id}",
        200,
        404,
        200,
        body={"attachment": {"connector": CONNECTOR}},
        needs="va",
    ),
    Row("DELETE", "/attachments/{attachment_id}", 200, 404, 200, needs="va"),
    Row(
        "POST",
        "/attachments/{attachment_id}/action",
        204,
        404,
        204,
        body={"os-complete": {}},
        needs="vac",
    ),
    # quotas: a member sees its own project's, changes none
    Row("GET", "/os-quota-sets/{target_project_id}", 200, 403, 200),
    Row("GET", "/os-quota-sets/{target_project_id}/defaults", 200, 403, 200),
    Row(
        "PUT",
        "/os-quota-sets/{target_project_id}",
        403,
        403,
        200,
        body={"quota_set": {"volumes": 20}},
        action="volume_extension:quotas:update",
    ),
    Row(
        "DELETE",
        "/os-quota-sets/{target_project_id}",
        403,
        403,
        200,
        action="volume_extension:quotas:delete",
    ),
    # service administration: admin only
    Row("GET", "/os-services", 403, 403, 200, action="volume_extension:services:index"),
    Row(
        "PUT",
        "/os-services/{action}",
        403,
        403,
        200,
        body={"host": MEM_HOST, "binary": "cinder-volume"},
        action="volume_extension:services:update",
    ),
    Row(
        "GET",
        "/scheduler-stats/get_pools",
        403,
        403,
        200,
        action="scheduler_extension:scheduler_stats:get_pools",
    ),
    Row("GET", "/capabilities/{host}", 403, 403, 200, action="volume_extension:capabilities"),
]
# manage / unmanage: admin only (the admin's manage names nothing on the backend: it is
# accepted, then fails in the volume service)
for _prefix, _kind in (
    ("/manageable_volumes", "volume"),
    ("/os-volume-manage", "volume"),
    ("/manageable_snapshots", "snapshot"),
    ("/os-snapshot-manage", "snapshot"),
):
    _ext = "volume_extension" if _kind == "volume" else "snapshot_extension"
    _manage = f"{_ext}:{_kind}_manage"
    _list = f"{_ext}:list_manageable"
    _body: dict[str, Any] = (
        {"volume": {"host": f"{MEM_HOST}#mem", "ref": {"source-name": "no-such-object"}}}
        if _kind == "volume"
        else {"snapshot": {"volume_id": "{volume_id}", "ref": {"source-name": "no-such"}}}
    )
    ROWS += [
        Row("POST", _prefix, 403, 403, 202, body=_body, action=_manage, needs="v"),
        Row("GET", _prefix, 403, 403, 200, query=f"?host={MEM_HOST}", action=_list),
        Row("GET", f"{_prefix}/detail", 403, 403, 200, query=f"?host={MEM_HOST}", action=_list),
    ]


def test_every_route_is_in_the_table() -> None:
    served = {(method, path) for path, methods, _h, _v in V3_ROUTES for method in methods}
    tabled = {(row.method, row.route) for row in ROWS}
    assert served - tabled == set(), "routes without a row in the authorization matrix"
    assert tabled - served == set(), "rows for routes the API does not serve"


# --- resources ---------------------------------------------------------------------------
class Worlds:
    """Makes the resources a row needs, in a fresh project A per row."""

    def __init__(self, cinder: RunningService) -> None:
        self.url = cinder.url
        self.admin = Api(cinder.url, uuid.uuid4().hex)  # user "admin", its own project
        self._nowhere: str | None = None

    def nowhere_type(self) -> str:
        if self._nowhere is None:
            resp = self.admin.post(
                "/types",
                {
                    "volume_type": {
                        "name": f"matrix-nowhere-{uuid.uuid4().hex[:8]}",
                        "extra_specs": {"volume_backend_name": "no-such-backend"},
                    }
                },
            )
            assert resp.status_code == 200, resp.text
            self._nowhere = resp.json()["volume_type"]["name"]
        return self._nowhere

    def make(self, owner: Api, needs: str) -> dict[str, str]:
        world = {
            "key": "k",
            "target_project_id": owner.project,
            "action": "enable",
            "host": MEM_HOST,
        }
        if "v" in needs or "s" in needs or "a" in needs:
            volume = mem_volume(owner, metadata={"k": "v"})
            world["volume_id"] = volume["id"]
        if "s" in needs:
            world["snapshot_id"] = snapshot(owner, world["volume_id"], metadata={"k": "v"})["id"]
        if "a" in needs:
            resp = owner.post(
                "/attachments",
                {"attachment": {"volume_uuid": world["volume_id"], "instance_uuid": _uuid()}},
            )
            assert resp.status_code == 200, resp.text
            world["attachment_id"] = resp.json()["attachment"]["id"]
            if "c" in needs:
                resp = owner.put(
                    f"/attachments/{world['attachment_id']}",
                    {"attachment": {"connector": CONNECTOR}},
                )
                assert resp.status_code == 200, resp.text
        if "m" in needs:
            resp = owner.post(
                "/volumes", {"volume": {"size": 1, "volume_type": self.nowhere_type()}}
            )
            assert resp.status_code == 202, resp.text
            owner.wait_volume(resp.json()["volume"]["id"], statuses=("error",))
            messages = owner.get("/messages").json()["messages"]
            assert messages, "a failed create leaves a message"
            world["message_id"] = messages[0]["id"]
        if "t" in needs:
            resp = self.admin.post(
                "/types",
                {
                    "volume_type": {
                        "name": f"matrix-{uuid.uuid4().hex[:10]}",
                        "extra_specs": {"k": "v"},
                    }
                },
            )
            assert resp.status_code == 200, resp.text
            world["type_id"] = resp.json()["volume_type"]["id"]
        return world


def _uuid() -> str:
    return str(uuid.uuid4())


def _fill(value: Any, world: dict[str, str], mem_type: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, world, mem_type) for k, v in value.items()}
    if isinstance(value, str):
        if value == "<uuid>":
            return _uuid()
        if value == "<unique>":
            return f"matrix-{uuid.uuid4().hex[:10]}"
        if value == "<mem>":
            return mem_type
        return value.format(**world) if "{" in value else value
    return value


@pytest.fixture(scope="module")
def worlds(cinder: RunningService) -> Iterator[Worlds]:
    made = Worlds(cinder)
    yield made
    made.admin.client.close()


def _request(client: Api, row: Row, world: dict[str, str], mem_type: str) -> httpx.Response:
    path = _fill(row.route, world, mem_type) + row.query
    body = _fill(row.body, world, mem_type)
    return client.request(row.method, path, body)


def _check(resp: httpx.Response, expected: int, row: Row, who: str) -> None:
    if expected >= 400:
        message = None
        if expected == 403 and row.action:
            message = f"Policy doesn't allow {row.action} to be performed."
        try:
            assert_fault(resp, expected, message)
        except AssertionError as err:
            raise AssertionError(f"{row.id} as {who}: {err}") from err
    else:
        assert resp.status_code == expected, f"{row.id} as {who}: {resp.status_code} {resp.text}"


_IDS = re.compile(r"_id$")


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_matrix(cinder: RunningService, worlds: Worlds, row: Row) -> None:
    project_a = uuid.uuid4().hex
    owner = Api(cinder.url, project_a, user="demo")
    other = Api(cinder.url, uuid.uuid4().hex, user="demo")
    admin = worlds.admin
    mem_type = mem_volume_type(owner)
    try:
        world = worlds.make(owner, row.all_needs)
        # B first, on the resources the owner uses next: B must neither see nor change them.
        resp = _request(other, row, world, mem_type)
        _check(resp, row.other, row, "member of another project")
        if resp.status_code < 300:  # (lists, global reads) nothing of A's shows
            for key, value in world.items():
                if _IDS.search(key) and key not in ("type_id", "target_project_id"):
                    assert value not in resp.text, f"{row.id}: B sees A's {key}"
        _check(_request(owner, row, world, mem_type), row.owner, row, "owner")
        if row.method != "GET" and row.owner < 300:
            # the owner changed them: the admin acts on resources of its own
            world = worlds.make(owner, row.all_needs)
        _check(_request(admin, row, world, mem_type), row.admin, row, "admin")
    finally:
        owner.client.close()
        other.client.close()


def mem_volume_type(api: Api) -> str:
    from cbhelpers import backend_type

    return str(backend_type(api, "mem")["name"])


@pytest.mark.parametrize(
    "route", sorted({(r.method, r.route) for r in ROWS}), ids=lambda r: f"{r[0]} {r[1]}"
)
def test_anonymous_is_401(cinder: RunningService, route: tuple[str, str]) -> None:
    method, path = route
    filled = re.sub(r"\{[a-z_]+\}", "00000000-0000-0000-0000-000000000000", path)
    url = f"{cinder.url}/v3/{uuid.uuid4().hex}{filled}"
    headers = {"OpenStack-API-Version": "volume 3.71"}
    with httpx.Client(timeout=30) as client:
        body = {} if method in ("POST", "PUT") else None
        resp = client.request(method, url, json=body, headers=headers)
    assert_fault(resp, 401)


# --- every endpoint asks the policy ------------------------------------------------------
@pytest.fixture(scope="module")
def deny_all(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[str]:
    """A second service on the same database whose policy file refuses every action."""
    directory = tmp_path_factory.mktemp("deny-all")
    lines = [f'"{rule.name}": "!"' for rule in ACTIONS]
    (directory / "policy.yaml").write_text("\n".join(lines) + "\n")
    running = start_service(directory, database_url)
    try:
        yield running.url
    finally:
        running.stop()


def test_every_endpoint_asks_the_policy_before_acting(
    cinder: RunningService, worlds: Worlds, deny_all: str
) -> None:
    """With every action refused, every row is a 403 even for an admin, and nothing of
    the resources the requests name has changed."""
    owner = Api(cinder.url, uuid.uuid4().hex, user="demo")
    admin = Api(deny_all, uuid.uuid4().hex)
    try:
        mem_type = mem_volume_type(owner)
        world = worlds.make(owner, "vsacmt")
        before = {
            "volumes": owner.get("/volumes/detail").json(),
            "snapshots": owner.get("/snapshots/detail").json(),
            "volume": owner.get(f"/volumes/{world['volume_id']}").json()["volume"],
            "snapshot": owner.get(f"/snapshots/{world['snapshot_id']}").json()["snapshot"],
            "attachment": owner.get(f"/attachments/{world['attachment_id']}").json(),
            "message": owner.get(f"/messages/{world['message_id']}").json(),
            "type": worlds.admin.get(f"/types/{world['type_id']}").json(),
            "quota": worlds.admin.get(f"/os-quota-sets/{owner.project}").json(),
        }
        for row in ROWS:
            resp = _request(admin, row, world, mem_type)
            message = assert_fault(resp, 403)
            assert re.fullmatch(r"Policy doesn't allow \S+ to be performed\.", message), row.id
        after = {
            "volumes": owner.get("/volumes/detail").json(),
            "snapshots": owner.get("/snapshots/detail").json(),
            "volume": owner.get(f"/volumes/{world['volume_id']}").json()["volume"],
            "snapshot": owner.get(f"/snapshots/{world['snapshot_id']}").json()["snapshot"],
            "attachment": owner.get(f"/attachments/{world['attachment_id']}").json(),
            "message": owner.get(f"/messages/{world['message_id']}").json(),
            "type": worlds.admin.get(f"/types/{world['type_id']}").json(),
            "quota": worlds.admin.get(f"/os-quota-sets/{owner.project}").json(),
        }
        assert after == before
    finally:
        owner.client.close()
        admin.client.close()
