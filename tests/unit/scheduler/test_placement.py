"""SchedulerManager placement: filters, weighers, driver functions, liveness."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cinderblock.scheduler.filters import RequestSpec

from .helpers import Clock, pool, scheduler, spec, stats


def test_most_free_capacity_wins_and_placements_spread() -> None:
    sched = scheduler()
    sched.update_service_capabilities("h1@a", stats("a", pool("a", free=50)))
    sched.update_service_capabilities("h2@b", stats("b", pool("b", free=40)))
    picks = [sched.choose(spec(10)) for _ in range(4)]
    # 50/40 -> a (40/40) -> tie, name decides: a (30/40) -> b (30/30) -> a
    assert [p.name for p in picks if p] == ["h1@a#a", "h1@a#a", "h2@b#b", "h1@a#a"]


def test_thin_placements_count_against_virtual_capacity() -> None:
    sched = scheduler()
    thin = {"thin": True, "ratio": 2.0, "total": 100, "free": 100}
    sched.update_service_capabilities("h@a", stats("a", pool("a", provisioned=30, **thin)))
    sched.update_service_capabilities("h@b", stats("b", pool("b", provisioned=0, **thin)))
    picks = [sched.choose(spec(20)) for _ in range(3)]
    # virtual free 170/200 -> b (170/180) -> b (170/160) -> a
    assert [p.backend_name for p in picks if p] == ["b", "b", "a"]
    b = next(p for p in sched.pools() if p.backend_name == "b")
    assert b.capabilities["provisioned_capacity_gb"] == 40
    assert b.capabilities["free_capacity_gb"] == 100  # thin: nothing written yet
    more = 0
    while sched.choose(spec(20)) is not None:
        more += 1
    # each pool may provision 2 x 100 GiB: a has room for 8 more of 20, b for 10
    assert len(picks) + more == 18


def test_ties_go_to_the_first_name_whatever_the_order_of_reports() -> None:
    for order in (["h2@z", "h1@y", "h3@x"], ["h3@x", "h1@y", "h2@z"]):
        sched = scheduler()
        for host in order:
            name = host.partition("@")[2]
            sched.update_service_capabilities(host, stats(name, pool(name, free=10)))
        chosen = sched.choose(spec(1))
        assert chosen is not None and chosen.name == "h1@y#y"


def test_negative_capacity_multiplier_stacks() -> None:
    sched = scheduler(capacity_weight_multiplier=-1.0)
    sched.update_service_capabilities(
        "h@be", stats("be", pool("big", free=90), pool("small", free=20))
    )
    chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.pool_name == "small"


def test_pools_of_one_backend_are_placed_individually() -> None:
    sched = scheduler()
    sched.update_service_capabilities(
        "h@be", stats("be", pool("p1", free=5), pool("p2", free=30), pool("p3", free=20))
    )
    chosen = sched.choose(spec(25))
    assert chosen is not None and chosen.name == "h@be#p2"
    assert sched.choose(spec(25)) is None  # p2 has 5 left after the placement


def test_new_report_replaces_the_backends_pools() -> None:
    sched = scheduler()
    sched.update_service_capabilities("h@be", stats("be", pool("old"), pool("kept")))
    sched.update_service_capabilities("h@be", stats("be", pool("kept"), pool("new")))
    assert [p.name for p in sched.pools()] == ["h@be#kept", "h@be#new"]


def test_capabilities_extra_specs_steer_placement() -> None:
    sched = scheduler()
    sched.update_service_capabilities("h@a", stats("a", pool("a", free=90)))
    sched.update_service_capabilities("h@b", stats("b", pool("b", free=10, multiattach=True)))
    chosen = sched.choose(spec(1, multiattach="<is> True"))
    assert chosen is not None and chosen.backend_name == "b"
    chosen = sched.choose(spec(1, **{"capabilities:storage_protocol": "<or> FC <or> iSCSI"}))
    assert chosen is not None and chosen.backend_name == "a"
    assert sched.choose(spec(1, **{"capabilities:storage_protocol": "NVMe"})) is None
    assert sched.choose(spec(1, dedup="<is> True")) is None  # nobody reports it


def test_backend_name_and_zones() -> None:
    sched = scheduler()
    sched.update_service_capabilities("h1@a", stats("a", pool("a", free=90)), "az1")
    sched.update_service_capabilities("h2@b", stats("b", pool("b", free=10)), "az2")
    chosen = sched.choose(spec(1, volume_backend_name="b"))
    assert chosen is not None and chosen.name == "h2@b#b"
    chosen = sched.choose(spec(1, volume_backend_name="<or> b <or> c"))
    assert chosen is not None and chosen.name == "h2@b#b"
    chosen = sched.choose(RequestSpec(size=1, extra_specs={}, availability_zone="az2"))
    assert chosen is not None and chosen.availability_zone == "az2"
    chosen = sched.choose(spec(1, **{"RESKEY:availability_zones": "az2, az3"}))
    assert chosen is not None and chosen.availability_zone == "az2"
    restricted = RequestSpec(
        size=1, extra_specs={"RESKEY:availability_zones": "az2"}, availability_zone="az1"
    )
    assert sched.choose(restricted) is None


def test_required_backend() -> None:
    sched = scheduler()
    sched.update_service_capabilities("h@a", stats("a", pool("p1", free=90), pool("p2", free=5)))
    sched.update_service_capabilities("h@b", stats("b", pool("b", free=100)))
    source_pool = RequestSpec(size=1, extra_specs={}, required_backend="h@a#p2")
    chosen = sched.choose(source_pool)
    assert chosen is not None and chosen.name == "h@a#p2"
    source_backend = RequestSpec(size=1, extra_specs={}, required_backend="h@a")
    chosen = sched.choose(source_backend)
    assert chosen is not None and chosen.name == "h@a#p1"


# --- driver filter and goodness functions -------------------------------------------------
def test_filter_function_refuses_pools() -> None:
    sched = scheduler()
    sched.update_service_capabilities(
        "h@small", stats("small", pool("s", free=1000), filter_function="volume.size < 10")
    )
    sched.update_service_capabilities("h@big", stats("big", pool("b", free=100)))
    chosen = sched.choose(spec(5))
    assert chosen is not None and chosen.backend_name == "small"
    chosen = sched.choose(spec(10))
    assert chosen is not None and chosen.backend_name == "big"


def test_pool_filter_function_overrides_the_backends() -> None:
    sched = scheduler()
    sched.update_service_capabilities(
        "h@be",
        stats(
            "be",
            pool("open", free=10),
            pool("picky", free=90, filter_function="extra.tier == 'gold'"),
            filter_function="true",
        ),
    )
    chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.pool_name == "open"
    chosen = sched.choose(spec(1, **{"acme:tier": "x", "tier": "gold"}))
    # 'tier' is unscoped, so the capabilities filter wants the pools to report it
    assert chosen is None
    sched.update_service_capabilities(
        "h@be",
        stats(
            "be",
            pool("open", free=10),
            pool("picky", free=90, tier="gold", filter_function="extra.tier == 'gold'"),
        ),
    )
    chosen = sched.choose(spec(1, tier="gold"))
    assert chosen is not None and chosen.pool_name == "picky"


def test_namespaces_reach_the_filter_function() -> None:
    sched = scheduler()
    function = (
        "volume.volume_type_id == 'gold-type' and qos.read_iops_sec >= 500"
        " and stats.storage_protocol == 'iSCSI' and capabilities.free_capacity_gb > volume.size"
    )
    sched.update_service_capabilities(
        "h@be", stats("be", pool("p", free=50), filter_function=function)
    )
    ok = RequestSpec(
        size=10,
        extra_specs={},
        volume={"volume_type_id": "gold-type"},
        qos_specs={"read_iops_sec": "1000"},
    )
    assert sched.choose(ok) is not None
    assert sched.choose(RequestSpec(size=10, extra_specs={}, volume=dict(ok.volume))) is None


def test_broken_filter_function_fails_only_its_backend(caplog: pytest.LogCaptureFixture) -> None:
    sched = scheduler()
    sched.update_service_capabilities(
        "h@broken", stats("broken", pool("x", free=1000), filter_function="volume.size >")
    )
    sched.update_service_capabilities(
        "h@unknown", stats("unknown", pool("y", free=900), filter_function="volume.colour == 1")
    )
    sched.update_service_capabilities(
        "h@divide", stats("divide", pool("z", free=800), filter_function="1 / 0")
    )
    sched.update_service_capabilities("h@fine", stats("fine", pool("f", free=10)))
    with caplog.at_level(logging.WARNING, logger="cinderblock.scheduler"):
        chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.backend_name == "fine"
    logged = caplog.text
    assert "h@broken#x" in logged and "h@unknown#y" in logged and "h@divide#z" in logged


@pytest.mark.parametrize(
    ("goodness", "expected"),
    [  # backend a has no goodness function and wins ties by name
        ("volume.size > 5 ? 100 : 10", "g"),
        ("volume.size > 50 ? 100 : 0", "a"),  # 0 ties with no function: name decides
        ("101", "a"),  # outside 0..100 scores 0
        ("-1", "a"),
        ("1 / 0", "a"),  # broken scores 0
        ("'high'", "a"),
        ("stats.free_capacity_gb / 10", "g"),
    ],
)
def test_goodness_function_decides_between_equal_pools(goodness: str, expected: str) -> None:
    sched = scheduler()
    sched.update_service_capabilities("h@a", stats("a", pool("a", free=100)))
    sched.update_service_capabilities(
        "h@g", stats("g", pool("b", free=100), goodness_function=goodness)
    )
    chosen = sched.choose(spec(10))
    assert chosen is not None and chosen.backend_name == expected


def test_multipliers_weigh_goodness_against_capacity() -> None:
    def build(**multipliers: Any) -> str:
        sched = scheduler(**multipliers)
        sched.update_service_capabilities("h@roomy", stats("roomy", pool("r", free=100)))
        sched.update_service_capabilities(
            "h@good", stats("good", pool("g", free=40), goodness_function="80")
        )
        sched.update_service_capabilities(
            "h@meh", stats("meh", pool("m", free=70), goodness_function="50")
        )
        chosen = sched.choose(spec(1))
        assert chosen is not None
        return chosen.backend_name

    # normalised: capacity roomy 1, meh .5, good 0; goodness good 1, meh .625, roomy 0
    assert build() == "meh"  # 1.125 beats 1.0 and 1.0
    assert build(goodness_weight_multiplier=0.0) == "roomy"
    assert build(capacity_weight_multiplier=0.0) == "good"
    assert build(goodness_weight_multiplier=3.0) == "good"


# --- liveness -----------------------------------------------------------------------------
def test_down_backends_are_ignored() -> None:
    down = {"h1@a"}
    sched = scheduler(is_backend_up=lambda host: host not in down)
    sched.update_service_capabilities("h1@a", stats("a", pool("a", free=100)))
    sched.update_service_capabilities("h2@b", stats("b", pool("b", free=10)))
    chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.name == "h2@b#b"
    assert [p.name for p in sched.pools()] == ["h2@b#b"]
    assert [p.name for p in sched.pools(include_down=True)] == ["h1@a#a", "h2@b#b"]
    down.add("h2@b")
    assert sched.choose(spec(1)) is None
    down.clear()
    chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.name == "h1@a#a"


def test_liveness_check_failure_counts_as_down(caplog: pytest.LogCaptureFixture) -> None:
    def flaky(host: str) -> bool:
        if host == "h1@a":
            raise RuntimeError("database unreachable")
        return True

    sched = scheduler(is_backend_up=flaky)
    sched.update_service_capabilities("h1@a", stats("a", pool("a", free=100)))
    sched.update_service_capabilities("h2@b", stats("b", pool("b", free=10)))
    with caplog.at_level(logging.ERROR, logger="cinderblock.scheduler"):
        chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.name == "h2@b#b"
    assert "h1@a" in caplog.text


def test_stale_reports_are_ignored_until_the_next_one() -> None:
    clock = Clock()
    sched = scheduler(stale_after=60, clock=clock)
    sched.update_service_capabilities("h1@a", stats("a", pool("a", free=100)))
    clock.now += 50
    sched.update_service_capabilities("h2@b", stats("b", pool("b", free=10)))
    chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.name == "h1@a#a"
    clock.now += 20  # a's report is now 70 s old, b's 20 s
    chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.name == "h2@b#b"
    assert [p.name for p in sched.pools()] == ["h2@b#b"]
    clock.now += 100
    assert sched.choose(spec(1)) is None
    sched.update_service_capabilities("h1@a", stats("a", pool("a", free=100)))
    chosen = sched.choose(spec(1))
    assert chosen is not None and chosen.name == "h1@a#a"


def test_never_stale_by_default() -> None:
    clock = Clock()
    sched = scheduler(clock=clock)
    sched.update_service_capabilities("h@a", stats("a", pool("a")))
    clock.now += 10**9
    assert sched.choose(spec(1)) is not None
