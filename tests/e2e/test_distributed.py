"""Distributed mode for real: separate API, scheduler and volume processes on two
"hosts" (different host names on this machine), sharing PostgreSQL and RabbitMQ.

Each test run gets its own PostgreSQL database and its own RabbitMQ virtual host,
so queues never mix with another run's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .cluster import (
    DOWN_AFTER,
    Cluster,
    create_type,
    create_volume,
    free_port,
    rabbit_available,
    running_cluster,
    server_answers,
    volume_services,
)
from .cluster import volume as _status
from .cluster import wait_status as _wait_status


def _wait(predicate: Any, timeout: float, what: str, cluster: Cluster) -> Any:
    return cluster.wait(predicate, timeout, what)


def _volume_services(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return volume_services(client)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if reason := rabbit_available():
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("dist")
    volume_hosts = {
        "volume-a": (
            "hosta",
            {
                "files": {
                    "volume_driver": "file",
                    "volume_backend_name": "files",
                    "file_volumes_dir": str(directory / "volumes-a"),
                }
            },
        ),
        "volume-b": ("hostb", {"mem": {"volume_driver": "memory", "volume_backend_name": "mem"}}),
    }
    with running_cluster(directory, volume_hosts, api_count=2) as cluster:
        with cluster.client() as client:
            for backend in ("files", "mem"):
                create_type(client, backend, {"volume_backend_name": backend})
        yield cluster


def _create(client: httpx.Client, volume_type: str, size: int = 1) -> str:
    return create_volume(client, volume_type, size)


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


def test_api_processes_can_share_one_port(cluster: Cluster) -> None:
    port = free_port()
    names = ["shared0", "shared1"]
    for name in names:
        config = cluster.config(name, "apihost", {}, port)
        cluster.start(name, "api", config, "--reuse-port")
    try:
        cluster.wait(lambda: server_answers(f"http://127.0.0.1:{port}"), 60, "the shared port")
        time.sleep(2)  # both have started (or one has died: checked next)
        assert all(cluster.processes[n].poll() is None for n in names), cluster.logs()
        cluster.kill("shared0")
        # The survivor keeps serving the port: new connections all reach it.
        with cluster.client(port) as client:
            for _ in range(5):
                volume_id = _create(client, "mem")
                _wait_status(cluster, client, volume_id, "available")
    finally:
        for name in names:
            if name in cluster.processes:
                cluster.kill(name)
