"""python-openstackclient's `openstack` shell, unchanged, against a cinderblock process.

Invocation (keystoneauth's admin_token plugin, see docs/clients.md):

    openstack --os-auth-type admin_token \\
              --os-endpoint http://127.0.0.1:PORT/v3/<project> --os-token admin:<project> \\
              [--os-volume-api-version 3.71] volume ...

`--os-auth-type noauth` (cinderclient's plugin, which OSC also lists) does not work
with OSC: openstacksdk cannot use that plugin for version discovery ("The
block-storage service ... exists but does not have any supported versions").
`--os-auth-type none --os-endpoint http://127.0.0.1:PORT/v3` works, as user and
project "notused" (keystoneauth's NoAuth sends X-Auth-Token: notused).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .support import BIN, OpenStackCLI, Server, client_env, unique, wait_for


def _wait_status(osc: OpenStackCLI, kind: list[str], ident: str, status: str) -> dict:
    def probe() -> dict | None:
        shown = osc.json(*kind, "show", ident)
        if shown["status"] == "error":
            raise AssertionError(f"{ident} went to error: {shown}")
        return shown if shown["status"] == status else None

    return wait_for(f"{ident} to be {status}", probe)


@pytest.mark.parametrize("version", [None, "3.71"], ids=["default-version", "3.71"])
def test_volume_create_list_show_set_delete(
    osc: OpenStackCLI, project_id: str, version: str | None
) -> None:
    name = unique("osc-vol")
    created = osc.json(
        "volume",
        "create",
        "--size",
        "1",
        "--description",
        "from osc",
        "--property",
        "purpose=e2e",
        name,
        version=version,
    )
    assert created["name"] == name
    assert created["size"] == 1
    assert created["status"] in ("creating", "available")
    shown = _wait_status(osc, ["volume"], name, "available")
    assert shown["id"] == created["id"]
    assert shown["description"] == "from osc"
    assert shown["properties"] == {"purpose": "e2e"}
    assert shown["type"] == "__DEFAULT__"
    assert shown["os-vol-tenant-attr:tenant_id"] == project_id

    [row] = osc.json("volume", "list", version=version)
    assert (row["ID"], row["Name"], row["Status"], row["Size"]) == (
        created["id"],
        name,
        "available",
        1,
    )

    osc.run("volume", "set", "--size", "2", name, version=version)
    assert wait_for("size 2", lambda: _wait_status(osc, ["volume"], name, "available")["size"] == 2)

    osc.run("volume", "delete", name, version=version)
    wait_for("the volume to go", lambda: osc.json("volume", "list") == [])
    result = osc.run("volume", "show", created["id"], check=False)
    assert result.returncode == 1
    assert "No Volume found" in result.stderr


@pytest.mark.parametrize("version", [None, "3.71"], ids=["default-version", "3.71"])
def test_snapshot_create_list_delete(osc: OpenStackCLI, version: str | None) -> None:
    volume = osc.json("volume", "create", "--size", "1", unique("osc-src"), version=version)
    _wait_status(osc, ["volume"], volume["id"], "available")

    name = unique("osc-snap")
    created = osc.json(
        "volume", "snapshot", "create", "--volume", volume["id"], name, version=version
    )
    assert created["name"] == name
    assert created["volume_id"] == volume["id"]
    _wait_status(osc, ["volume", "snapshot"], name, "available")

    [row] = osc.json("volume", "snapshot", "list", version=version)
    assert (row["ID"], row["Name"], row["Status"], row["Size"]) == (
        created["id"],
        name,
        "available",
        1,
    )
    [long_row] = osc.json("volume", "snapshot", "list", "--long", version=version)
    # Machine-readable formats give the volume id (the table shows its name).
    assert long_row["Volume"] == volume["id"]
    assert long_row["Created At"]

    osc.run("volume", "snapshot", "delete", name, version=version)
    wait_for("the snapshot to go", lambda: osc.json("volume", "snapshot", "list") == [])
    osc.run("volume", "delete", volume["id"], version=version)
    wait_for("the volume to go", lambda: osc.json("volume", "list") == [])


def test_auth_type_none_is_user_notused(e2e_server: Server) -> None:
    argv = [
        str(BIN / "openstack"),
        "--os-auth-type",
        "none",
        "--os-endpoint",
        e2e_server.endpoint,
        "--os-volume-api-version",
        "3.71",
    ]

    def run(*args: str) -> str:
        return subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            env=client_env(),
            timeout=120,
            check=True,
        ).stdout

    volume = json.loads(run("volume", "create", "--size", "1", unique("osc-none"), "-f", "json"))
    assert volume["user_id"] == "notused"
    wait_for(
        "the volume to be available",
        lambda: (
            json.loads(run("volume", "show", volume["id"], "-f", "json"))["status"] == "available"
        ),
    )
    run("volume", "delete", volume["id"])


def _clouds_yaml(path: Path, server: Server, project: str) -> Path:
    path.write_text(
        f"""clouds:
  cinderblock:
    auth_type: admin_token
    auth:
      endpoint: {server.project_endpoint(project)}
      token: admin:{project}
    block_storage_api_version: 3
"""
    )
    return path


def test_environment_and_clouds_yaml(e2e_server: Server, project_id: str, tmp_path: Path) -> None:
    # The two other set-ups docs/clients.md shows: OS_* variables, and clouds.yaml.
    from_env = client_env() | {
        "OS_AUTH_TYPE": "admin_token",
        "OS_ENDPOINT": e2e_server.project_endpoint(project_id),
        "OS_TOKEN": f"admin:{project_id}",
        "OS_VOLUME_API_VERSION": "3.71",
    }
    created = subprocess.run(
        [str(BIN / "openstack"), "volume", "create", "--size", "1", "env-vol", "-f", "json"],
        capture_output=True,
        text=True,
        env=from_env,
        timeout=120,
        check=True,
    )
    volume = json.loads(created.stdout)

    clouds = client_env() | {
        "OS_CLIENT_CONFIG_FILE": str(_clouds_yaml(tmp_path / "clouds.yaml", e2e_server, project_id))
    }
    listed = subprocess.run(
        [str(BIN / "openstack"), "--os-cloud", "cinderblock", "volume", "list", "-f", "json"],
        capture_output=True,
        text=True,
        env=clouds,
        timeout=120,
        check=True,
    )
    assert [(row["ID"], row["Name"]) for row in json.loads(listed.stdout)] == [
        (volume["id"], "env-vol")
    ]
