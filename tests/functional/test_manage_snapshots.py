"""Manage existing snapshots, unmanage rules for volumes and snapshots, and the memory
backend's foreign objects (listing, in-use refusal, adopt and give back)."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cbhelpers import (
    UNKNOWN_ID,
    assert_fault,
    backend_type,
    file_volume,
    mem_volume,
    read_at,
    write_at,
)

from conftest import Api, RunningService

GiB = 1024**3
MiB = 1024**2
FILES_HOST = "testhost@files"
MEM_HOST = "testhost@mem"
SNAP_SUMMARY_KEYS = {"reference", "size", "safe_to_manage", "source_reference"}
SNAP_DETAIL_KEYS = SNAP_SUMMARY_KEYS | {"reason_not_safe", "cinder_id", "extra_info"}
UNMANAGE_VOLUME_REFUSED = (
    "Invalid volume: Volume status must be available or error or error_restoring or "
    "error_extending or error_managing and must not be migrating, attached, belong to a group, "
    "have snapshots, awaiting a transfer, or be disassociated from snapshots after volume "
    "transfer."
)
UNMANAGE_SNAPSHOT_REFUSED = (
    "Invalid snapshot: Snapshot status must be available or error and must not be part of a group."
)


def sparse_file(path: Path, size: int, marks: dict[int, bytes]) -> None:
    with open(path, "xb") as f:
        f.truncate(size)
    for offset, data in marks.items():
        write_at(path, offset, data)


def assert_marks(path: Path, marks: dict[int, bytes]) -> None:
    for offset, data in marks.items():
        assert read_at(path, offset, len(data)) == data, (path, offset)


def messages_for(api: Api, resource_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/messages?resource_uuid={resource_id}", version="3.3")
    assert resp.status_code == 200, resp.text
    return resp.json()["messages"]


def manage_volume(api: Api, source: str, host: str = FILES_HOST, **fields: Any) -> httpx.Response:
    body = {"volume": {"host": host, "ref": {"source-name": source}, **fields}}
    return api.post("/manageable_volumes", body)


def manage_snapshot(api: Api, volume_id: str, source: Any, **fields: Any) -> httpx.Response:
    ref = source if not isinstance(source, str) else {"source-name": source}
    body = {"snapshot": {"volume_id": volume_id, "ref": ref, **fields}}
    return api.post("/manageable_snapshots", body)


def action(api: Api, kind: str, resource_id: str, body: dict[str, Any]) -> httpx.Response:
    return api.post(f"/{kind}/{resource_id}/action", body)


def reset(api: Api, kind: str, resource_id: str, **fields: str) -> None:
    resp = action(api, kind, resource_id, {"os-reset_status": fields})
    assert resp.status_code == 202, resp.text


def snap_listing(api: Api, host: str = FILES_HOST, detail: bool = True) -> list[dict[str, Any]]:
    path = "/manageable_snapshots/detail" if detail else "/manageable_snapshots"
    resp = api.get(f"{path}?host={host}")
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"manageable-snapshots"}
    return resp.json()["manageable-snapshots"]


def entry_named(entries: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    found = [e for e in entries if e["reference"] == {"source-name": name}]
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.fixture
def adopted(api: Api, cinder: RunningService) -> dict[str, Any]:
    """A foreign 3 GiB file managed as a volume: {volume, original, marks}."""
    original = f"host-vol-{uuid.uuid4().hex[:10]}"
    marks = {0: b"volume-head", 2 * GiB + 5: b"volume-tail"}
    sparse_file(cinder.volumes_dir / original, 3 * GiB, marks)
    resp = manage_volume(api, original, volume_type=backend_type(api, "files")["name"])
    assert resp.status_code == 202, resp.text
    volume = api.wait_volume(resp.json()["volume"]["id"])
    assert volume["size"] == 3
    return {"volume": volume, "original": original, "marks": marks}


# --- manage a snapshot file ------------------------------------------------------------------
def test_manage_a_snapshot_file_then_unmanage_it_and_its_volume(
    api: Api, cinder: RunningService, adopted: dict[str, Any]
) -> None:
    d = cinder.volumes_dir
    volume = adopted["volume"]
    volume_file = f"volume-{volume['id']}"
    foreign = f"{volume_file}@foreign-{uuid.uuid4().hex[:6]}"
    marks = {0: b"snap-head", MiB + 3: b"snap-middle", GiB + 7: b"snap-tail"}
    sparse_file(d / foreign, GiB + GiB // 2, marks)

    # The listing offers it, with its parent.
    summary = entry_named(snap_listing(api, detail=False), foreign)
    assert summary is not None and set(summary) == SNAP_SUMMARY_KEYS
    entry = entry_named(snap_listing(api), foreign)
    assert entry is not None and set(entry) == SNAP_DETAIL_KEYS
    assert entry["source_reference"] == {"source-name": volume_file}
    assert entry["size"] == 2
    assert entry["safe_to_manage"] is True
    assert entry["cinder_id"] is None
    # Snapshot files are not volumes.
    resp = api.get(f"/manageable_volumes/detail?host={FILES_HOST}")
    assert entry_named(resp.json()["manageable-volumes"], foreign) is None

    resp = manage_snapshot(
        api, volume["id"], foreign, name="adopted-snap", description="d", metadata={"a": "b"}
    )
    assert resp.status_code == 202, resp.text
    view = resp.json()["snapshot"]
    assert view["status"] == "creating"
    assert view["size"] == 3  # the parent's size until the driver has answered
    assert view["volume_id"] == volume["id"]
    assert view["name"] == "adopted-snap"
    assert view["metadata"] == {"a": "b"}
    snap = api.wait_snapshot(view["id"])
    assert snap["size"] == 2
    assert snap["name"] == "adopted-snap"
    renamed = d / f"{volume_file}@snapshot-{snap['id']}"
    assert renamed.is_file()
    assert not (d / foreign).exists()
    assert_marks(renamed, marks)
    entry = entry_named(snap_listing(api), renamed.name)
    assert entry is not None
    assert entry["safe_to_manage"] is False
    assert entry["reason_not_safe"] == "already managed"
    assert entry["cinder_id"] == snap["id"]
    assert entry_named(snap_listing(api), foreign) is None

    # The adopted snapshot behaves like any: a volume made from it has its data.
    clone = api.create_volume(
        size=3, snapshot_id=snap["id"], volume_type=backend_type(api, "files")["name"]
    )
    assert_marks(d / f"volume-{clone['id']}", marks)
    assert api.delete(f"/volumes/{clone['id']}").status_code == 202
    api.wait_gone(f"/volumes/{clone['id']}")

    # A volume with a snapshot cannot be unmanaged.
    resp = action(api, "volumes", volume["id"], {"os-unmanage": {}})
    assert_fault(resp, 400, UNMANAGE_VOLUME_REFUSED)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["status"] == "available"

    # Unmanage the snapshot: row gone, file back under its name with its data.
    resp = action(api, "snapshots", snap["id"], {"os-unmanage": {}})
    assert resp.status_code == 202, resp.text
    assert resp.content == b""
    api.wait_gone(f"/snapshots/{snap['id']}")
    assert (d / foreign).is_file()
    assert not renamed.exists()
    assert_marks(d / foreign, marks)
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["status"] == "available"

    # Now the volume can go; its snapshot file follows it back to the original name.
    resp = action(api, "volumes", volume["id"], {"os-unmanage": {}})
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/volumes/{volume['id']}")
    original = adopted["original"]
    assert_marks(d / original, adopted["marks"])
    moved = f"{original}@{foreign.split('@', 1)[1]}"
    assert (d / moved).is_file()
    assert_marks(d / moved, marks)
    assert not [p for p in os.listdir(d) if p.startswith(volume_file)]
    entry = entry_named(snap_listing(api), moved)
    assert entry is not None and entry["source_reference"] == {"source-name": original}


def test_legacy_snapshot_path_and_microversions(
    api: Api, cinder: RunningService, adopted: dict[str, Any]
) -> None:
    volume = adopted["volume"]
    foreign = f"volume-{volume['id']}@legacy"
    sparse_file(cinder.volumes_dir / foreign, GiB, {0: b"x"})
    body = {"snapshot": {"volume_id": volume["id"], "ref": {"source-name": foreign}}}
    for version in ("3.0", "3.7"):
        resp = api.post("/manageable_snapshots", body, version=version)
        assert_fault(resp, 404, "The resource could not be found.")
        assert_fault(api.get(f"/manageable_snapshots?host={FILES_HOST}", version=version), 404)
    resp = api.get(f"/os-snapshot-manage/detail?host={FILES_HOST}", version="3.0")
    assert resp.status_code == 200, resp.text
    assert entry_named(resp.json()["manageable-snapshots"], foreign) is not None
    # A bare string ref is accepted for snapshots.
    resp = api.post(
        "/os-snapshot-manage",
        {"snapshot": {"volume_id": volume["id"], "ref": foreign}},
        version="3.0",
    )
    assert resp.status_code == 202, resp.text
    snap = api.wait_snapshot(resp.json()["snapshot"]["id"])
    assert snap["size"] == 1
    resp = api.post(f"/snapshots/{snap['id']}/action", {"os-unmanage": None}, version="3.0")
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/snapshots/{snap['id']}")
    assert (cinder.volumes_dir / foreign).is_file()


def test_snapshot_manage_refusals(
    api: Api, member_api: Api, cinder: RunningService, adopted: dict[str, Any]
) -> None:
    volume = adopted["volume"]
    foreign = f"volume-{volume['id']}@refused"
    sparse_file(cinder.volumes_dir / foreign, GiB, {0: b"r"})
    good = {"volume_id": volume["id"], "ref": {"source-name": foreign}}
    for bad in (
        {"volume_id": volume["id"]},
        {"ref": {"source-name": foreign}},
        {**good, "volume_id": "not-a-uuid"},
        {**good, "extra": 1},
        {**good, "ref": None},
        {**good, "ref": 5},
        {**good, "metadata": {"k": 5}},
        {**good, "ref": {"source-name": "s" * 256}},
        {**good, "ref": ""},
    ):
        assert_fault(api.post("/manageable_snapshots", {"snapshot": bad}), 400)
    assert_fault(api.post("/manageable_snapshots", {"snap": good}), 400)
    assert_fault(manage_snapshot(api, UNKNOWN_ID, foreign), 404)
    assert_fault(manage_snapshot(member_api, volume["id"], foreign), 403)
    # Another project's admin view is fine, but its volume must be visible to it.
    other = Api(api.base, uuid.uuid4().hex, user="demo")
    try:
        assert manage_snapshot(other, volume["id"], foreign).status_code in (403, 404)
    finally:
        other.client.close()
    reset(api, "volumes", volume["id"], status="error")
    assert_fault(
        manage_snapshot(api, volume["id"], foreign),
        400,
        f"Invalid volume: Volume {volume['id']} status must be available, in-use, but current "
        "status is: error",
    )
    reset(api, "volumes", volume["id"], status="available")
    assert api.get("/snapshots").json()["snapshots"] == []
    assert (cinder.volumes_dir / foreign).is_file()


@pytest.mark.parametrize(
    "kind",
    ["nothing", "another_volumes_snapshot", "the_volume_itself", "outside", "not_a_snapshot"],
)
def test_bad_snapshot_references_end_in_error_with_a_message(
    api: Api, cinder: RunningService, adopted: dict[str, Any], kind: str
) -> None:
    d = cinder.volumes_dir
    volume = adopted["volume"]
    other = file_volume(api)
    foreign = f"volume-{other['id']}@mine"
    sparse_file(d / foreign, GiB, {0: b"o"})
    plain = f"plain-{uuid.uuid4().hex[:6]}"
    sparse_file(d / plain, GiB, {0: b"p"})
    name = {
        "nothing": f"volume-{volume['id']}@ghost",
        "another_volumes_snapshot": foreign,
        "the_volume_itself": f"volume-{volume['id']}",
        "outside": f"../volumes/{foreign}",
        "not_a_snapshot": plain,
    }[kind]
    cinder.wait_idle()
    before = {p: os.lstat(d / p) for p in os.listdir(d)}
    resp = manage_snapshot(api, volume["id"], name)
    assert resp.status_code == 202, resp.text
    snap = api.wait_snapshot(resp.json()["snapshot"]["id"], statuses=("error", "available"))
    assert snap["status"] == "error"
    msgs = messages_for(api, snap["id"])
    assert len(msgs) == 1, msgs
    assert msgs[0]["resource_type"] == "VOLUME_SNAPSHOT"
    assert msgs[0]["resource_uuid"] == snap["id"]
    assert msgs[0]["user_message"].startswith("manage existing snapshot"), msgs
    cinder.wait_idle()
    assert {p: os.lstat(d / p) for p in os.listdir(d)} == before
    # An error snapshot can be unmanaged (or deleted) without touching files.
    resp = action(api, "snapshots", snap["id"], {"os-unmanage": {}})
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/snapshots/{snap['id']}")
    cinder.wait_idle()
    assert {p: os.lstat(d / p) for p in os.listdir(d)} == before


def test_one_snapshot_file_is_adopted_once(api: Api, cinder: RunningService, adopted: dict) -> None:
    volume = adopted["volume"]
    foreign = f"volume-{volume['id']}@twice"
    sparse_file(cinder.volumes_dir / foreign, GiB, {0: b"t"})
    first = manage_snapshot(api, volume["id"], foreign)
    second = manage_snapshot(api, volume["id"], foreign)
    assert first.status_code == 202, first.text
    ids = [first.json()["snapshot"]["id"]]
    if second.status_code == 202:
        ids.append(second.json()["snapshot"]["id"])
    else:
        assert foreign in assert_fault(second, 400)
    finals = [api.wait_snapshot(i, statuses=("available", "error"))["status"] for i in ids]
    assert finals.count("available") == 1, finals


# --- unmanage rules ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"status": "extending"},
        {"status": "error_deleting"},
        {"status": "creating"},
        {"status": "maintenance"},
        {"status": "awaiting-transfer"},
        {"status": "error_backing-up"},
        {"attach_status": "attached"},
        {"migration_status": "migrating"},
    ],
)
def test_unmanage_refused_for_busy_volumes(
    api: Api, cinder: RunningService, fields: dict[str, str]
) -> None:
    volume = file_volume(api)
    path = cinder.volumes_dir / f"volume-{volume['id']}"
    reset(api, "volumes", volume["id"], **fields)
    shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
    resp = action(api, "volumes", volume["id"], {"os-unmanage": {}})
    assert_fault(resp, 400, UNMANAGE_VOLUME_REFUSED)
    cinder.wait_idle()
    after = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert after["status"] == shown["status"]
    assert path.is_file()
    # Back to a quiet state, it can go.
    reset(
        api,
        "volumes",
        volume["id"],
        status="available",
        attach_status="detached",
        migration_status="none",
    )
    assert action(api, "volumes", volume["id"], {"os-unmanage": {}}).status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")
    assert path.is_file()  # unmanage never deletes data


@pytest.mark.parametrize("status", ["error", "error_extending", "error_restoring"])
def test_unmanage_allowed_from_error_states_and_keeps_the_file(
    api: Api, cinder: RunningService, status: str
) -> None:
    volume = file_volume(api)
    name = f"volume-{volume['id']}"
    write_at(cinder.volumes_dir / name, 4096, b"keep me")
    reset(api, "volumes", volume["id"], status=status)
    assert action(api, "volumes", volume["id"], {"os-unmanage": {}}).status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")
    assert read_at(cinder.volumes_dir / name, 4096, 7) == b"keep me"
    # Cinder no longer knows it: it is offered for managing, and can be managed back.
    resp = api.get(f"/manageable_volumes/detail?host={FILES_HOST}")
    entry = entry_named(resp.json()["manageable-volumes"], name)
    assert entry is not None and entry["safe_to_manage"] is True and entry["cinder_id"] is None
    resp = manage_volume(api, name)
    assert resp.status_code == 202, resp.text
    again = api.wait_volume(resp.json()["volume"]["id"])
    assert read_at(cinder.volumes_dir / f"volume-{again['id']}", 4096, 7) == b"keep me"


@pytest.mark.parametrize("status", ["creating", "error_deleting", "unmanaging", "backing-up"])
def test_unmanage_snapshot_refused_unless_available_or_error(
    api: Api, cinder: RunningService, status: str
) -> None:
    volume = file_volume(api)
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    snap = api.wait_snapshot(resp.json()["snapshot"]["id"])
    files_before = set(os.listdir(cinder.volumes_dir))
    reset(api, "snapshots", snap["id"], status=status)
    assert_fault(
        action(api, "snapshots", snap["id"], {"os-unmanage": {}}), 400, UNMANAGE_SNAPSHOT_REFUSED
    )
    assert api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == status
    reset(api, "snapshots", snap["id"], status="error")
    assert action(api, "snapshots", snap["id"], {"os-unmanage": {}}).status_code == 202
    api.wait_gone(f"/snapshots/{snap['id']}")
    assert set(os.listdir(cinder.volumes_dir)) == files_before


def test_unmanage_snapshot_checks(api: Api, member_api: Api) -> None:
    assert_fault(action(api, "snapshots", UNKNOWN_ID, {"os-unmanage": {}}), 404)
    volume = mem_volume(api)
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    snap = api.wait_snapshot(resp.json()["snapshot"]["id"])
    assert_fault(action(member_api, "snapshots", snap["id"], {"os-unmanage": {}}), 403)
    assert_fault(action(api, "snapshots", snap["id"], {"os-unmanage": {}, "x": 1}), 400)
    assert api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"


# --- memory backend --------------------------------------------------------------------------
@pytest.fixture
def mem_driver(cinder: RunningService) -> Any:
    return cinder.service.managers["testhost@mem"].driver


def test_memory_backend_foreign_volumes(api: Api, mem_driver: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    sizes = {f"mem-{tag}-{i}": (i + 1) * GiB - (0 if i % 2 else 12345) for i in range(5)}
    busy = f"mem-{tag}-2"
    for name, size in sizes.items():
        mem_driver.seed_foreign_volume(name, size, in_use=name == busy)
    mem_driver.write(f"mem-{tag}-0", 1000, b"memory data")
    resp = api.get(f"/manageable_volumes/detail?host={MEM_HOST}&sort=reference:asc")
    assert resp.status_code == 200, resp.text
    mine = [e for e in resp.json()["manageable-volumes"] if e["reference"]["source-name"] in sizes]
    assert [e["reference"]["source-name"] for e in mine] == sorted(sizes)
    for entry in mine:
        name = entry["reference"]["source-name"]
        assert entry["size"] == -(-sizes[name] // GiB)
        assert entry["cinder_id"] is None
        if name == busy:
            assert entry["safe_to_manage"] is False
            assert entry["reason_not_safe"] == "volume in use"
        else:
            assert entry["safe_to_manage"] is True, entry
            assert entry["reason_not_safe"] is None
    # Managing the busy one fails with a message; the object stays where it was.
    resp = manage_volume(api, busy, host=MEM_HOST)
    assert resp.status_code == 202, resp.text
    failed = api.wait_volume(resp.json()["volume"]["id"], statuses=("error",))
    msgs = messages_for(api, failed["id"])
    assert len(msgs) == 1 and "in use" in msgs[0]["user_message"], msgs
    assert busy in mem_driver.object_names()
    # A free one is adopted: renamed, size rounded up, data kept; unmanage gives it back.
    name = f"mem-{tag}-0"
    resp = manage_volume(api, name, host=MEM_HOST, volume_type=backend_type(api, "mem")["name"])
    assert resp.status_code == 202, resp.text
    volume = api.wait_volume(resp.json()["volume"]["id"])
    assert volume["size"] == 1
    assert volume["os-vol-host-attr:host"] == f"{MEM_HOST}#mem"
    names = mem_driver.object_names()
    assert name not in names and f"volume-{volume['id']}" in names
    assert mem_driver.read(f"volume-{volume['id']}", 1000, 11) == b"memory data"
    resp = api.get(f"/manageable_volumes/detail?host={MEM_HOST}")
    entry = entry_named(resp.json()["manageable-volumes"], f"volume-{volume['id']}")
    assert entry is not None and entry["cinder_id"] == volume["id"]
    # Foreign snapshot of the adopted volume, managed too.
    snap_name = mem_driver.seed_foreign_snapshot(f"volume-{volume['id']}", "s1", GiB // 2)
    entries = snap_listing(api, host=MEM_HOST)
    entry = entry_named(entries, snap_name)
    assert entry is not None
    assert entry["source_reference"] == {"source-name": f"volume-{volume['id']}"}
    resp = manage_snapshot(api, volume["id"], snap_name)
    assert resp.status_code == 202, resp.text
    snap = api.wait_snapshot(resp.json()["snapshot"]["id"])
    assert snap["size"] == 1
    assert snap_name not in mem_driver.object_names()
    assert action(api, "snapshots", snap["id"], {"os-unmanage": {}}).status_code == 202
    api.wait_gone(f"/snapshots/{snap['id']}")
    assert snap_name in mem_driver.object_names()
    assert action(api, "volumes", volume["id"], {"os-unmanage": {}}).status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")
    names = mem_driver.object_names()
    assert name in names and f"{name}@s1" in names
    assert mem_driver.read(name, 1000, 11) == b"memory data"
    # Once free, the busy one can be adopted.
    mem_driver.set_in_use(busy, False)
    resp = manage_volume(api, busy, host=MEM_HOST)
    assert api.wait_volume(resp.json()["volume"]["id"])["size"] == 3


def test_memory_reference_naming_nothing(api: Api, mem_driver: Any) -> None:
    before = mem_driver.object_names()
    resp = manage_volume(api, f"nothing-{uuid.uuid4().hex[:6]}", host=MEM_HOST)
    assert resp.status_code == 202, resp.text
    volume = api.wait_volume(resp.json()["volume"]["id"], statuses=("error",))
    msgs = messages_for(api, volume["id"])
    assert len(msgs) == 1 and "nothing-" in msgs[0]["user_message"], msgs
    assert api.delete(f"/volumes/{volume['id']}").status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")
    assert mem_driver.object_names() == before


def test_a_snapshot_object_being_managed_is_refused_to_a_second_request(
    api: Api, mem_driver: Any
) -> None:
    volume = mem_volume(api)
    snap_name = mem_driver.seed_foreign_snapshot(f"volume-{volume['id']}", "held", GiB)
    entered, gate = threading.Event(), threading.Event()
    original = mem_driver.manage_existing_snapshot_get_size

    def held(snapshot: Any, ref: Any) -> int:
        entered.set()
        gate.wait(20)
        return original(snapshot, ref)

    mem_driver.manage_existing_snapshot_get_size = held
    try:
        first = manage_snapshot(api, volume["id"], snap_name)
        assert first.status_code == 202, first.text
        assert entered.wait(10)
        message = assert_fault(manage_snapshot(api, volume["id"], snap_name), 400)
        assert "already being managed by another request" in message and snap_name in message
        assert len(api.get("/snapshots").json()["snapshots"]) == 1
    finally:
        gate.set()
        del mem_driver.manage_existing_snapshot_get_size
    snap = api.wait_snapshot(first.json()["snapshot"]["id"])
    assert snap["size"] == 1
    assert f"volume-{volume['id']}@snapshot-{snap['id']}" in mem_driver.object_names()
