"""Shared fixtures: a real cinderblock behind a real HTTP server, on a real database.

The database comes from CINDERBLOCK_TEST_DB: `sqlite` (default), `postgresql`
or `mariadb`. PostgreSQL and MariaDB get a fresh database per test session,
dropped afterwards. Tests isolate themselves by using a fresh project id.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from cinderblock.config import load_settings
from cinderblock.embedded import Embedded, build

PG_ADMIN_URL = os.environ.get(
    "CINDERBLOCK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_ADMIN_URL = os.environ.get(
    "CINDERBLOCK_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kind = os.environ.get("CINDERBLOCK_TEST_DB", "sqlite")
    name = f"cb_test_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'cinderblock.sqlite'}"
        return
    admin_url = {"postgresql": PG_ADMIN_URL, "mariadb": MARIADB_ADMIN_URL}[kind]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@dataclass
class RunningService:
    """A cinderblock listening on 127.0.0.1 with its in-process parts reachable."""

    url: str  # http://127.0.0.1:port
    service: Embedded
    server: uvicorn.Server
    thread: threading.Thread
    volumes_dir: Path
    config_path: Path

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v3"

    def wait_idle(self) -> None:
        self.service.transport.drain()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.service.stop()


def write_config(directory: Path, database_url: str, port: int) -> Path:
    volumes = directory / "volumes"
    config = directory / "cinderblock.conf"
    config.write_text(
        f"""[DEFAULT]
host = testhost
enabled_backends = files, mem
bind_host = 127.0.0.1
bind_port = {port}
state_path = {directory}
report_interval = 2

[database]
connection = {database_url}

[files]
volume_driver = file
volume_backend_name = files
file_volumes_dir = {volumes}

[mem]
volume_driver = memory
volume_backend_name = mem
"""
    )
    return config


def start_service(directory: Path, database_url: str) -> RunningService:
    port = _free_port()
    config = write_config(directory, database_url, port)
    settings = load_settings(config)
    service = build(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            service.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",  # type: ignore[arg-type]
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return RunningService(
        f"http://127.0.0.1:{port}", service, server, thread, directory / "volumes", config
    )


@pytest.fixture(scope="session")
def cinder(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[RunningService]:
    running = start_service(tmp_path_factory.mktemp("svc"), database_url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def project() -> str:
    return uuid.uuid4().hex


class Api:
    """A thin HTTP client speaking to one project, as a given user, at a microversion."""

    def __init__(self, base: str, project: str, user: str = "admin", version: str | None = "3.71"):
        self.base = base
        self.project = project
        self.user = user
        self.version = version
        self.client = httpx.Client(timeout=30)

    def headers(self, version: str | None = None, **extra: str) -> dict[str, str]:
        headers = {"X-Auth-Token": f"{self.user}:{self.project}", "Accept": "application/json"}
        wanted = version or self.version
        if wanted:
            headers["OpenStack-API-Version"] = f"volume {wanted}"
        headers.update(extra)
        return headers

    def url(self, path: str) -> str:
        return f"{self.base}/v3/{self.project}{path}"

    def request(
        self, method: str, path: str, body: Any = None, version: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        return self.client.request(
            method, self.url(path), json=body, headers=self.headers(version), **kwargs
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def wait_volume(
        self, volume_id: str, statuses: tuple[str, ...] = ("available",), timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            resp = self.get(f"/volumes/{volume_id}")
            if resp.status_code == 200:
                volume = resp.json()["volume"]
                if volume["status"] in statuses:
                    return volume
                if volume["status"] == "error" and "error" not in statuses:
                    raise AssertionError(f"volume {volume_id} went to error")
            if time.monotonic() > deadline:
                raise AssertionError(f"volume {volume_id} never reached {statuses}: {resp.text}")
            time.sleep(0.02)

    def wait_gone(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.get(path).status_code != 404:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} still exists")
            time.sleep(0.02)

    def wait_snapshot(
        self, snapshot_id: str, statuses: tuple[str, ...] = ("available",), timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            resp = self.get(f"/snapshots/{snapshot_id}")
            if resp.status_code == 200 and resp.json()["snapshot"]["status"] in statuses:
                return resp.json()["snapshot"]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"snapshot {snapshot_id} never reached {statuses}: {resp.text}"
                )
            time.sleep(0.02)

    def create_volume(self, size: int = 1, wait: bool = True, **fields: Any) -> dict[str, Any]:
        resp = self.post("/volumes", {"volume": {"size": size, **fields}})
        assert resp.status_code == 202, resp.text
        volume = resp.json()["volume"]
        return self.wait_volume(volume["id"]) if wait else volume


@pytest.fixture
def api(cinder: RunningService, project: str) -> Iterator[Api]:
    client = Api(cinder.url, project)
    yield client
    client.client.close()


@pytest.fixture
def member_api(cinder: RunningService, project: str) -> Iterator[Api]:
    client = Api(cinder.url, project, user="demo")
    yield client
    client.client.close()
