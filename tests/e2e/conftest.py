"""End-to-end fixtures: cinderblock in its own process, driven by unmodified real clients.

`e2e_server` starts `cinderblock serve --config FILE` once per session on a free
port (file + memory backends, temporary SQLite database, osapi_max_limit = 5 so
that lists are paged), waits for `GET /` to answer and stops it at the end.
Each test gets a fresh hex project id; volume types, which are global, are
deleted by the tests that create them.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .support import (
    WAIT,
    CinderCLI,
    OpenStackCLI,
    Server,
    client_env,
    free_port,
    make_cinderclient,
    sdk_connect,
    server_answers,
    server_command,
    unique,
    write_config,
)


@pytest.fixture(scope="session")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("e2e")
    port = free_port()
    config = write_config(directory, port)
    log = directory / "server.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            server_command(config),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=client_env(),
        )
        try:
            deadline = time.monotonic() + WAIT
            while not server_answers(url):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"cinderblock exited with {process.returncode}:\n{log.read_text()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cinderblock did not answer GET /:\n{log.read_text()}")
                time.sleep(0.1)
            yield Server(url=url, log=log, config=config)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def project_id() -> str:
    """A fresh project id (hex, as the server requires)."""
    return uuid.uuid4().hex


@pytest.fixture
def cinder_cli(e2e_server: Server, project_id: str) -> CinderCLI:
    return CinderCLI(e2e_server.endpoint, project_id)


@pytest.fixture
def cinderclient(e2e_server: Server, project_id: str) -> Any:
    return make_cinderclient(e2e_server, project_id)


@pytest.fixture
def admin_cinderclient(e2e_server: Server) -> Any:
    """An admin in a project of its own, for global things such as volume types."""
    return make_cinderclient(e2e_server, uuid.uuid4().hex)


@pytest.fixture
def volume_type_factory(admin_cinderclient: Any) -> Iterator[Callable[..., Any]]:
    """Create volume types (through the Python API) that are deleted after the test."""
    created: list[Any] = []

    def create(backend: str | None = None, name: str | None = None) -> Any:
        volume_type = admin_cinderclient.volume_types.create(name or unique("e2e-type"))
        created.append(volume_type)
        if backend is not None:
            volume_type.set_keys({"volume_backend_name": backend})
        return volume_type

    yield create
    for volume_type in created:
        # A type still in use after a failed test stays behind.
        with contextlib.suppress(Exception):
            admin_cinderclient.volume_types.delete(volume_type)


@pytest.fixture
def sdk(e2e_server: Server, project_id: str) -> Iterator[Any]:
    conn = sdk_connect(e2e_server, project_id)
    yield conn
    conn.close()


@pytest.fixture
def osc(e2e_server: Server, project_id: str) -> OpenStackCLI:
    return OpenStackCLI(e2e_server, project_id)
