"""A distributed cinderblock on this machine: separate API, scheduler and volume
processes sharing one PostgreSQL database and one RabbitMQ virtual host.

Every cluster gets its own database and its own vhost (both dropped afterwards), so
queues and rows never mix with another run's. Used by the distributed e2e tests,
by the functional harness with CINDERBLOCK_TEST_TOPOLOGY=distributed, and (the same
shape) by bench/distributed_bench.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

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

Backends = Mapping[str, Mapping[str, str]]  # section name -> options


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # GET / is "300 Multiple Choices": the server is up
    except OSError:
        return False


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout


def rabbit_available() -> str | None:
    """None when RabbitMQ answers here, else why not."""
    try:
        rabbitmqctl("status")
    except (OSError, subprocess.SubprocessError) as err:
        return f"RabbitMQ is not running here: {err}"
    return None


@contextlib.contextmanager
def private_vhost(tag: str) -> Iterator[str]:
    """A fresh RabbitMQ vhost (guest may use it); its transport URL is yielded."""
    vhost = f"cb-{tag}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        with contextlib.suppress(Exception):
            rabbitmqctl("delete_vhost", vhost)


def queue_depths(transport_url: str) -> dict[str, int]:
    """Messages per queue of the URL's vhost, ready plus delivered-but-unacknowledged."""
    vhost = transport_url.rsplit("/", 1)[1]
    out = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "messages")
    depths = {}
    for line in out.splitlines():
        name, _, count = line.strip().rpartition("\t")
        if name:
            depths[name] = int(count)
    return depths


def queue_consumers(transport_url: str) -> dict[str, int]:
    """Consumers per queue of the URL's vhost."""
    vhost = transport_url.rsplit("/", 1)[1]
    out = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "consumers")
    found = {}
    for line in out.splitlines():
        name, _, count = line.strip().rpartition("\t")
        if name:
            found[name] = int(count)
    return found


@contextlib.contextmanager
def private_database(tag: str) -> Iterator[str]:
    """A fresh PostgreSQL database; its URL is yielded and it is dropped afterwards."""
    name = f"cb_dist_{tag}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def db_upgrade(db_url: str) -> None:
    subprocess.run(
        [*CINDERBLOCK, "--database-url", db_url, "db", "upgrade"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def render_config(
    *,
    host: str,
    db_url: str,
    transport_url: str,
    backends: Backends | None = None,
    port: int = 0,
    defaults: Mapping[str, str] | None = None,
) -> str:
    backends = backends or {}
    options = {
        "host": host,
        "enabled_backends": ", ".join(backends),
        "bind_host": "127.0.0.1",
        "bind_port": str(port),
        "transport_url": transport_url,
        "report_interval": "1",
        "service_down_time": str(DOWN_AFTER),
        "rpc_call_timeout": "5",
        "quota_volumes": "-1",  # one project makes all the volumes of a module
        "quota_gigabytes": "-1",
        **(defaults or {}),
    }
    lines = ["[DEFAULT]", *(f"{k} = {v}" for k, v in options.items())]
    lines += ["", "[database]", f"connection = {db_url}"]
    for backend, section in backends.items():
        lines += ["", f"[{backend}]", *(f"{k} = {v}" for k, v in section.items())]
    return "\n".join(lines) + "\n"


@dataclass
class Cluster:
    directory: Path
    db_url: str
    transport_url: str
    api_ports: list[int]
    defaults: dict[str, str] = field(default_factory=dict)  # extra [DEFAULT] options
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    project: str = field(default_factory=lambda: uuid.uuid4().hex)

    def config(self, name: str, host: str, backends: Backends, port: int = 0) -> Path:
        path = self.directory / f"{name}.conf"
        path.write_text(
            render_config(
                host=host,
                db_url=self.db_url,
                transport_url=self.transport_url,
                backends=backends,
                port=port,
                defaults=self.defaults,
            )
        )
        return path

    def start(self, name: str, role: str, config: Path, *extra: str) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [*CINDERBLOCK, role, "--config", str(config), "--no-migrate", *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def restart(self, name: str, role: str) -> None:
        self.start(name, role, self.directory / f"{name}.conf")

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
                process.wait(timeout=10)
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

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited while waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def wait_services_up(self, hosts: set[str], timeout: float = 60) -> None:
        with self.client() as client:
            self.wait(
                lambda: (
                    hosts <= {h for h, s in volume_services(client).items() if s["state"] == "up"}
                ),
                timeout,
                f"volume services {sorted(hosts)} up",
            )


def volume_services(client: httpx.Client) -> dict[str, dict[str, Any]]:
    resp = client.get("/os-services", params={"binary": "cinder-volume"})
    return {s["host"]: s for s in resp.json()["services"]} if resp.status_code == 200 else {}


@contextlib.contextmanager
def running_cluster(
    directory: Path,
    volume_hosts: Mapping[str, tuple[str, Backends]],
    *,
    api_count: int = 1,
    defaults: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """APIs, a scheduler and one volume process per `volume_hosts` entry
    (process name -> (host, backends)), all up and reporting when yielded."""
    tag = uuid.uuid4().hex[:10]
    with private_vhost(tag) as transport_url, private_database(tag) as db_url:
        cluster = Cluster(
            directory,
            db_url,
            transport_url,
            [free_port() for _ in range(api_count)],
            defaults=dict(defaults or {}),
        )
        try:
            db_upgrade(db_url)
            for i, port in enumerate(cluster.api_ports):
                cluster.start(f"api{i}", "api", cluster.config(f"api{i}", "apihost", {}, port))
            cluster.start("scheduler", "scheduler", cluster.config("scheduler", "schedhost", {}))
            expected = set()
            for name, (host, backends) in volume_hosts.items():
                cluster.start(name, "volume", cluster.config(name, host, backends))
                expected |= {f"{host}@{backend}" for backend in backends}
            for port in cluster.api_ports:
                cluster.wait(
                    lambda p=port: server_answers(f"http://127.0.0.1:{p}"), 60, f"API on {port}"
                )
            cluster.wait_services_up(expected)
            yield cluster
        finally:
            cluster.stop_all()


def create_type(client: httpx.Client, name: str, extra_specs: Mapping[str, str]) -> str:
    resp = client.post(
        "/types", json={"volume_type": {"name": name, "extra_specs": dict(extra_specs)}}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["volume_type"]["id"])


def create_volume(client: httpx.Client, volume_type: str | None = None, size: int = 1) -> str:
    body: dict[str, Any] = {"size": size}
    if volume_type is not None:
        body["volume_type"] = volume_type
    resp = client.post("/volumes", json={"volume": body})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["volume"]["id"])


def volume(client: httpx.Client, volume_id: str) -> dict[str, Any] | None:
    resp = client.get(f"/volumes/{volume_id}")
    return resp.json()["volume"] if resp.status_code == 200 else None


def wait_status(
    cluster: Cluster, client: httpx.Client, volume_id: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = volume(client, volume_id)
        return found if found is not None and found["status"] == status else None

    return cluster.wait(reached, timeout, f"volume {volume_id} {status}")  # type: ignore[no-any-return]
