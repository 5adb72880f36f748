"""The scheduler across processes: capacity, goodness and filter functions, liveness,
and no lost work when a volume service restarts.

One cluster (API, scheduler, two volume processes "hosta" and "hostb" on PostgreSQL
and RabbitMQ, see cluster.py) with pairs of memory backends that share a
`volume_backend_name`, so each pair's type can land on either host and only the
scheduler's filters and weighers decide. With everything else equal the weighers tie
and the pool whose name sorts first (hosta's) wins; the tests lean on that to show a
goodness or filter function changing the outcome.
"""

from __future__ import annotations

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
    rabbit_available,
    running_cluster,
    volume,
    volume_services,
    wait_status,
)


def _mem(name: str, **options: str) -> dict[str, str]:
    return {"volume_driver": "memory", "volume_backend_name": name, **options}


HOSTA = {
    # 10 GiB, 20% of it reserved, thin with over-subscription up to 20x.
    "cap_a": _mem(
        "cap",
        memory_capacity_gb="10",
        reserved_percentage="20",
        max_over_subscription_ratio="20",
    ),
    "plain_a": _mem("plain"),
    "good_a": _mem("good"),
    "filt_a": _mem("filt", filter_function="volume.size < 5"),
    "live_a": _mem("live"),
}
HOSTB = {
    "cap_b": _mem("cap", memory_capacity_gb="100", max_over_subscription_ratio="1"),
    "plain_b": _mem("plain"),
    "good_b": _mem("good", goodness_function="volume.size >= 2 ? 100 : 0"),
    "filt_b": _mem("filt"),
    # Twice the capacity: the capacity weigher prefers it while it is up.
    "live_b": _mem("live", memory_capacity_gb="2000"),
}
TYPES = ("cap", "plain", "good", "filt", "live", "bonly")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if reason := rabbit_available():
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("dist-sched")
    # Files outlive a restart of their volume service (memory volumes do not).
    bonly = {
        "volume_driver": "file",
        "volume_backend_name": "bonly",
        "file_volumes_dir": str(directory / "bonly"),
    }
    hosts = {"volume-a": ("hosta", HOSTA), "volume-b": ("hostb", {**HOSTB, "bonly": bonly})}
    with running_cluster(directory, hosts) as cluster:
        with cluster.client() as client:
            for name in TYPES:
                create_type(client, name, {"volume_backend_name": name})
        yield cluster


@pytest.fixture
def client(cluster: Cluster) -> Iterator[httpx.Client]:
    with cluster.client() as client:
        yield client


def _place(cluster: Cluster, client: httpx.Client, volume_type: str, size: int = 1) -> str:
    """Create a volume, wait until it is available, return its pool."""
    volume_id = create_volume(client, volume_type, size)
    return str(wait_status(cluster, client, volume_id, "available")["os-vol-host-attr:host"])


def _pool(client: httpx.Client, name: str) -> dict[str, Any] | None:
    resp = client.get("/scheduler-stats/get_pools", params={"detail": "true"})
    pools = {p["name"]: p["capabilities"] for p in resp.json()["pools"]}
    return pools.get(name)


def _wait_free(cluster: Cluster, client: httpx.Client, pool: str, gib: float) -> None:
    """Until the backend's own stats show `gib` free (the scheduler's estimate between
    two reports adds to what is provisioned, but leaves a thin pool's free space)."""

    def reported() -> bool:
        caps = _pool(client, pool)
        return caps is not None and float(caps["free_capacity_gb"]) == gib

    cluster.wait(reported, 30, f"{pool} reporting {gib} GiB free")


def test_exhausted_capacity_sends_new_volumes_to_the_other_backend(
    cluster: Cluster, client: httpx.Client
) -> None:
    small, big = "hosta@cap_a#cap", "hostb@cap_b#cap"
    caps = _pool(client, small)
    assert caps is not None
    assert (caps["total_capacity_gb"], caps["reserved_percentage"]) == (10, 20)
    # hosta's virtual capacity (10 GiB x 20, less 2 GiB reserved) outweighs hostb's
    # 100 GiB, so it takes volumes while its filter lets it.
    assert _place(cluster, client, "cap", 6) == small
    _wait_free(cluster, client, small, 4)
    # 4 GiB physically free, 2 of them reserved: thin placement still fits 6 GiB in
    # (2 GiB x 20) -- 12 GiB provisioned on a 10 GiB backend.
    assert _place(cluster, client, "cap", 6) == small
    _wait_free(cluster, client, small, 0)
    # Nothing free below the reserve now: the next volumes go to hostb.
    assert _place(cluster, client, "cap", 6) == big
    assert _place(cluster, client, "cap", 1) == big
    # A volume hostb cannot take either (over-subscription ratio 1 there) fails
    # cleanly with "no valid backend" instead of landing anywhere.
    volume_id = create_volume(client, "cap", 200)
    failed = wait_status(cluster, client, volume_id, "error")
    assert failed["os-vol-host-attr:host"] is None


def test_a_goodness_function_changes_the_choice(cluster: Cluster, client: httpx.Client) -> None:
    # Two plain backends, equal in everything: the tie goes to the first by name.
    assert _place(cluster, client, "plain", 2) == "hosta@plain_a#plain"
    # The same pair but hostb's goodness_function scores 2 GiB+ volumes 100.
    assert _place(cluster, client, "good", 2) == "hostb@good_b#good"
    # A 1 GiB volume scores 0 everywhere; hosta now has more room, so it wins.
    assert _place(cluster, client, "good", 1) == "hosta@good_a#good"


def test_a_filter_function_excludes_a_backend(cluster: Cluster, client: httpx.Client) -> None:
    # hosta's filter_function "volume.size < 5" refuses a 5 GiB volume ...
    assert _place(cluster, client, "filt", 5) == "hostb@filt_b#filt"
    # ... but not a small one (which hosta wins: more room left than hostb).
    assert _place(cluster, client, "filt", 1) == "hosta@filt_a#filt"


def test_new_volumes_avoid_a_volume_service_that_died(
    cluster: Cluster, client: httpx.Client
) -> None:
    assert _place(cluster, client, "live") == "hostb@live_b#live"  # the bigger one
    cluster.kill("volume-b")
    try:
        cluster.wait(
            lambda: volume_services(client)["hostb@live_b"]["state"] == "down",
            DOWN_AFTER + 10,
            "hostb reported down",
        )
        time.sleep(1.5)  # the scheduler re-reads liveness at most once a second
        placed = [_place(cluster, client, "live") for _ in range(3)]
        assert placed == ["hosta@live_a#live"] * 3
        # A type only hostb serves has nowhere to go while hostb is down.
        volume_id = create_volume(client, "bonly")
        assert wait_status(cluster, client, volume_id, "error")["os-vol-host-attr:host"] is None
    finally:
        cluster.restart("volume-b", "volume")
    cluster.wait_services_up({"hostb@live_b"})
    time.sleep(1.5)
    assert _place(cluster, client, "live") == "hostb@live_b#live"  # back in the running


def test_restarting_a_volume_service_loses_no_accepted_work(
    cluster: Cluster, client: httpx.Client
) -> None:
    files = cluster.directory / "bonly"
    doomed = create_volume(client, "bonly")
    wait_status(cluster, client, doomed, "available")
    assert (files / f"volume-{doomed}").is_file()
    # A scheduler that still believes hostb is up (long service_down_time) places the
    # create on hostb's queue while the process is dead.
    patient = cluster.directory / "scheduler-patient.conf"
    patient.write_text(
        (cluster.directory / "scheduler.conf")
        .read_text()
        .replace(f"service_down_time = {DOWN_AFTER}", "service_down_time = 600")
    )
    cluster.kill("scheduler")
    cluster.start("scheduler", "scheduler", patient)
    try:
        cluster.kill("volume-b")
        created = create_volume(client, "bonly", 3)
        delete = client.delete(f"/volumes/{doomed}")
        assert delete.status_code == 202, delete.text
        # Accepted, placed, waiting in hostb's queue.
        cluster.wait(
            lambda: (
                (volume(client, created) or {}).get("os-vol-host-attr:host") == "hostb@bonly#bonly"
            ),
            30,
            "the create placed on hostb",
        )
        time.sleep(1)
        assert volume(client, created)["status"] == "creating"  # type: ignore[index]
        assert volume(client, doomed)["status"] == "deleting"  # type: ignore[index]
        assert not (files / f"volume-{created}").exists()
        cluster.restart("volume-b", "volume")
        assert wait_status(cluster, client, created, "available")["size"] == 3
        assert (files / f"volume-{created}").stat().st_size == 3 * 1024**3
        cluster.wait(lambda: volume(client, doomed) is None, 60, "the deleted volume gone")
        assert not (files / f"volume-{doomed}").exists()
    finally:
        if "volume-b" not in cluster.processes:
            cluster.restart("volume-b", "volume")
        cluster.kill("scheduler")
        cluster.restart("scheduler", "scheduler")
    cluster.wait_services_up({"hostb@bonly"})
