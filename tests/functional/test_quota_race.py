"""Quotas under fifty racing requests: creates, snapshot creates and extends that together
ask for more than the project's quota get exactly as much as fits, the rest a 413
overLimit fault, and the usage the quota-sets API reports afterwards is what exists (and
goes back to zero when everything is deleted). Run on every database of the suite.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import httpx
from cbhelpers import assert_fault, backend_type, mem_volume
from racing import Call, fire

from conftest import Api, RunningService

ROUNDS = 2


def set_quota(api: Api, **limits: int) -> None:
    resp = api.put(f"/os-quota-sets/{api.project}", {"quota_set": limits})
    assert resp.status_code == 200, resp.text


def usage(api: Api) -> dict[str, tuple[int, int]]:
    """(in_use, reserved) of volumes, snapshots and gigabytes."""
    resp = api.get(f"/os-quota-sets/{api.project}?usage=True")
    assert resp.status_code == 200, resp.text
    body = resp.json()["quota_set"]
    return {
        k: (body[k]["in_use"], body[k]["reserved"]) for k in ("volumes", "snapshots", "gigabytes")
    }


def existing(api: Api) -> dict[str, tuple[int, int]]:
    """What the project really has, counted from the lists: (count or GiB, 0 reserved)."""
    volumes = api.get("/volumes/detail").json()["volumes"]
    snapshots = api.get("/snapshots/detail").json()["snapshots"]
    gigabytes = sum(v["size"] for v in volumes) + sum(s["size"] for s in snapshots)
    return {
        "volumes": (len(volumes), 0),
        "snapshots": (len(snapshots), 0),
        "gigabytes": (gigabytes, 0),
    }


def create_call(volume_type: str) -> Call:
    body = {"volume": {"size": 1, "volume_type": volume_type}}
    return lambda c: c.post("/volumes", body)


def snapshot_call(volume_id: str) -> Call:
    return lambda c: c.post("/snapshots", {"snapshot": {"volume_id": volume_id}})


def extend_call(volume: dict[str, Any]) -> Call:
    body = {"os-extend": {"new_size": volume["size"] + 1}}
    return lambda c: c.post(f"/volumes/{volume['id']}/action", body)


def settle(api: Api, cinder: RunningService, accepted: list[tuple[str, httpx.Response]]) -> None:
    for kind, resp in accepted:
        if kind == "create":
            api.wait_volume(resp.json()["volume"]["id"])
        elif kind == "snapshot":
            api.wait_snapshot(resp.json()["snapshot"]["id"])
    cinder.wait_idle()


def race(
    api: Api, calls: list[tuple[str, Call]], seed: int, limits: dict[str, str]
) -> list[tuple[str, httpx.Response]]:
    """Fire them in a random order; a refusal must be a 413 naming the kind's limit."""
    random.Random(seed).shuffle(calls)
    responses = fire(api, [call for _, call in calls])
    outcomes = [(kind, resp) for (kind, _), resp in zip(calls, responses, strict=True)]
    for kind, resp in outcomes:
        if resp.status_code not in (200, 202):
            assert_fault(resp, 413)  # over quota is the only reason to refuse here
            message = resp.json()["overLimit"]["message"]
            assert limits[kind] in message, message
    return outcomes


def delete_everything(api: Api, cinder: RunningService) -> None:
    for snap in api.get("/snapshots").json()["snapshots"]:
        assert api.delete(f"/snapshots/{snap['id']}").status_code == 202
    for snap in api.get("/snapshots").json()["snapshots"]:
        api.wait_gone(f"/snapshots/{snap['id']}")
    for vol in api.get("/volumes").json()["volumes"]:
        assert api.delete(f"/volumes/{vol['id']}").status_code == 202
    for vol in api.get("/volumes").json()["volumes"]:
        api.wait_gone(f"/volumes/{vol['id']}")
    cinder.wait_idle()


def test_fifty_gigabyte_requests_get_exactly_what_fits(api: Api, cinder: RunningService) -> None:
    """20 creates + 20 snapshots + 10 extends of 1 GiB each against 25 GiB of room."""
    mem = backend_type(api, "mem")["name"]
    set_quota(api, volumes=-1, snapshots=-1)  # only gigabytes limit this test
    source = mem_volume(api, size=1)
    targets = [mem_volume(api, size=1) for _ in range(10)]
    for round_ in range(ROUNDS):
        seed = random.randrange(2**32)
        used = existing(api)["gigabytes"][0]
        set_quota(api, gigabytes=used + 25, volumes=-1, snapshots=-1)
        targets = [api.wait_volume(t["id"]) for t in targets]
        calls: list[tuple[str, Call]] = [("create", create_call(mem)) for _ in range(20)]
        calls += [("snapshot", snapshot_call(source["id"])) for _ in range(20)]
        calls += [("extend", extend_call(t)) for t in targets]

        outcomes = race(
            api, calls, seed, dict.fromkeys(("create", "snapshot", "extend"), "gigabytes")
        )

        won = [(k, r) for k, r in outcomes if r.status_code in (200, 202)]
        print(f"round {round_}: granted {Counter(k for k, _ in won)} (seed {seed})")
        assert len(won) == 25, (seed, Counter((k, r.status_code) for k, r in outcomes))
        settle(api, cinder, won)
        assert usage(api) == existing(api), seed
        assert usage(api)["gigabytes"] == (used + 25, 0)

    delete_everything(api, cinder)
    assert usage(api) == {"volumes": (0, 0), "snapshots": (0, 0), "gigabytes": (0, 0)}


def test_fifty_creates_and_snapshots_get_exactly_the_counts_that_fit(
    api: Api, cinder: RunningService
) -> None:
    """25 creates against room for 15 volumes, 25 snapshots against room for 10."""
    mem = backend_type(api, "mem")["name"]
    source = mem_volume(api, size=1)
    for round_ in range(ROUNDS):
        seed = random.randrange(2**32)
        have = existing(api)
        set_quota(
            api,
            volumes=have["volumes"][0] + 15,
            snapshots=have["snapshots"][0] + 10,
            gigabytes=-1,
        )
        calls: list[tuple[str, Call]] = [("create", create_call(mem)) for _ in range(25)]
        calls += [("snapshot", snapshot_call(source["id"])) for _ in range(25)]

        outcomes = race(api, calls, seed, {"create": "volumes", "snapshot": "snapshots"})

        won = Counter(k for k, r in outcomes if r.status_code in (200, 202))
        print(f"round {round_}: granted {won} (seed {seed})")
        assert won == {"create": 15, "snapshot": 10}, (seed, won)
        settle(api, cinder, [(k, r) for k, r in outcomes if r.status_code == 202])
        now = usage(api)
        assert now == existing(api), seed
        assert now["volumes"] == (have["volumes"][0] + 15, 0)
        assert now["snapshots"] == (have["snapshots"][0] + 10, 0)

    delete_everything(api, cinder)
    assert usage(api) == {"volumes": (0, 0), "snapshots": (0, 0), "gigabytes": (0, 0)}
