"""python-cinderclient's `cinder` shell, unchanged, against a cinderblock process.

Invocation (noauth, see docs/clients.md):

    cinder --os-auth-type noauth --os-user-id admin --os-project-id <hex> \\
           --os-endpoint http://127.0.0.1:PORT/v3 --os-volume-api-version 3.71 <command>

cinderclient's noauth plugin sends X-Auth-Token "<user>:<project>" (plus X-User-Id /
X-Project-Id); with --os-endpoint it uses that URL as is, so requests go to
/v3/volumes/... (the project-less form); --os-endpoint .../v3/<project> gives
/v3/<project>/volumes/...
"""

from __future__ import annotations

import ast
import re
import subprocess
from typing import Any

from .support import (
    BIN,
    MAX_LIMIT,
    CinderCLI,
    Server,
    client_env,
    parse_table,
    unique,
    wait_for,
    wait_resource,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _requested_versions(debug_stderr: str) -> list[str]:
    """OpenStack-API-Version headers of the /volumes requests in `cinder --debug` output."""
    return [
        match.group(1) if match else "none"
        for line in debug_stderr.splitlines()
        if line.startswith("REQ: ") and "/volumes" in line
        for match in [re.search(r'OpenStack-API-Version: volume ([0-9.]+)"', line)]
    ]


def _listed(cli: CinderCLI, *args: str) -> dict[str, dict[str, str]]:
    return {row["ID"]: row for row in cli.table("list", *args)}


def test_api_version_shows_the_server_range(cinder_cli: CinderCLI) -> None:
    assert cinder_cli.table("api-version") == [
        {"ID": "v3.0", "Status": "CURRENT", "Version": "3.71", "Min_version": "3.0"}
    ]
    [row] = cinder_cli.table("version-list")
    assert row["Id"] == "v3.0"
    assert row["Status"] == "CURRENT"
    assert row["Min Version"] == "3.0"
    assert row["Version"] == "3.71"


def test_version_negotiation(cinder_cli: CinderCLI) -> None:
    # No version asked: cinderclient reads GET / and uses the highest common one.
    result = cinder_cli.run("--debug", "list", version=None)
    assert "GET http://127.0.0.1" in result.stderr
    assert _requested_versions(result.stderr) == ["3.71"]

    # More than the server offers: the client downgrades to the server's maximum.
    result = cinder_cli.run("--debug", "list", version="3.72")
    assert "downgrading to 3.71 based on server support" in result.stderr
    assert _requested_versions(result.stderr) == ["3.71"]

    # 3.0 sends no version header at all, and 3.3+ commands do not exist there.
    result = cinder_cli.run("--debug", "list", version="3.0")
    assert _requested_versions(result.stderr) == ["none"]
    result = cinder_cli.run("message-list", version="3.0", check=False)
    assert result.returncode == 2
    assert "invalid choice: 'message-list'" in result.stderr


def test_volume_lifecycle(cinder_cli: CinderCLI, project_id: str) -> None:
    name = unique("cli-vol")
    created = cinder_cli.properties(
        "create", "--name", name, "--description", "made by e2e", "--metadata", "purpose=e2e", "1"
    )
    volume_id = created["id"]
    assert UUID.match(volume_id)
    assert created["name"] == name
    assert created["description"] == "made by e2e"
    assert created["size"] == "1"
    # `cinder create` prints a GET made right after the POST: a fast backend is done.
    assert created["status"] in ("creating", "available")
    assert created["user_id"] == "admin"
    assert created["os-vol-tenant-attr:tenant_id"] == project_id
    assert ast.literal_eval(created["metadata"]) == {"purpose": "e2e"}

    shown = cinder_cli.wait_volume(volume_id)
    assert shown["volume_type"] == "__DEFAULT__"
    assert shown["bootable"] == "false"
    assert shown["availability_zone"] == "nova"
    assert shown["os-vol-host-attr:host"].startswith("e2ehost@")

    listed = _listed(cinder_cli)
    assert listed[volume_id]["Name"] == name
    assert listed[volume_id]["Status"] == "available"
    assert listed[volume_id]["Size"] == "1"
    assert listed[volume_id]["Volume Type"] == "__DEFAULT__"

    # Names work wherever an id does (the client lists and filters by name).
    assert cinder_cli.properties("show", name)["id"] == volume_id

    cinder_cli.run("extend", volume_id, "2")
    assert wait_for("size 2", lambda: cinder_cli.wait_volume(volume_id)["size"] == "2")

    cinder_cli.run("metadata", volume_id, "set", "a=1", "b=2")
    metadata = {r["Metadata-property"]: r["Value"] for r in cinder_cli.table("metadata-show", name)}
    assert metadata == {"purpose": "e2e", "a": "1", "b": "2"}
    cinder_cli.run("metadata", volume_id, "unset", "a", "purpose")
    metadata = {r["Metadata-property"]: r["Value"] for r in cinder_cli.table("metadata-show", name)}
    assert metadata == {"b": "2"}

    result = cinder_cli.run("delete", volume_id)
    assert f"Request to delete volume {volume_id} has been accepted." in result.stdout
    wait_for("the volume to go", lambda: volume_id not in _listed(cinder_cli))
    result = cinder_cli.run("show", volume_id, check=False)
    assert result.returncode == 1
    assert f"No volume with a name or ID of '{volume_id}' exists." in result.stderr


def test_list_follows_pages(cinder_cli: CinderCLI, cinderclient: Any) -> None:
    # Same project through the Python API, then listed by the shell: the server pages
    # at osapi_max_limit and `cinder list` follows the volumes_links "next" link.
    ids = {cinderclient.volumes.create(1, name=f"page-{i}").id for i in range(MAX_LIMIT + 2)}
    for volume_id in ids:
        wait_resource(cinderclient.volumes, volume_id)
    assert set(_listed(cinder_cli)) == ids
    limited = cinder_cli.table("list", "--limit", "3")
    assert len(limited) == 3
    by_name = cinder_cli.table("list", "--sort", "name:asc")
    assert [row["Name"] for row in by_name] == [f"page-{i}" for i in range(MAX_LIMIT + 2)]
    after = cinder_cli.table("list", "--sort", "name:asc", "--marker", by_name[2]["ID"])
    assert [row["Name"] for row in after] == [f"page-{i}" for i in range(3, MAX_LIMIT + 2)]
    assert set(_listed(cinder_cli, "--name", "page-4")) == {by_name[4]["ID"]}


def test_snapshots_and_volumes_from_them(cinder_cli: CinderCLI) -> None:
    volume_id = cinder_cli.properties("create", "--name", unique("cli-src"), "1")["id"]
    cinder_cli.wait_volume(volume_id)

    snap_name = unique("cli-snap")
    created = cinder_cli.properties("snapshot-create", "--name", snap_name, volume_id)
    snapshot_id = created["id"]
    assert created["volume_id"] == volume_id
    assert created["status"] in ("creating", "available")
    assert created["size"] == "1"
    cinder_cli.wait_snapshot(snapshot_id)

    [row] = cinder_cli.table("snapshot-list")
    assert row["ID"] == snapshot_id
    assert row["Volume ID"] == volume_id
    assert row["Status"] == "available"
    assert row["Name"] == snap_name
    assert row["Size"] == "1"
    assert row["User ID"] == "admin"
    assert cinder_cli.properties("snapshot-show", snap_name)["id"] == snapshot_id

    from_snap = cinder_cli.properties("create", "--snapshot-id", snapshot_id, "1")
    assert from_snap["snapshot_id"] == snapshot_id
    clone = cinder_cli.properties("create", "--source-volid", volume_id, "2")
    assert clone["source_volid"] == volume_id
    assert cinder_cli.wait_volume(from_snap["id"])["snapshot_id"] == snapshot_id
    assert cinder_cli.wait_volume(clone["id"])["size"] == "2"

    # A volume with snapshots cannot be deleted; the shell reports the server's 400.
    result = cinder_cli.run("delete", volume_id, check=False)
    assert result.returncode == 1
    assert f"Delete for volume {volume_id} failed: Invalid volume" in result.stdout
    assert "(HTTP 400)" in result.stdout

    cinder_cli.run("snapshot-delete", snapshot_id)
    wait_for("the snapshot to go", lambda: cinder_cli.table("snapshot-list") == [])
    cinder_cli.run("delete", volume_id, from_snap["id"], clone["id"])
    wait_for("the volumes to go", lambda: cinder_cli.table("list") == [])


def test_volume_types_and_extra_specs(cinder_cli: CinderCLI) -> None:
    name = unique("cli-type")
    [created] = cinder_cli.table("type-create", name, "--description", "e2e type")
    assert created["Name"] == name
    assert created["Description"] == "e2e type"
    assert created["Is_Public"] == "True"
    type_id = created["ID"]
    try:
        cinder_cli.run("type-key", name, "set", "volume_backend_name=mem", "color=blue")
        listed = {row["Name"]: row for row in cinder_cli.table("type-list")}
        assert listed[name]["ID"] == type_id
        assert "__DEFAULT__" in listed
        specs = {row["Name"]: row["extra_specs"] for row in cinder_cli.table("extra-specs-list")}
        assert ast.literal_eval(specs[name]) == {"volume_backend_name": "mem", "color": "blue"}
        cinder_cli.run("type-key", name, "unset", "color")
        shown = cinder_cli.properties("type-show", name)
        assert shown["extra_specs"] == "volume_backend_name : mem"

        volume = cinder_cli.properties("create", "--volume-type", name, "1")
        shown = cinder_cli.wait_volume(volume["id"])
        assert shown["volume_type"] == name
        assert shown["os-vol-host-attr:host"] == "e2ehost@mem#mem"
        cinder_cli.run("delete", volume["id"])
        wait_for("the volume to go", lambda: cinder_cli.table("list") == [])
    finally:
        cinder_cli.run("type-delete", type_id, check=False)
    assert name not in {row["Name"] for row in cinder_cli.table("type-list")}


def test_members_cannot_manage_types(e2e_server: Server, project_id: str) -> None:
    member = CinderCLI(e2e_server.endpoint, project_id, user="demo")
    result = member.run("type-create", unique("nope"), check=False)
    assert result.returncode == 1
    assert "(HTTP 403)" in result.stderr


def test_messages_explain_a_failed_create(cinder_cli: CinderCLI) -> None:
    type_name = unique("cli-nowhere")
    cinder_cli.run("type-create", type_name)
    try:
        cinder_cli.run("type-key", type_name, "set", "volume_backend_name=no-such-backend")
        volume_id = cinder_cli.properties("create", "--volume-type", type_name, "1")["id"]
        cinder_cli.wait_volume(volume_id, status="error")

        [message] = cinder_cli.table("message-list", version="3.3")
        assert message["Resource Type"] == "VOLUME"
        assert message["Resource UUID"] == volume_id
        assert message["Event ID"] == "VOLUME_VOLUME_001_002"
        assert "schedule allocate volume" in message["User Message"]
        shown = cinder_cli.properties("message-show", message["ID"], version="3.3")
        assert shown["message_level"] == "ERROR"
        assert shown["resource_uuid"] == volume_id
        assert shown["request_id"].startswith("req-")
        # The same list at the newest version, filtered by the client's --resource_uuid.
        rows = cinder_cli.table("message-list", "--resource_uuid", volume_id)
        assert [row["ID"] for row in rows] == [message["ID"]]

        cinder_cli.run("message-delete", message["ID"], version="3.3")
        assert cinder_cli.table("message-list", version="3.3") == []

        cinder_cli.run("delete", volume_id)
        wait_for("the volume to go", lambda: cinder_cli.table("list") == [])
    finally:
        cinder_cli.run("type-delete", type_name, check=False)


def test_project_in_endpoint_url(e2e_server: Server, project_id: str) -> None:
    # The legacy endpoint form http://host:port/v3/<project> works the same way.
    cli = CinderCLI(e2e_server.project_endpoint(project_id), project_id)
    result = cli.run("--debug", "create", "--name", "legacy-url", "1")
    assert f"POST {e2e_server.url}/v3/{project_id}/volumes " in result.stderr
    [row] = cli.table("list")
    assert row["Name"] == "legacy-url"


def test_environment_variables(e2e_server: Server, project_id: str) -> None:
    # The same settings from the environment, as docs/clients.md shows them.
    env = client_env() | {
        "OS_AUTH_TYPE": "noauth",
        "OS_USER_ID": "admin",
        "OS_PROJECT_ID": project_id,
        "CINDER_ENDPOINT": e2e_server.endpoint,
        "OS_VOLUME_API_VERSION": "3.71",
    }
    created = subprocess.run(
        [str(BIN / "cinder"), "create", "--name", "from-env", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert "from-env" in created.stdout
    listed = subprocess.run(
        [str(BIN / "cinder"), "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert [row["Name"] for row in parse_table(listed.stdout)] == ["from-env"]
