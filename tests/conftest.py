"""Shared fixtures: a real cinderblock behind a real HTTP server, on a real database.

The database comes from CINDERBLOCK_TEST_DB: `sqlite` (default), `postgresql`
or `mariadb`. PostgreSQL and MariaDB get a fresh database per test session,
dropped afterwards. Tests isolate themselves by using a fresh project id.

CINDERBLOCK_TEST_TOPOLOGY picks how cinderblock runs: `embedded` (default: API,
scheduler and volume services in this process, in-process transport) or
`distributed` (separate `cinderblock api` and `cinderblock scheduler` processes on
RabbitMQ, one fresh vhost per started service; needs PostgreSQL or MariaDB). The volume
services run in the test process, built as `cinderblock volume` builds them and
reached only through RabbitMQ, so tests can still look at a driver's state; with
CINDERBLOCK_TEST_VOLUME_PROCESS=separate they are a `cinderblock volume` process
too and tests that inspect a driver skip. Tests that change the API's settings
in place skip in either distributed form.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from cinderblock.config import load_settings
from cinderblock.db.database import Database
from cinderblock.embedded import Embedded, build
from e2e import cluster as dist

PG_ADMIN_URL = os.environ.get(
    "CINDERBLOCK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_ADMIN_URL = os.environ.get(
    "CINDERBLOCK_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"
)
TOPOLOGY = os.environ.get("CINDERBLOCK_TEST_TOPOLOGY", "embedded")
DISTRIBUTED = TOPOLOGY == "distributed"
# Distributed: the volume services run in this process (tests may inspect their
# drivers) unless CINDERBLOCK_TEST_VOLUME_PROCESS=separate.
SEPARATE_VOLUME = os.environ.get("CINDERBLOCK_TEST_VOLUME_PROCESS") == "separate"
if TOPOLOGY not in ("embedded", "distributed"):
    raise pytest.UsageError(f"CINDERBLOCK_TEST_TOPOLOGY={TOPOLOGY!r}: embedded or distributed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_database(directory: Path, prefix: str = "cb_test") -> Iterator[str]:
    """A new, empty database on the run's engine (CINDERBLOCK_TEST_DB), dropped afterwards;
    SQLite: a file in `directory`."""
    kind = os.environ.get("CINDERBLOCK_TEST_DB", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'{prefix}.sqlite'}"
        return
    admin_url = {"postgresql": PG_ADMIN_URL, "mariadb": MARIADB_ADMIN_URL}[kind]
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if DISTRIBUTED and os.environ.get("CINDERBLOCK_TEST_DB", "sqlite") == "sqlite":
        raise pytest.UsageError("the distributed topology needs a shared database")
    with scratch_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@dataclass
class RunningService:
    """A cinderblock listening on 127.0.0.1 with its in-process parts reachable.

    Distributed: `service` is a `RemoteParts` (the database, nothing in-process) and
    `processes` are the api, scheduler and volume processes.
    """

    url: str  # http://127.0.0.1:port
    service: Any  # Embedded, or RemoteParts when distributed
    server: uvicorn.Server | None
    thread: threading.Thread | None
    volumes_dir: Path
    config_path: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    transport_url: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v3"

    def wait_idle(self) -> None:
        if not self.processes:
            self.service.transport.drain()
            return
        # Idle: every queue of the vhost empty (nothing ready, nothing being handled,
        # as messages are acknowledged after their handler), twice in a row.
        quiet, deadline = 0, time.monotonic() + 60
        while quiet < 2:
            busy = any(dist.queue_depths(self.transport_url).values())
            quiet = 0 if busy else quiet + 1
            if time.monotonic() > deadline:
                raise AssertionError("the services never went idle")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            stop_serving(self.server, self.thread)
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.service.stop()


class _InOtherProcesses(dict[str, Any]):
    def __getitem__(self, key: str) -> Any:
        pytest.skip(f"distributed topology: {key}'s driver lives in the volume process")


@dataclass
class RemoteParts:
    """What a test can reach of a distributed cinderblock from here: the database,
    and the volume services when they run in this process (over RabbitMQ all the
    same: the API and scheduler processes reach them only through the broker)."""

    db: Database
    volume_service: Embedded | None = None

    @property
    def managers(self) -> dict[str, Any]:
        if self.volume_service is None:
            return _InOtherProcesses()
        return self.volume_service.managers

    @property
    def deps(self) -> Any:
        pytest.skip("distributed topology: the API's settings live in the api process")

    def stop(self) -> None:
        if self.volume_service is not None:
            self.volume_service.stop()
        else:
            self.db.dispose()


def serve_in_thread(app: Any, port: int, **options: Any) -> tuple[uvicorn.Server, threading.Thread]:
    """Serve `app` on 127.0.0.1:port from a daemon thread; return once it listens.
    `options` go to uvicorn.Config (default: warnings only, no lifespan)."""
    settings: dict[str, Any] = {"log_level": "warning", "lifespan": "off", **options}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **settings))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return server, thread


def stop_serving(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=10)


def write_config(directory: Path, database_url: str, port: int, transport_url: str = "") -> Path:
    volumes = directory / "volumes"
    config = directory / "cinderblock.conf"
    transport = f"transport_url = {transport_url}\n" if transport_url else ""
    # The session's service keeps the volumes of every test on one long-lived memory
    # backend, which counts provisioned GiB as used; the suite outgrew its default 1000 GiB.
    mem_capacity = "memory_capacity_gb = 100000\n"
    config.write_text(
        f"""[DEFAULT]
host = testhost
enabled_backends = files, mem
bind_host = 127.0.0.1
bind_port = {port}
state_path = {directory}
report_interval = 2
{transport}
[database]
connection = {database_url}

[files]
volume_driver = file
volume_backend_name = files
file_volumes_dir = {volumes}

[mem]
volume_driver = memory
volume_backend_name = mem
{mem_capacity}"""
    )
    return config


def start_service(directory: Path, database_url: str) -> RunningService:
    if DISTRIBUTED:
        return _start_distributed(directory, database_url)
    port = free_port()
    config = write_config(directory, database_url, port)
    service = build(load_settings(config))
    server, thread = serve_in_thread(service.app, port)
    return RunningService(
        f"http://127.0.0.1:{port}", service, server, thread, directory / "volumes", config
    )


# One vhost per started service, so that two services on the same database (a second
# service with another policy) never take each other's work, as in embedded mode;
# all dropped at the end of the session.
_VHOST_STACK = contextlib.ExitStack()


@pytest.fixture(scope="session", autouse=True)
def _drop_vhosts() -> Iterator[None]:
    yield
    _VHOST_STACK.close()


def _start_distributed(directory: Path, database_url: str) -> RunningService:
    if reason := dist.rabbit_available():
        pytest.fail(reason)
    transport_url = _VHOST_STACK.enter_context(dist.private_vhost(uuid.uuid4().hex[:10]))
    port = free_port()
    config = write_config(directory, database_url, port, transport_url)
    subprocess.run(
        [*dist.CINDERBLOCK, "--config", str(config), "db", "upgrade"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    if SEPARATE_VOLUME:
        parts, roles = RemoteParts(Database(database_url)), ("volume", "scheduler", "api")
    else:
        volumes = build(load_settings(config), roles=("volume",), migrate=False)
        parts, roles = RemoteParts(volumes.db, volumes), ("scheduler", "api")
    running = RunningService(
        f"http://127.0.0.1:{port}",
        parts,
        None,
        None,
        directory / "volumes",
        config,
        transport_url=transport_url,
    )
    # Logs beside the service's directory: tests compare what is inside it.
    logs = directory.with_name(f"{directory.name}-logs")
    logs.mkdir(exist_ok=True)
    for role in roles:
        log = (logs / f"{role}.log").open("ab")
        running.processes[role] = subprocess.Popen(
            [*dist.CINDERBLOCK, role, "--config", str(config), "--no-migrate"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_ready(running, logs)
    except BaseException:
        running.stop()
        raise
    return running


def _wait_ready(running: RunningService, logs: Path) -> None:
    """Until the API answers and the scheduler and both volume services consume their
    queues, as after an embedded build(). (A volume service consumes once its start-up
    recovery is done and its stats are in the database and on the scheduler's queue,
    where the scheduler finds them before any request.)"""
    deadline = time.monotonic() + 90
    queues = {"cinder-scheduler", "cinder-volume.testhost@files", "cinder-volume.testhost@mem"}
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{running.url}/", timeout=2).status_code < 500:
                consumers = dist.queue_consumers(running.transport_url)
                if all(consumers.get(q) for q in queues):
                    return
        dead = [n for n, p in running.processes.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            text = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                for p in sorted(logs.glob("*.log"))
            )
            raise RuntimeError(f"distributed cinderblock not ready ({dead=}):\n{text}")
        time.sleep(0.2)


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
