"""check_backend (manage requests) and get_pools (GET /scheduler-stats/get_pools)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cinderblock.scheduler.manager import SchedulerManager

from .helpers import Clock, pool, scheduler, spec, stats


def _two_backends(**kwargs: Any) -> SchedulerManager:
    sched = scheduler(**kwargs)
    sched.update_service_capabilities(
        "h@fast", stats("fast", pool("p1", free=0, multiattach=True), pool("p2", free=50)), "az1"
    )
    sched.update_service_capabilities("h@slow", stats("slow", pool("slow", free=500)), "az1")
    return sched


def test_check_backend_passes() -> None:
    sched = _two_backends()
    assert sched.check_backend(spec(), "h@fast#p1") is None
    assert sched.check_backend(spec(), "h@fast") is None
    assert sched.check_backend(spec(volume_backend_name="fast"), "h@fast#p2") is None


def test_check_backend_ignores_size() -> None:
    """The data already exists: a full pool can still take it under management."""
    sched = _two_backends()
    assert sched.check_backend(spec(size=900), "h@fast#p1") is None


def test_check_backend_reasons() -> None:
    sched = _two_backends()
    reasons = sched.check_backend(spec(volume_backend_name="fast"), "h@slow#slow")
    assert reasons is not None and len(reasons) == 1
    assert reasons[0].startswith("h@slow#slow:") and "volume_backend_name" in reasons[0]
    reasons = sched.check_backend(spec(multiattach="<is> True"), "h@fast#p2")
    assert reasons is not None and "multiattach" in reasons[0]
    # a backend passes when any of its pools does; otherwise every pool's reasons
    assert sched.check_backend(spec(multiattach="<is> True"), "h@fast") is None
    reasons = sched.check_backend(spec(volume_backend_name="slow"), "h@fast")
    assert reasons is not None and [r.split(":")[0] for r in reasons] == ["h@fast#p1", "h@fast#p2"]


def test_check_backend_runs_the_filter_function() -> None:
    sched = scheduler()
    sched.update_service_capabilities(
        "h@be", stats("be", pool("p", free=50), filter_function="stats.free_capacity_gb > 100")
    )
    reasons = sched.check_backend(spec(), "h@be#p")
    assert reasons is not None and "filter_function" in reasons[0]
    # the filter function sees size 0 too
    sched.update_service_capabilities(
        "h@be", stats("be", pool("p"), filter_function="volume.size == 0")
    )
    assert sched.check_backend(spec(size=5), "h@be#p") is None


def test_check_backend_unknown_down_and_stale() -> None:
    clock = Clock()
    down: set[str] = set()
    sched = _two_backends(is_backend_up=lambda host: host not in down, stale_after=30, clock=clock)
    assert sched.check_backend(spec(), "h@nowhere") == ["no stats reported for h@nowhere"]
    assert sched.check_backend(spec(), "h@fast#p9") == ["no stats reported for h@fast#p9"]
    down.add("h@fast")
    reasons = sched.check_backend(spec(), "h@fast#p1")
    assert reasons is not None and "down" in reasons[0]
    down.clear()
    clock.now += 31
    reasons = sched.check_backend(spec(), "h@fast#p1")
    assert reasons is not None and "out of date" in reasons[0]


def test_check_backend_takes_a_plain_spec_over_rpc() -> None:
    sched = _two_backends()
    wire = json.loads(json.dumps(spec(3, volume_backend_name="slow").to_dict()))
    assert sched.check_backend(wire, "h@slow") is None
    assert sched.check_backend(wire, "h@fast") is not None


def test_get_pools_shape() -> None:
    clock = Clock(1_700_000_000.0)
    sched = _two_backends(clock=clock)
    pools = sched.get_pools()
    json.dumps(pools)  # plain data: it may travel over RPC
    assert [p["name"] for p in pools] == ["h@fast#p1", "h@fast#p2", "h@slow#slow"]
    caps = pools[1]["capabilities"]
    stamp = dt.datetime(2023, 11, 14, 22, 13, 20).isoformat()
    assert caps["updated"] == caps["timestamp"] == stamp
    assert caps["pool_name"] == "p2" and caps["volume_backend_name"] == "fast"
    assert caps["free_capacity_gb"] == 50 and caps["storage_protocol"] == "iSCSI"
    assert caps["availability_zone"] == "az1"
    assert caps["driver_version"] == "1.0" and caps["vendor_name"] == "Open Source"
    assert "pools" not in caps


def test_get_pools_filters() -> None:
    sched = _two_backends()

    def names(**kwargs: Any) -> list[str]:
        return [p["name"] for p in sched.get_pools(**kwargs)]

    assert names(filters={"name": "h@fast#p2"}) == ["h@fast#p2"]
    assert names(filters={"volume_backend_name": "slow"}) == ["h@slow#slow"]
    assert names(filters={"multiattach": "True"}) == ["h@fast#p1"]
    assert names(filters={"no_such_capability": "x"}) == []
    assert names(extra_specs={"volume_backend_name": "fast"}) == ["h@fast#p1", "h@fast#p2"]
    assert names(extra_specs={"multiattach": "<is> True"}) == ["h@fast#p1"]


def test_get_pools_leaves_out_down_backends() -> None:
    sched = _two_backends(is_backend_up=lambda host: host != "h@slow")
    assert [p["name"] for p in sched.get_pools()] == ["h@fast#p1", "h@fast#p2"]
