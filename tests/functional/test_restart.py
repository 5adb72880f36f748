"""A restarted service keeps every volume and snapshot with its data, and finishes or fails
whatever the previous run left in a transitional status."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cbhelpers import head_bytes, read_at, snapshot, write_at

from conftest import Api, RunningService, scratch_database, start_service


@pytest.fixture
def own_database_url(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, on the same engine as the rest of the run."""
    with scratch_database(tmp_path, "cb_restart") as url:
        yield url


def _set(url: str, volume_id: str, **values: object) -> None:
    """Write volume columns behind the service's back (it is stopped)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            sets = ", ".join(f"{k} = :{k}" for k in values)
            conn.execute(
                sa.text(f"UPDATE volumes SET {sets} WHERE id = :id"), {**values, "id": volume_id}
            )
    finally:
        engine.dispose()


def _set_snapshot(url: str, snapshot_id: str, status: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE snapshots SET status = :s WHERE id = :id"),
                {"s": status, "id": snapshot_id},
            )
    finally:
        engine.dispose()


def _wait_status(api: Api, path: str, key: str, wanted: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        resp = api.get(path)
        if resp.status_code == 200 and resp.json()[key]["status"] in wanted:
            return resp.json()[key]
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never reached {wanted}: {resp.text}")
        time.sleep(0.05)


def test_restart_keeps_everything_and_resolves_transitional_work(
    tmp_path: Path, own_database_url: str
) -> None:
    directory = tmp_path / "svc"
    directory.mkdir()
    project = uuid.uuid4().hex
    first: RunningService | None = start_service(directory, own_database_url)
    try:
        api = Api(first.url, project)
        resp = api.post(
            "/types",
            {"volume_type": {"name": "files", "extra_specs": {"volume_backend_name": "files"}}},
        )
        assert resp.status_code == 200, resp.text
        vols_dir = first.volumes_dir

        def make(name: str, size: int = 1, **fields: object) -> dict:
            return api.create_volume(size=size, name=name, volume_type="files", **fields)

        kept = make("kept", size=2, metadata={"keep": "me"})
        write_at(vols_dir / f"volume-{kept['id']}", 0, b"kept data")
        write_at(vols_dir / f"volume-{kept['id']}", 2 * 1024**3 - 5, b"end!!")
        snap = snapshot(api, kept["id"], name="kept-snap", metadata={"s": "1"})
        write_at(vols_dir / f"volume-{kept['id']}", 0, b"KEPT DATA")
        clone = api.create_volume(size=2, snapshot_id=snap["id"], name="clone")
        done_but_creating = make("done-but-creating")
        write_at(vols_dir / f"volume-{done_but_creating['id']}", 0, b"made it")
        lost_creating = make("lost-creating")
        unplaced_creating = make("unplaced-creating")
        was_deleting = make("was-deleting")
        was_extending = make("was-extending")
        snap_creating = snapshot(api, kept["id"], name="snap-creating")
        doomed = make("doomed-parent")
        snap_deleting = snapshot(api, doomed["id"], name="snap-deleting")
        api.client.close()
    finally:
        first.stop()
        first = None

    # What a crash in the middle of work would have left behind.
    _set(own_database_url, done_but_creating["id"], status="creating")
    _set(own_database_url, lost_creating["id"], status="creating")
    (vols_dir / f"volume-{lost_creating['id']}").unlink()
    _set(
        own_database_url,
        unplaced_creating["id"],
        status="creating",
        host=None,
        provider_location=None,
    )
    (vols_dir / f"volume-{unplaced_creating['id']}").unlink()
    _set(own_database_url, was_deleting["id"], status="deleting")
    _set(own_database_url, was_extending["id"], status="extending", previous_status="available")
    _set_snapshot(own_database_url, snap_creating["id"], "creating")
    _set_snapshot(own_database_url, snap_deleting["id"], "deleting")

    second = start_service(directory, own_database_url)
    try:
        assert second.volumes_dir == vols_dir
        api = Api(second.url, project)
        # Untouched objects survive with their data.
        shown = api.get(f"/volumes/{kept['id']}").json()["volume"]
        assert (shown["name"], shown["size"], shown["status"]) == ("kept", 2, "available")
        assert shown["metadata"] == {"keep": "me"}
        assert shown["volume_type"] == "files"
        assert head_bytes(vols_dir / f"volume-{kept['id']}", 9) == b"KEPT DATA"
        assert read_at(vols_dir / f"volume-{kept['id']}", 2 * 1024**3 - 5, 5) == b"end!!"
        shown_snap = api.get(f"/snapshots/{snap['id']}").json()["snapshot"]
        assert (shown_snap["name"], shown_snap["status"]) == ("kept-snap", "available")
        assert shown_snap["metadata"] == {"s": "1"}
        assert api.get(f"/volumes/{clone['id']}").json()["volume"]["status"] == "available"
        assert head_bytes(vols_dir / f"volume-{clone['id']}", 9) == b"kept data"

        # Nothing stays creating: finished work is recognised, lost work is redone.
        recovered = _wait_status(
            api, f"/volumes/{done_but_creating['id']}", "volume", {"available"}
        )
        assert recovered["size"] == 1
        assert head_bytes(vols_dir / f"volume-{done_but_creating['id']}", 7) == b"made it"
        _wait_status(api, f"/volumes/{lost_creating['id']}", "volume", {"available"})
        assert (vols_dir / f"volume-{lost_creating['id']}").stat().st_size == 1024**3
        placed = _wait_status(api, f"/volumes/{unplaced_creating['id']}", "volume", {"available"})
        assert placed["os-vol-host-attr:host"] == "testhost@files#files"
        assert (vols_dir / f"volume-{unplaced_creating['id']}").stat().st_size == 1024**3

        # An interrupted delete is finished.
        api.wait_gone(f"/volumes/{was_deleting['id']}")
        assert not (vols_dir / f"volume-{was_deleting['id']}").exists()

        # An interrupted extend cannot be proven done: error status and a user message.
        failed = _wait_status(
            api, f"/volumes/{was_extending['id']}", "volume", {"error_extending", "available"}
        )
        assert failed["status"] == "error_extending"
        messages = api.get(f"/messages?resource_uuid={was_extending['id']}", version="3.3")
        assert messages.status_code == 200
        texts = [m["user_message"] for m in messages.json()["messages"]]
        assert texts and all("restart" in t for t in texts), texts

        # Snapshots: a finished create is recognised, an interrupted delete is finished.
        _wait_status(api, f"/snapshots/{snap_creating['id']}", "snapshot", {"available"})
        api.wait_gone(f"/snapshots/{snap_deleting['id']}")
        assert not any(
            p.name.endswith(f"snapshot-{snap_deleting['id']}") for p in vols_dir.iterdir()
        )

        # Nothing in the project is left in a transitional status.
        for volume in api.get("/volumes/detail").json()["volumes"]:
            assert volume["status"] in ("available", "error_extending"), volume
        for snap_body in api.get("/snapshots/detail").json()["snapshots"]:
            assert snap_body["status"] == "available", snap_body

        # The restarted service works normally.
        new_snap = snapshot(api, kept["id"], name="after-restart")
        again = api.create_volume(size=2, snapshot_id=new_snap["id"])
        assert head_bytes(vols_dir / f"volume-{again['id']}", 9) == b"KEPT DATA"
        assert api.delete(f"/volumes/{lost_creating['id']}").status_code == 202
        api.wait_gone(f"/volumes/{lost_creating['id']}")
        assert not (vols_dir / f"volume-{lost_creating['id']}").exists()
        api.client.close()
    finally:
        second.stop()


def test_restart_without_changes_is_idempotent(tmp_path: Path, own_database_url: str) -> None:
    directory = tmp_path / "svc"
    directory.mkdir()
    project = uuid.uuid4().hex
    first = start_service(directory, own_database_url)
    try:
        api = Api(first.url, project)
        volume = api.create_volume(size=1, name="stable")
        api.client.close()
    finally:
        first.stop()
    for _ in range(2):
        running = start_service(directory, own_database_url)
        try:
            api = Api(running.url, project)
            shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
            assert (shown["name"], shown["status"]) == ("stable", "available")
            default = api.get("/types/default").json()["volume_type"]
            assert default["name"] == "__DEFAULT__"
            names = [t["name"] for t in api.get("/types?is_public=none").json()["volume_types"]]
            assert names.count("__DEFAULT__") == 1
            api.client.close()
        finally:
            running.stop()
