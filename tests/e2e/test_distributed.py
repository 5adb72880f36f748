"""Distributed mode for real: separate API, scheduler and volume processes on two
"hosts" (different host names on this machine), sharing PostgreSQL and RabbitMQ.

Each test run gets its own PostgreSQL database and its own RabbitMQ virtual host,
so queues never mix with another run's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
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

from .support import free_port, server_answers

PG_ADMIN = os.environ.get(
    "CINDERBLOCK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BIN = Path(sys.executable).parent
CINDERBLOCK = (
    [str(BIN / "cinderblock")]
    if (BIN / "cinderblock").exists()
    else [sys.executable, "-m", "cinderblock.cli.main"]
)
DOWN_AFTER = 4  # service_down_time in these tests, seconds


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@dataclass
class Cluster:
    directory: Path
    db_url: str
    transport_url: str
    api_ports: list[int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    project: str = field(default_factory=lambda: uuid.uuid4().hex)

    def config(
        self, name: str, host: str, backends: dict[str, dict[str, str]], port: int = 0
    ) -> Path:
        lines = [
            "[DEFAULT]",
            f"host = {host}",
            f"enabled_backends = {', '.join(backends)}",
            "bind_host = 127.0.0.1",
            f"bind_port = {port}",
            f"transport_url = {self.transport_url}",
            "report_interval = 1",
            f"service_down_time = {DOWN_AFTER}",
            "rpc_call_timeout = 5",
            "quota_volumes = -1",  # one project makes all the volumes of this module
            "quota_gigabytes = -1",
            "",
            "[database]",
            f"connection = {self.db_url}",
        ]
        for backend, options in backends.items():
            lines += ["", f"[{backend}]", *(f"{k} = {v}" for k, v in options.items())]
        path = self.directory / f"{name}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, name: str, role: str, config: Path) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [*CINDERBLOCK, role, "--config", str(config), "--no-migrate"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.directory.glob("*.log"))
        )

    def client(self, port: int | None = None) -> httpx.Client:
        port = port or self.api_ports[0]
        return httpx.Client(
            base_url=f"http://127.0.0.1:{port}/v3/{self.project}",
            headers={
                "X-Auth-Token": f"admin:{self.project}",
                "OpenStack-API-Version": "volume 3.71",
            },
            timeout=30,
        )


def _wait(predicate: Any, timeout: float, what: str, cluster: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")
        time.sleep(0.2)


def _volume_services(client: httpx.Client) -> dict[str, dict[str, Any]]:
    resp = client.get("/os-services", params={"binary": "cinder-volume"})
    return {s["host"]: s for s in resp.json()["services"]} if resp.status_code == 200 else {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        _rabbitmqctl("status")
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"RabbitMQ is not running here: {err}")
    directory = tmp_path_factory.mktemp("dist")
    tag = uuid.uuid4().hex[:10]
    vhost = f"cb-{tag}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE cb_dist_{tag}"))
    db_url = (
        sa.engine.make_url(PG_ADMIN)
        .set(database=f"cb_dist_{tag}")
        .render_as_string(hide_password=False)
    )
    cluster = Cluster(
        directory,
        db_url,
        f"rabbit://guest:guest@127.0.0.1:5672/{vhost}",
        [free_port(), free_port()],
    )
    try:
        subprocess.run(
            [*CINDERBLOCK, "--database-url", db_url, "db", "upgrade"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        for i, port in enumerate(cluster.api_ports):
            cluster.start(f"api{i}", "api", cluster.config(f"api{i}", "apihost", {}, port))
        cluster.start("scheduler", "scheduler", cluster.config("scheduler", "schedhost", {}))
        cluster.start(
            "volume-a",
            "volume",
            cluster.config(
                "volume-a",
                "hosta",
                {
                    "files": {
                        "volume_driver": "file",
                        "volume_backend_name": "files",
                        "file_volumes_dir": str(directory / "volumes-a"),
                    }
                },
            ),
        )
        cluster.start(
            "volume-b",
            "volume",
            cluster.config(
                "volume-b",
                "hostb",
                {"mem": {"volume_driver": "memory", "volume_backend_name": "mem"}},
            ),
        )
        for port in cluster.api_ports:
            _wait(lambda p=port: server_answers(f"http://127.0.0.1:{p}"), 60, "the APIs", cluster)
        with cluster.client() as client:
            _wait(
                lambda: (
                    {"hosta@files", "hostb@mem"}
                    <= {h for h, s in _volume_services(client).items() if s["state"] == "up"}
                ),
                60,
                "both volume services up",
                cluster,
            )
            for backend in ("files", "mem"):
                resp = client.post(
                    "/types",
                    json={
                        "volume_type": {
                            "name": backend,
                            "extra_specs": {"volume_backend_name": backend},
                        }
                    },
                )
                assert resp.status_code == 200, resp.text
        yield cluster
    finally:
        cluster.stop_all()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS cb_dist_{tag} WITH (FORCE)"))
        admin.dispose()
        with contextlib.suppress(Exception):
            _rabbitmqctl("delete_vhost", vhost)


def _create(client: httpx.Client, volume_type: str, size: int = 1) -> str:
    resp = client.post("/volumes", json={"volume": {"size": size, "volume_type": volume_type}})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["volume"]["id"])


def _status(client: httpx.Client, volume_id: str) -> dict[str, Any] | None:
    resp = client.get(f"/volumes/{volume_id}")
    return resp.json()["volume"] if resp.status_code == 200 else None


def _wait_status(
    cluster: Cluster, client: httpx.Client, volume_id: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    return _wait(
        lambda: (v := _status(client, volume_id)) is not None and v["status"] == status and v,
        timeout,
        f"volume {volume_id} {status}",
        cluster,
    )


def test_volumes_land_on_the_host_of_their_backend(cluster: Cluster) -> None:
    with cluster.client() as client:
        a = _create(client, "files")
        b = _create(client, "mem")
        va = _wait_status(cluster, client, a, "available")
        vb = _wait_status(cluster, client, b, "available")
    assert va["os-vol-host-attr:host"] == "hosta@files#files"
    assert vb["os-vol-host-attr:host"] == "hostb@mem#mem"
    assert (cluster.directory / "volumes-a" / f"volume-{a}").stat().st_size == 1024**3
    with cluster.client(cluster.api_ports[1]) as other:
        # The second API process sees the same truth.
        assert _status(other, a)["status"] == "available"  # type: ignore[index]


def test_services_and_pools_are_reported(cluster: Cluster) -> None:
    with cluster.client() as client:
        services = client.get("/os-services").json()["services"]
        by_binary = {(s["binary"], s["host"]): s for s in services}
        assert by_binary[("cinder-scheduler", "schedhost")]["state"] == "up"
        assert by_binary[("cinder-volume", "hosta@files")]["state"] == "up"
        pools = client.get("/scheduler-stats/get_pools").json()["pools"]
        assert {"hosta@files#files", "hostb@mem#mem"} <= {p["name"] for p in pools}


def test_work_waits_in_the_queue_while_the_scheduler_is_down(cluster: Cluster) -> None:
    cluster.kill("scheduler")
    with cluster.client() as client:
        volume_id = _create(client, "mem")
        time.sleep(2)
        assert _status(client, volume_id)["status"] == "creating"  # type: ignore[index]
        cluster.start("scheduler", "scheduler", cluster.directory / "scheduler.conf")
        _wait_status(cluster, client, volume_id, "available")


def test_a_dead_volume_service_is_reported_down_and_calls_fail_fast(cluster: Cluster) -> None:
    cluster.kill("volume-b")
    try:
        with cluster.client() as client:
            started = time.monotonic()
            resp = client.get("/manageable_volumes", params={"host": "hostb@mem"})
            assert time.monotonic() - started < 10
            assert resp.status_code in (400, 503), resp.text
            _wait(
                lambda: _volume_services(client)["hostb@mem"]["state"] == "down",
                DOWN_AFTER + 10,
                "hostb@mem reported down",
                cluster,
            )
            # Work cast to the dead host waits for it (durable queue) ...
            resp = client.post("/volumes", json={"volume": {"size": 1, "volume_type": "files"}})
            assert resp.status_code == 202
    finally:
        cluster.start("volume-b", "volume", cluster.directory / "volume-b.conf")
    with cluster.client() as client:
        _wait(
            lambda: _volume_services(client)["hostb@mem"]["state"] == "up",
            60,
            "hostb@mem back up",
            cluster,
        )
        time.sleep(1.5)  # the scheduler re-reads service liveness at most once a second
        volume_id = _create(client, "mem")
        _wait_status(cluster, client, volume_id, "available")


def test_two_api_processes_let_exactly_one_conflicting_request_win(cluster: Cluster) -> None:
    with cluster.client() as client:
        volume_id = _create(client, "mem")
        _wait_status(cluster, client, volume_id, "available")
    results: list[int] = []
    lock = threading.Lock()

    def hit(port: int, kind: int) -> None:
        with cluster.client(port) as c:
            if kind % 2:
                resp = c.post(f"/volumes/{volume_id}/action", json={"os-extend": {"new_size": 2}})
            else:
                resp = c.delete(f"/volumes/{volume_id}")
        with lock:
            results.append(resp.status_code)

    threads = [threading.Thread(target=hit, args=(cluster.api_ports[i % 2], i)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(202) == 1, results
    # The losers get a clean refusal: 400 (wrong status), or 404 once the winning
    # delete has removed the volume.
    assert all(code in (202, 400, 404) for code in results), results
