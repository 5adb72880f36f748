"""os-migrate_volume: admin only, Cinder's refusals, and driver-assisted moves between
file backends (same filesystem: rename; another filesystem: copy) with the data checked.

Runs on a service of its own (embedded) with three file backends, two in one
directory tree and one on /dev/shm (another filesystem), plus a small memory
backend, on a database of its own (the session's database holds other services'
backends, which its scheduler would otherwise place volumes on).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cbhelpers import assert_fault

from cinderblock.config import load_settings
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.embedded import build
from cinderblock.volume.migrate import DEST_KEY, DEST_LOCATION_KEY
from cinderblock.volume.recovery import recover_backend
from conftest import Api, RunningService, free_port, scratch_database, serve_in_thread

MiB = 1024**2
MARK = b"migrated data \x01\x02\x03" * 100
MARK_AT = 5 * MiB
SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def mig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not SHM.is_dir():
        pytest.skip("no /dev/shm for a second filesystem")
    base = tmp_path_factory.mktemp("migrate")
    with scratch_database(base, "cb_migrate") as database_url:
        yield from _migration_service(base, database_url)


def _migration_service(base: Path, database_url: str) -> Iterator[dict[str, Any]]:
    host = f"mig{uuid.uuid4().hex[:8]}"
    other_fs = SHM / f"cb-migrate-{uuid.uuid4().hex[:8]}"
    # fd: a file backend the capacity filter always refuses (all of it reserved)
    dirs = {"fa": base / "fa", "fb": base / "fb", "fc": other_fs, "fd": base / "fd"}
    port = free_port()
    config = base / "cinderblock.conf"
    sections = "".join(
        f"\n[{name}]\nvolume_driver = file\nvolume_backend_name = {name}\n"
        f"file_volumes_dir = {path}\n" + ("reserved_percentage = 100\n" if name == "fd" else "")
        for name, path in dirs.items()
    )
    config.write_text(
        f"""[DEFAULT]
host = {host}
enabled_backends = fa, fb, fc, fd, mem
bind_host = 127.0.0.1
bind_port = {port}
state_path = {base}
report_interval = 2

[database]
connection = {database_url}
{sections}
[mem]
volume_driver = memory
volume_backend_name = mem
memory_capacity_gb = 2
"""
    )
    service = build(load_settings(config))
    server, thread = serve_in_thread(service.app, port)
    running = RunningService(f"http://127.0.0.1:{port}", service, server, thread, base, config)
    try:
        yield {"running": running, "host": host, "dirs": dirs}
    finally:
        running.stop()
        time.sleep(1.5)  # a coalesced stats refresh may still be due (manager.stats_changed)
        shutil.rmtree(other_fs, ignore_errors=True)


@pytest.fixture
def admin(mig: dict[str, Any]) -> Iterator[Api]:
    client = Api(mig["running"].url, uuid.uuid4().hex)
    yield client
    client.client.close()


def _migrate(api: Api, volume_id: str, host: str, **extra: Any) -> Any:
    return api.post(f"/volumes/{volume_id}/action", {"os-migrate_volume": {"host": host, **extra}})


def _backend(volume: dict[str, Any]) -> str:
    return volume["os-vol-host-attr:host"].partition("@")[2].partition("#")[0]


def _on_file_backend(api: Api) -> dict[str, Any]:
    volume = api.create_volume(1)
    assert _backend(volume) in ("fa", "fb", "fc"), volume  # mem is too small to win
    return volume


def _wait_migration(api: Api, volume_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        volume = api.get(f"/volumes/{volume_id}").json()["volume"]
        if volume["migration_status"] in ("success", "error"):
            return volume
        assert time.monotonic() < deadline, volume
        time.sleep(0.05)


def _refused(resp: Any, fragment: str) -> None:
    assert fragment in assert_fault(resp, 400)


def test_member_is_forbidden(mig: dict[str, Any], admin: Api) -> None:
    volume = _on_file_backend(admin)
    member = Api(admin.base, admin.project, user="demo")
    try:
        resp = _migrate(member, volume["id"], f"{mig['host']}@fb")
        assert_fault(resp, 403)
    finally:
        member.client.close()
    assert admin.get(f"/volumes/{volume['id']}").json()["volume"]["migration_status"] is None


def test_refusals(mig: dict[str, Any], admin: Api) -> None:
    host = mig["host"]
    volume = _on_file_backend(admin)
    vid, here = volume["id"], _backend(volume)
    other = "fb" if here != "fb" else "fa"

    resp = _migrate(admin, vid, volume["os-vol-host-attr:host"])
    assert_fault(
        resp, 400, "Invalid host: Destination host must be different than the current host."
    )
    _refused(_migrate(admin, vid, f"{host}@{here}"), "must be different")
    resp = _migrate(admin, vid, "nohost@nothing")
    assert_fault(resp, 400, "Invalid host: No available service named 'nohost@nothing'")
    # host and cluster together (3.16+), or neither
    both = {"os-migrate_volume": {"host": f"{host}@{other}", "cluster": "c"}}
    assert_fault(admin.post(f"/volumes/{vid}/action", both), 400)
    assert_fault(admin.post(f"/volumes/{vid}/action", {"os-migrate_volume": {}}), 400)
    cluster = {"os-migrate_volume": {"cluster": f"{host}@{other}"}}
    _refused(admin.post(f"/volumes/{vid}/action", cluster), "No available service named")
    # before 3.16 there is no cluster: host is required
    resp = admin.post(f"/volumes/{vid}/action", cluster, version="3.15")
    assert_fault(resp, 400)
    for bad in (
        {"os-migrate_volume": {"host": f"{host}@{other}", "lock_volume": "maybe"}},
        {"os-migrate_volume": None},
        {"os-migrate_volume": {"host": 5}},
        {"os-migrate_volume": {"host": ""}},
        {"os-migrate_volume": {"host": "x" * 256}},
        {"os-migrate_volume": {"host": f"{host}@{other}", "extra": 1}},
    ):
        assert_fault(admin.post(f"/volumes/{vid}/action", bad), 400)

    def reset(**fields: str) -> None:
        resp = admin.post(f"/volumes/{vid}/action", {"os-reset_status": fields})
        assert resp.status_code == 202, resp.text

    reset(status="error")
    _refused(_migrate(admin, vid, f"{host}@{other}"), "must be available or in-use")
    reset(status="available", migration_status="migrating")
    _refused(_migrate(admin, vid, f"{host}@{other}"), "active migration")
    reset(migration_status="none")

    snap = admin.post("/snapshots", {"snapshot": {"volume_id": vid, "name": "s"}})
    assert snap.status_code == 202, snap.text
    admin.wait_snapshot(snap.json()["snapshot"]["id"])
    _refused(_migrate(admin, vid, f"{host}@{other}"), "must not have snapshots")

    attached = _on_file_backend(admin)
    for action, args in (
        ("os-reserve", {}),
        ("os-attach", {"mountpoint": "/mnt/data", "host_name": "h1"}),
    ):
        resp = admin.post(f"/volumes/{attached['id']}/action", {action: args})
        assert resp.status_code == 202, resp.text
    assert admin.wait_volume(attached["id"], ("in-use",))
    _refused(_migrate(admin, attached["id"], f"{host}@mem"), "in-use")

    after = admin.get(f"/volumes/{vid}").json()["volume"]
    assert after["os-vol-host-attr:host"] == volume["os-vol-host-attr:host"]
    assert after["status"] == "available" and after["migration_status"] is None


def _write_mark(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(MARK_AT)
        f.write(MARK)


def _check_moved(path: Path, gone: Path) -> None:
    assert not gone.exists()
    st = path.stat()
    assert st.st_size == 1024 * MiB
    assert st.st_blocks * 512 < 64 * MiB  # the holes stayed holes
    with path.open("rb") as f:
        assert f.read(4096) == bytes(4096)
        f.seek(MARK_AT)
        assert f.read(len(MARK)) == MARK


def test_file_to_file_same_and_other_filesystem(mig: dict[str, Any], admin: Api) -> None:
    host, dirs = mig["host"], mig["dirs"]
    volume = _on_file_backend(admin)
    vid, here = volume["id"], _backend(volume)
    name = f"volume-{vid}"
    _write_mark(dirs[here] / name)
    # Two hops: one on the same filesystem (fa <-> fb, a rename), one to another (fc, a copy).
    hops = ["fb" if here == "fa" else "fa", "fc"] if here != "fc" else ["fa", "fb"]
    for dest in hops:
        resp = _migrate(admin, vid, f"{host}@{dest}", lock_volume=True)
        assert resp.status_code == 202, resp.text
        moved = _wait_migration(admin, vid)
        assert moved["migration_status"] == "success", moved
        assert moved["os-vol-host-attr:host"] == f"{host}@{dest}#{dest}"
        assert moved["os-vol-mig-status-attr:migstat"] == "success"
        assert moved["status"] == "available"  # back from maintenance
        _check_moved(dirs[dest] / name, dirs[here] / name)
        assert not [p for p in dirs[dest].iterdir() if p.name.startswith(".tmp-")]
        here = dest
    # The volume works where it is now: extend, then delete removes the right file.
    resp = admin.post(f"/volumes/{vid}/action", {"os-extend": {"new_size": 2}})
    assert resp.status_code == 202, resp.text
    admin.wait_volume(vid)
    assert (dirs[here] / name).stat().st_size == 2048 * MiB
    assert admin.delete(f"/volumes/{vid}").status_code == 202
    admin.wait_gone(f"/volumes/{vid}")
    assert not (dirs[here] / name).exists()


def test_file_to_memory_fails_and_leaves_the_volume(mig: dict[str, Any], admin: Api) -> None:
    host, dirs = mig["host"], mig["dirs"]
    volume = _on_file_backend(admin)
    vid, here = volume["id"], _backend(volume)
    _write_mark(dirs[here] / f"volume-{vid}")
    resp = _migrate(admin, vid, f"{host}@mem")
    assert resp.status_code == 202, resp.text
    after = _wait_migration(admin, vid)
    assert after["migration_status"] == "error"
    assert after["status"] == "available"
    assert after["os-vol-host-attr:host"] == volume["os-vol-host-attr:host"]
    with (dirs[here] / f"volume-{vid}").open("rb") as f:
        f.seek(MARK_AT)
        assert f.read(len(MARK)) == MARK
    messages = admin.get("/messages", version="3.3").json()["messages"]
    mine = [m for m in messages if m["resource_uuid"] == vid]
    assert mine, messages
    assert "migrate volume" in mine[0]["user_message"]
    assert "cannot move the volume" in mine[0]["user_message"]
    # force_host_copy asks for the generic copy, which does not exist: refused the same way
    resp = _migrate(admin, vid, f"{host}@{'fb' if here != 'fb' else 'fa'}", force_host_copy=True)
    assert resp.status_code == 202, resp.text
    assert _wait_migration(admin, vid)["migration_status"] == "error"
    assert (dirs[here] / f"volume-{vid}").exists()


def test_destination_without_room_is_refused_by_the_scheduler(
    mig: dict[str, Any], admin: Api
) -> None:
    """fd is a file backend the driver could reach, but the placement filters refuse it
    (all its space is reserved): the migration fails before the driver is asked."""
    volume = _on_file_backend(admin)
    vid, here = volume["id"], _backend(volume)
    _write_mark(mig["dirs"][here] / f"volume-{vid}")
    resp = _migrate(admin, vid, f"{mig['host']}@fd", lock_volume=True)
    assert resp.status_code == 202, resp.text
    after = _wait_migration(admin, vid)
    assert after["migration_status"] == "error"
    assert after["status"] == "available"  # out of maintenance again
    assert after["os-vol-host-attr:host"] == volume["os-vol-host-attr:host"]
    with (mig["dirs"][here] / f"volume-{vid}").open("rb") as f:
        f.seek(MARK_AT)
        assert f.read(len(MARK)) == MARK
    assert not (mig["dirs"]["fd"] / f"volume-{vid}").exists()
    messages = admin.get("/messages", version="3.3").json()["messages"]
    [message] = [m for m in messages if m["resource_uuid"] == vid]
    assert message["user_message"].startswith("migrate volume: ")
    assert message["user_message"].startswith(
        "migrate volume: The destination backend cannot take the volume: "
    )


def test_crash_recovery_finds_where_the_volume_is(mig: dict[str, Any], admin: Api) -> None:
    """A restart of the source service with a migration in flight: a volume the
    destination holds follows it; one the source still holds stays, migration error."""
    running: RunningService = mig["running"]
    host, dirs = mig["host"], mig["dirs"]
    managers = running.service.managers
    first, second, third, fourth = (_on_file_backend(admin) for _ in range(4))
    for volume in (first, second, third, fourth):
        here = _backend(volume)
        dest = "fb" if here == "fa" else "fa"
        manager = managers[f"{host}@{here}"]
        stats = managers[f"{host}@{dest}"].stats()
        with manager.db.session() as session:
            # third: accepted (maintenance, starting), the source never began
            values = (
                {"migration_status": "starting", "status": "maintenance"}
                if volume is third
                else {"migration_status": "migrating"}
            )
            volumes_repo.compare_and_swap(session, volume["id"], {}, values)
            volumes_repo.set_admin_metadata(
                session,
                volume["id"],
                {DEST_KEY: f"{host}@{dest}#{dest}", DEST_LOCATION_KEY: stats["location_info"]},
            )
        if volume is first:  # the move itself had happened before the crash
            name = f"volume-{volume['id']}"
            shutil.move(dirs[here] / name, dirs[dest] / name)
        if volume is fourth:  # copied, the source not yet deleted
            name = f"volume-{volume['id']}"
            with (dirs[dest] / name).open("xb") as f:  # the (empty, sparse) volume's copy
                f.truncate((dirs[here] / name).stat().st_size)
        recover_backend(manager)
    moved = admin.get(f"/volumes/{first['id']}").json()["volume"]
    assert moved["migration_status"] == "success"
    assert _backend(moved) != _backend(first)
    stayed = admin.get(f"/volumes/{second['id']}").json()["volume"]
    assert stayed["migration_status"] == "error"
    assert stayed["os-vol-host-attr:host"] == second["os-vol-host-attr:host"]
    assert (dirs[_backend(second)] / f"volume-{second['id']}").exists()
    copied = admin.get(f"/volumes/{fourth['id']}").json()["volume"]
    assert copied["migration_status"] == "success"
    assert _backend(copied) != _backend(fourth)
    assert not (dirs[_backend(fourth)] / f"volume-{fourth['id']}").exists()
    assert (dirs[_backend(copied)] / f"volume-{fourth['id']}").exists()
    untouched = admin.get(f"/volumes/{third['id']}").json()["volume"]
    assert untouched["migration_status"] == "error"
    assert untouched["status"] == "available"
    assert untouched["os-vol-host-attr:host"] == third["os-vol-host-attr:host"]


def test_a_migrating_volume_is_neither_extended_nor_snapshotted(
    mig: dict[str, Any], admin: Api
) -> None:
    volume = _on_file_backend(admin)
    manager = mig["running"].service.managers[f"{mig['host']}@{_backend(volume)}"]
    with manager.db.session() as session:  # as the source service sets it while it moves
        volumes_repo.compare_and_swap(session, volume["id"], {}, {"migration_status": "migrating"})
    resp = admin.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}})
    _refused(resp, "cannot be extended while it is migrating")
    resp = admin.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    _refused(resp, "Snapshot cannot be created while volume is migrating.")
    shown = admin.get(f"/volumes/{volume['id']}").json()["volume"]
    assert shown["size"] == 1 and shown["status"] == "available"
    assert admin.get(f"/snapshots?volume_id={volume['id']}").json()["snapshots"] == []
    with manager.db.session() as session:
        volumes_repo.compare_and_swap(session, volume["id"], {}, {"migration_status": "success"})
    resp = admin.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}})
    assert resp.status_code == 202, resp.text
    assert admin.wait_volume(volume["id"])["size"] == 2
