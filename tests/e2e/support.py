"""Helpers for the end-to-end tests: server start-up, client invocations, output parsing.

See conftest.py for the fixtures built on these.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
MAX_VERSION = "3.71"
# The server answers list calls with at most this many items plus a "next" link.
MAX_LIMIT = 5
WAIT = 60.0


@dataclass(frozen=True)
class Server:
    """A running `cinderblock serve` process."""

    url: str  # http://127.0.0.1:PORT
    log: Path
    config: Path

    @property
    def endpoint(self) -> str:
        """The endpoint without project id: http://127.0.0.1:PORT/v3."""
        return f"{self.url}/v3"

    def project_endpoint(self, project: str) -> str:
        """The legacy endpoint with project id: http://127.0.0.1:PORT/v3/<project>."""
        return f"{self.url}/v3/{project}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_env() -> dict[str, str]:
    """This process' environment minus anything that would steer an OpenStack client."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(("OS_", "CINDER_", "OPENSTACK"))
    }


def write_config(directory: Path, port: int) -> Path:
    config = directory / "cinderblock.conf"
    config.write_text(
        f"""[DEFAULT]
host = e2ehost
enabled_backends = files, mem
bind_host = 127.0.0.1
bind_port = {port}
state_path = {directory}
osapi_max_limit = {MAX_LIMIT}
report_interval = 2
# These tests are about the clients, not quotas: no per-project limits.
quota_volumes = -1
quota_snapshots = -1
quota_gigabytes = -1

[database]
connection = sqlite:///{directory / "cinderblock.sqlite"}

[files]
volume_driver = file
volume_backend_name = files
file_volumes_dir = {directory / "volumes"}

[mem]
volume_driver = memory
volume_backend_name = mem
"""
    )
    return config


def server_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # GET / is "300 Multiple Choices": the server is up
    except OSError:
        return False


def server_command(config: Path) -> list[str]:
    script = BIN / "cinderblock"
    if script.exists():
        return [str(script), "serve", "--config", str(config)]
    return [sys.executable, "-m", "cinderblock.cli.main", "serve", "--config", str(config)]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float = WAIT, interval: float = 0.1
) -> Any:
    """Call probe until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# python-cinderclient CLI


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of the first prettytable in `text`, as {header: cell} with cells stripped."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if not lines:
        return []
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    rows = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if cells == header:  # the header of a second table
            break
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def parse_properties(text: str) -> dict[str, str]:
    """A two-column "Property | Value" table as a dict."""
    rows = parse_table(text)
    if not rows:
        return {}
    key, value = list(rows[0])
    return {row[key]: row[value] for row in rows}


class CinderCLI:
    """`cinder` (python-cinderclient's shell) in noauth mode against the e2e server.

    The invocation is the one docs/clients.md documents:
        cinder --os-auth-type noauth --os-user-id USER --os-project-id PROJECT \\
               --os-endpoint http://HOST:PORT/v3 [--os-volume-api-version 3.NN] ...
    """

    def __init__(self, endpoint: str, project: str, user: str = "admin") -> None:
        self.endpoint = endpoint
        self.project = project
        self.user = user

    def argv(self, *args: str, version: str | None = MAX_VERSION) -> list[str]:
        argv = [
            str(BIN / "cinder"),
            "--os-auth-type",
            "noauth",
            "--os-user-id",
            self.user,
            "--os-project-id",
            self.project,
            "--os-endpoint",
            self.endpoint,
        ]
        if version is not None:
            argv += ["--os-volume-api-version", version]
        return argv + list(args)

    def run(
        self, *args: str, version: str | None = MAX_VERSION, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args, version=version),
            capture_output=True,
            text=True,
            env=client_env(),
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"cinder {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def table(self, *args: str, version: str | None = MAX_VERSION) -> list[dict[str, str]]:
        return parse_table(self.run(*args, version=version).stdout)

    def properties(self, *args: str, version: str | None = MAX_VERSION) -> dict[str, str]:
        return parse_properties(self.run(*args, version=version).stdout)

    def wait_volume(self, volume: str, status: str = "available") -> dict[str, str]:
        def probe() -> dict[str, str] | None:
            shown = self.properties("show", volume)
            if shown["status"] == "error" and status != "error":
                raise AssertionError(f"volume {volume} went to error: {shown}")
            return shown if shown["status"] == status else None

        return wait_for(f"volume {volume} to be {status}", probe)

    def wait_snapshot(self, snapshot: str, status: str = "available") -> dict[str, str]:
        def probe() -> dict[str, str] | None:
            shown = self.properties("snapshot-show", snapshot)
            return shown if shown["status"] == status else None

        return wait_for(f"snapshot {snapshot} to be {status}", probe)


# ---------------------------------------------------------------------------
# python-cinderclient Python API


def make_cinderclient(
    server: Server, project: str, user: str = "admin", version: str = MAX_VERSION
) -> Any:
    """cinderclient.client.Client over a keystoneauth session with cinderclient's noauth plugin.

    The plugin sends X-Auth-Token: "<user>:<project>" and its endpoint is
    "<endpoint>/<project>", so requests go to /v3/<project>/...
    """
    from cinderclient import client
    from cinderclient.contrib.noauth import CinderNoAuthPlugin
    from keystoneauth1 import session

    auth = CinderNoAuthPlugin(user, project, endpoint=server.endpoint)
    return client.Client(version, session=session.Session(auth=auth))


def wait_resource(manager: Any, ident: str, status: str = "available") -> Any:
    def probe() -> Any:
        item = manager.get(ident)
        if item.status == "error" and status != "error":
            raise AssertionError(f"{ident} went to error")
        return item if item.status == status else None

    return wait_for(f"{ident} to be {status}", probe)


def wait_deleted(manager: Any, ident: str) -> None:
    from cinderclient import exceptions

    def probe() -> bool:
        try:
            manager.get(ident)
        except exceptions.NotFound:
            return True
        return False

    wait_for(f"{ident} to be deleted", probe)


# ---------------------------------------------------------------------------
# openstacksdk


def sdk_connect(server: Server, project: str, user: str = "admin") -> Any:
    """openstacksdk with keystoneauth's admin_token plugin: a fixed endpoint and token.

    admin_token sends X-Auth-Token: <token> verbatim, so "<user>:<project>" reaches
    the server's noauth; block_storage_api_version="3" lets the proxy be built even
    when version discovery fails.
    """
    import openstack

    return openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": server.project_endpoint(project), "token": f"{user}:{project}"},
        block_storage_api_version="3",
        load_yaml_config=False,
        load_envvars=False,
    )


# ---------------------------------------------------------------------------
# python-openstackclient


class OpenStackCLI:
    """`openstack` with keystoneauth's admin_token plugin against the e2e server.

        openstack --os-auth-type admin_token --os-endpoint http://HOST:PORT/v3/PROJECT \\
                  --os-token USER:PROJECT volume ...
    """

    def __init__(self, server: Server, project: str, user: str = "admin") -> None:
        self.server = server
        self.project = project
        self.user = user

    def argv(self, *args: str, version: str | None = None) -> list[str]:
        argv = [
            str(BIN / "openstack"),
            "--os-auth-type",
            "admin_token",
            "--os-endpoint",
            self.server.project_endpoint(self.project),
            "--os-token",
            f"{self.user}:{self.project}",
        ]
        if version is not None:
            argv += ["--os-volume-api-version", version]
        return argv + list(args)

    def run(
        self, *args: str, version: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args, version=version),
            capture_output=True,
            text=True,
            env=client_env(),
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"openstack {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def json(self, *args: str, version: str | None = None) -> Any:
        import json

        return json.loads(self.run(*args, "-f", "json", version=version).stdout)
