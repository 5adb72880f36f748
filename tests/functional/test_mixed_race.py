"""Fifty conflicting requests at once on one volume: exactly one wins, the backend sees
exactly one operation, everyone else gets a clean Cinder fault, and nothing is left
half-done.

The volume lives on the memory backend, whose call log (`driver.calls`) shows what the
backend was really asked to do. Two mixes, each a few rounds in a different random order:

* exclusive: delete, extend, os-reserve, attachment create and os-unmanage each need an
  `available` volume and leave it in another status, so exactly one of them can win. Mixed
  in: manage requests naming the volume's own backend object (`volume-<id>`), which must be
  refused as already managed while the volume exists.
* snapshots: snapshot creates do not conflict with each other (Cinder lets a volume have
  several), but a delete does conflict with them: either one delete wins and no snapshot is
  made, or no delete wins and every accepted snapshot exists once on the backend. Manage
  requests of the volume's object again are mixed in.

The backend is paused while the requests race (the test holds the memory driver's lock,
which every driver operation takes), as a slow backend would be: a winner's operation is
still in flight when the last request arrives, so a fast extend cannot finish, put the
volume back to `available` and let a later request win a second, sequential race; and a
delete or unmanage cannot remove the volume before every manage request was refused.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import partial

import httpx
import pytest
from cbhelpers import assert_fault, mem_volume
from racing import Call, fire

from conftest import Api, RunningService

COUNT = 50
ROUNDS = 3
MEM_HOST = "testhost@mem"
GiB = 1024**3
# Driver operations that change what exists on the backend (the rest only read or export).
CHANGES = {
    "create_volume",
    "delete_volume",
    "extend_volume",
    "create_snapshot",
    "delete_snapshot",
    "create_cloned_volume",
    "create_volume_from_snapshot",
    "revert_to_snapshot",
    "manage_existing",
    "unmanage",
    "manage_existing_snapshot",
    "unmanage_snapshot",
}
ALREADY_MANAGED = "Invalid volume: Unable to manage existing volume. The volume is already managed"


def action(name: str, args: object, volume_id: str, client: Api) -> httpx.Response:
    return client.post(f"/volumes/{volume_id}/action", {name: args})


def requests_for(volume: dict, kind: str) -> Call:
    vid = volume["id"]
    if kind == "delete":
        return lambda c: c.delete(f"/volumes/{vid}")
    if kind == "extend":
        return partial(action, "os-extend", {"new_size": volume["size"] + 1}, vid)
    if kind == "reserve":
        return partial(action, "os-reserve", None, vid)
    if kind == "unmanage":
        return partial(action, "os-unmanage", None, vid)
    if kind == "attach":
        body = {"attachment": {"volume_uuid": vid, "instance_uuid": str(uuid.uuid4())}}
        return lambda c: c.post("/attachments", body)
    if kind == "snapshot":
        return lambda c: c.post("/snapshots", {"snapshot": {"volume_id": vid}})
    if kind == "manage":
        ref = {"source-name": f"volume-{vid}"}
        return lambda c: c.post("/manageable_volumes", {"volume": {"host": MEM_HOST, "ref": ref}})
    raise ValueError(kind)


def backend_changes(cinder: RunningService, since: int, name: str) -> list[str]:
    """The state-changing driver calls on object `name` (or its snapshots) since `since`."""
    calls = list(cinder.service.managers[MEM_HOST].driver.calls)[since:]
    return [op for op, on in calls if op in CHANGES and (on == name or on.startswith(name + "@"))]


def log_position(cinder: RunningService) -> int:
    cinder.wait_idle()
    return len(cinder.service.managers[MEM_HOST].driver.calls)


@contextlib.contextmanager
def backend_paused(cinder: RunningService) -> Iterator[None]:
    """Hold the memory driver's lock: every driver operation waits until the block ends."""
    with cinder.service.managers[MEM_HOST].driver._lock:
        yield


def race(
    api: Api, cinder: RunningService, volume: dict, kinds: list[str], seed: int
) -> tuple[list[tuple[str, httpx.Response]], str]:
    """Fire the requests in a random order; (kind, response) each, and the volume's status
    once all were answered, before the backend carried anything out."""
    rng = random.Random(seed)
    rng.shuffle(kinds)
    with backend_paused(cinder):
        responses = fire(api, [requests_for(volume, kind) for kind in kinds])
        resp = api.get(f"/volumes/{volume['id']}")
        assert resp.status_code == 200, resp.text
        during = resp.json()["volume"]["status"]
    for kind, resp in zip(kinds, responses, strict=True):
        assert resp.status_code < 500, f"{kind}: {resp.status_code} {resp.text}"
    return list(zip(kinds, responses, strict=True)), during


def object_name(volume: dict) -> str:
    return f"volume-{volume['id']}"


def check_manage_refusals(outcomes: list[tuple[str, httpx.Response]]) -> None:
    """Every manage request of the volume's own object is refused: it is ours already."""
    for kind, resp in outcomes:
        if kind == "manage":
            assert_fault(resp, 400, ALREADY_MANAGED)


EXCLUSIVE = ["delete"] * 9 + ["extend"] * 9 + ["reserve"] * 9 + ["attach"] * 9
EXCLUSIVE += ["unmanage"] * 8 + ["manage"] * 6
WINS = {"delete": 202, "extend": 202, "reserve": 202, "attach": 200, "unmanage": 202}
# The volume's status while the winner's backend operation is in flight (or, for the two
# reservations, until the volume is attached).
HOLDS = {
    "delete": "deleting",
    "extend": "extending",
    "reserve": "attaching",
    "attach": "reserved",
    "unmanage": "unmanaging",
}


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_exactly_one_of_fifty_exclusive_requests_wins(
    api: Api, cinder: RunningService, round_: int
) -> None:
    assert len(EXCLUSIVE) == COUNT
    seed = random.randrange(2**32)
    volume = mem_volume(api, size=1)
    name = object_name(volume)
    driver = cinder.service.managers[MEM_HOST].driver
    start = log_position(cinder)

    outcomes, during = race(api, cinder, volume, list(EXCLUSIVE), seed)

    winners = [(k, r) for k, r in outcomes if k != "manage" and r.status_code == WINS[k]]
    assert len(winners) == 1, (seed, [(k, r.status_code, r.text) for k, r in winners])
    won, won_resp = winners[0]
    print(f"round {round_}: {won} won (seed {seed})")  # shown with pytest -s
    assert during == HOLDS[won], (seed, won, during)
    for _kind, resp in outcomes:
        if resp is not won_resp:
            assert_fault(resp, 400)
    check_manage_refusals(outcomes)

    if won in ("delete", "unmanage"):
        api.wait_gone(f"/volumes/{volume['id']}")
    elif won == "extend":
        final = api.wait_volume(volume["id"])
        assert final["size"] == volume["size"] + 1
        assert driver.object_size(name) == (volume["size"] + 1) * GiB
    else:
        assert api.wait_volume(volume["id"], (during,))["status"] == during
    cinder.wait_idle()
    # The backend saw exactly the winner's operation (a reservation touches no backend).
    expected = {"delete": ["delete_volume"], "extend": ["extend_volume"], "unmanage": ["unmanage"]}
    assert backend_changes(cinder, start, name) == expected.get(won, []), seed
    if won == "delete":
        assert name not in driver.object_names()
    if won == "unmanage":
        # Back to a foreign object: still there, unchanged. Drop it so no listing sees it.
        assert driver.object_size(name) == volume["size"] * GiB
        with driver._lock:
            driver._objects.pop(name)
        return

    # Leave nothing behind: undo a reservation, delete what is left.
    if won == "reserve":
        assert action("os-unreserve", None, volume["id"], api).status_code == 202
    if won == "attach":
        attachment = won_resp.json()["attachment"]["id"]
        assert api.delete(f"/attachments/{attachment}").status_code == 200
    if won != "delete":
        api.wait_volume(volume["id"])
        assert api.delete(f"/volumes/{volume['id']}").status_code == 202
        api.wait_gone(f"/volumes/{volume['id']}")


SNAPSHOTS = ["snapshot"] * 30 + ["delete"] * 14 + ["manage"] * 6


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_fifty_snapshot_creates_deletes_and_manages(
    api: Api, cinder: RunningService, round_: int
) -> None:
    assert len(SNAPSHOTS) == COUNT
    seed = random.randrange(2**32)
    # Room for every snapshot (the default is 10): quotas are not what this test is about.
    resp = api.put(f"/os-quota-sets/{api.project}", {"quota_set": {"snapshots": COUNT}})
    assert resp.status_code == 200, resp.text
    volume = mem_volume(api, size=1)
    name = object_name(volume)
    driver = cinder.service.managers[MEM_HOST].driver
    start = log_position(cinder)

    outcomes, during = race(api, cinder, volume, list(SNAPSHOTS), seed)

    codes = {kind: Counter() for kind in ("snapshot", "delete")}
    for kind, resp in outcomes:
        if kind in codes:
            codes[kind][resp.status_code] += 1
    deleted = codes["delete"][202]
    made = [
        r.json()["snapshot"]["id"] for k, r in outcomes if k == "snapshot" and r.status_code == 202
    ]
    print(f"round {round_}: {'delete' if deleted else f'{len(made)} snapshots'} won ({seed})")
    # Either the delete came first (one delete, no snapshot) or a snapshot did: then no
    # delete can win and every snapshot request does (the volume stays available).
    assert (deleted, len(made)) in ((1, 0), (0, SNAPSHOTS.count("snapshot"))), (seed, codes)
    assert during == ("deleting" if deleted else "available"), (seed, during)
    for _kind, resp in outcomes:
        if resp.status_code not in (200, 202):
            assert_fault(resp, 400)
    check_manage_refusals(outcomes)

    if deleted:
        api.wait_gone(f"/volumes/{volume['id']}")
        cinder.wait_idle()
        assert backend_changes(cinder, start, name) == ["delete_volume"], seed
        assert not any(n == name or n.startswith(name + "@") for n in driver.object_names())
        return
    for snap_id in made:
        api.wait_snapshot(snap_id)
    cinder.wait_idle()
    changes = backend_changes(cinder, start, name)
    assert changes == ["create_snapshot"] * len(made), (seed, changes)
    on_backend = {n for n in driver.object_names() if n.startswith(name + "@")}
    assert on_backend == {f"{name}@snapshot-{s}" for s in made}
    listed = api.get(f"/snapshots?volume_id={volume['id']}").json()["snapshots"]
    assert sorted(s["id"] for s in listed) == sorted(made)
    assert api.wait_volume(volume["id"])["status"] == "available"

    # Clean up with one cascade delete.
    resp = api.delete(f"/volumes/{volume['id']}?cascade=true")
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/volumes/{volume['id']}")
    deadline = time.monotonic() + 30
    while any(n.startswith(name) for n in driver.object_names()):
        assert time.monotonic() < deadline, "the cascade delete left backend objects"
        time.sleep(0.05)
