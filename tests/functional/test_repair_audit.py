"""`cinderblock audit` finds drift between the database and a real file backend without
changing anything, and `os-repair_status` sets statuses from what the backend holds."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cbhelpers import assert_fault, backend_type, file_volume, mem_volume, snapshot

from cinderblock.cli.main import main as cli_main
from conftest import Api, RunningService, scratch_database, start_service

GiB = 1024**3
CONNECTOR = {
    "host": "compute-1",
    "initiator": "iqn.1993-08.org.debian:01:compute-1",
    "ip": "192.0.2.10",
    "platform": "x86_64",
    "os_type": "linux",
    "multipath": False,
}


@pytest.fixture
def own_database_url(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own (the audit reads the whole database)."""
    with scratch_database(tmp_path, "cb_audit") as url:
        yield url


@pytest.fixture
def own_service(tmp_path: Path, own_database_url: str) -> Iterator[RunningService]:
    directory = tmp_path / "svc"
    directory.mkdir()
    running = start_service(directory, own_database_url)
    try:
        yield running
    finally:
        running.stop()


def run_audit(capsys: pytest.CaptureFixture[str], service: RunningService, *extra: str) -> Any:
    """`cinderblock audit --config <the service's config> ...`: (exit code, stdout)."""
    capsys.readouterr()
    args = ["--log-level", "WARNING", "audit", "--config", str(service.config_path), *extra]
    code = cli_main(args)
    return code, capsys.readouterr().out


def drift_of(capsys: pytest.CaptureFixture[str], service: RunningService) -> Any:
    code, text = run_audit(capsys, service, "--json")
    report = json.loads(text)
    return code, {(d["kind"], d["resource"], d["object"]) for d in report["drift"]}, report


def directory_state(path: Path) -> dict[str, tuple[int, int, int]]:
    state = {}
    for name in sorted(os.listdir(path)):
        st = os.lstat(path / name)
        state[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return state


def repair(api: Api, kind: str, obj_id: str, args: Any = None) -> Any:
    body = {"os-repair_status": {} if args is None else args}
    return api.post(f"/{kind}s/{obj_id}/action", body)


def test_audit_reports_exactly_the_drift_and_repair_fixes_the_status(
    own_service: RunningService, capsys: pytest.CaptureFixture[str]
) -> None:
    service = own_service
    vdir = service.volumes_dir
    api = Api(service.url, uuid.uuid4().hex)
    member = Api(service.url, api.project, user="demo")

    kept = file_volume(api, name="kept")
    lost = file_volume(api, name="lost")
    short = file_volume(api, size=2, name="short")
    snap = snapshot(api, kept["id"], name="kept-snap")
    in_memory = mem_volume(api, name="in-memory")

    # A clean service: no drift, exit 0; the memory backend cannot be audited from outside.
    code, text = run_audit(capsys, service)
    assert code == 0, text
    assert "no drift" in text
    assert "testhost@files [file]: 3 volume row(s), 1 snapshot row(s), 4 object(s)" in text
    assert "testhost@mem [memory]" in text and "skipped" in text

    # Behind the service's back: a file deleted, a foreign file, a file truncated.
    (vdir / f"volume-{lost['id']}").unlink()
    (vdir / "stray.img").write_bytes(b"x" * 4096)
    os.truncate(vdir / f"volume-{short['id']}", GiB + 5)
    # And what a running create looks like: the audit must neither report nor remove it.
    (vdir / ".tmp-0123456789abcdef").write_bytes(b"")
    before = directory_state(vdir)

    code, drift, report = drift_of(capsys, service)
    assert code == 1
    assert drift == {
        ("missing", "volume", f"volume-{lost['id']}"),
        ("foreign", "-", "stray.img"),
        ("size", "volume", f"volume-{short['id']}"),
    }
    files = next(b for b in report["backends"] if b["host"] == "testhost@files")
    assert files["temp_files"] == 1 and files["checked"] is True
    by_kind = {d["kind"]: d for d in report["drift"]}
    assert by_kind["missing"]["id"] == lost["id"]
    assert by_kind["missing"]["status"] == "available"
    assert by_kind["size"]["detail"] == "file is 1.00 GiB, the row says 2 GiB"
    assert by_kind["foreign"]["detail"].startswith("volume file")

    # The table says the same, one line per item.
    code, text = run_audit(capsys, service)
    assert code == 1
    lines = [line for line in text.splitlines() if line.startswith("testhost@files ")]
    assert len(lines) == 3, text
    assert any(" missing " in line and lost["id"] in line for line in lines)
    assert any(" foreign " in line and "stray.img" in line for line in lines)
    assert any(" size " in line and short["id"] in line for line in lines)
    assert "3 drift item(s)" in text

    # Nothing changed: not the files (temp file included), not the database.
    assert directory_state(vdir) == before
    assert api.get(f"/volumes/{lost['id']}").json()["volume"]["status"] == "available"

    # Repair is admin only; it takes no arguments.
    assert_fault(repair(member, "volume", lost["id"]), 403)
    assert_fault(repair(member, "snapshot", snap["id"]), 403)
    assert_fault(repair(api, "volume", lost["id"], {"status": "available"}), 400)
    assert_fault(repair(api, "volume", str(uuid.uuid4())), 404)

    # The volume whose file is gone goes to error; the others keep (or get) their truth.
    resp = repair(api, "volume", lost["id"])
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"repair": {"status": "error", "found": False}}
    assert api.get(f"/volumes/{lost['id']}").json()["volume"]["status"] == "error"
    resp = repair(api, "volume", kept["id"])
    assert resp.json() == {"repair": {"status": "available", "found": True}}
    resp = repair(api, "snapshot", snap["id"])
    assert resp.json() == {"repair": {"status": "available", "found": True}}

    # Where a blind reset put a wrong status, repair puts the right one back.
    assert repair(api, "volume", kept["id"]).status_code == 200
    for status in ("creating", "error_extending"):
        resp = api.post(f"/volumes/{kept['id']}/action", {"os-reset_status": {"status": status}})
        assert resp.status_code == 202, resp.text
        resp = repair(api, "volume", kept["id"])
        assert resp.json() == {"repair": {"status": "available", "found": True}}
    resp = api.post(f"/snapshots/{snap['id']}/action", {"os-reset_status": {"status": "error"}})
    assert resp.status_code == 202
    assert repair(api, "snapshot", snap["id"]).json()["repair"]["status"] == "available"
    assert api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"
    # A snapshot whose file is gone goes to error.
    (vdir / f"volume-{kept['id']}@snapshot-{snap['id']}").unlink()
    assert repair(api, "snapshot", snap["id"]).json() == {
        "repair": {"status": "error", "found": False}
    }

    # An attached volume is in-use again (memory backend: its service answers in-process).
    act = f"/volumes/{in_memory['id']}/action"
    assert api.post(act, {"os-reserve": {}}).status_code == 202
    resp = api.post(act, {"os-initialize_connection": {"connector": CONNECTOR}})
    assert resp.status_code == 200, resp.text
    resp = api.post(act, {"os-attach": {"mountpoint": "/dev/vdb", "host_name": "compute-1"}})
    assert resp.status_code == 202, resp.text
    assert api.post(act, {"os-reset_status": {"status": "error"}}).status_code == 202
    assert repair(api, "volume", in_memory["id"]).json() == {
        "repair": {"status": "in-use", "found": True}
    }

    # The audit now: the lost volume is an error (its file may be absent); the snapshot row
    # is an error too; the foreign file and the short file are still drift.
    code, drift, _ = drift_of(capsys, service)
    assert code == 1
    assert drift == {
        ("foreign", "-", "stray.img"),
        ("size", "volume", f"volume-{short['id']}"),
    }
    api.client.close()
    member.client.close()


def test_audit_refuses_a_missing_database_and_unknown_backends(tmp_path: Path) -> None:
    config = tmp_path / "c.conf"
    config.write_text(
        f"""[DEFAULT]
host = h
enabled_backends = files

[database]
connection = sqlite:///{tmp_path / "nothing-here.sqlite"}

[files]
volume_driver = file
file_volumes_dir = {tmp_path / "volumes"}
"""
    )
    assert cli_main(["--log-level", "WARNING", "audit", "--config", str(config)]) == 2
    assert not (tmp_path / "nothing-here.sqlite").exists()  # not created by the audit
    assert not (tmp_path / "volumes").exists()
    args = ["--log-level", "WARNING", "audit", "--config", str(config), "--backend", "nope"]
    assert cli_main(args) == 2


# --- what a crash leaves behind, made on purpose -------------------------------------------
FILES_HOST = "testhost@files"


def _sql(url: str, statement: str, **params: Any) -> None:
    """Write behind the service's back (it is stopped)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def _claim(url: str, reference: str, resource_id: str) -> None:
    _sql(
        url,
        "INSERT INTO manage_claims (backend_host, reference, resource_id, created_at) "
        "VALUES (:host, :ref, :rid, :now)",
        host=FILES_HOST,
        ref=reference,
        rid=resource_id,
        now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )


def _foreign(path: Path, size: int, mark: bytes) -> None:
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(4096)
        f.write(mark)


def _mark(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(4096)
        return f.read(len(b"mark-") + 1)


def test_restart_finishes_cut_manages_and_redoes_cut_unmanages(
    tmp_path: Path, own_database_url: str
) -> None:
    """The crash harness's finds, made deterministic: a manage cut after the driver adopted
    the file keeps the original name (unmanage gives it back), a cut snapshot manage
    releases its claim, cut unmanages are redone instead of stranded."""
    directory = tmp_path / "svc"
    directory.mkdir()
    url = own_database_url
    first = start_service(directory, url)
    vdir = first.volumes_dir
    try:
        api = Api(first.url, uuid.uuid4().hex)
        files_type = backend_type(api, "files")["name"]

        def manage(name: str) -> dict[str, Any]:
            body = {"volume": {"host": FILES_HOST, "ref": {"source-name": name}, "name": name}}
            resp = api.post("/manageable_volumes", body)
            assert resp.status_code == 202, resp.text
            return api.wait_volume(resp.json()["volume"]["id"])

        def manage_snapshot(volume_id: str, name: str) -> dict[str, Any]:
            body = {"snapshot": {"volume_id": volume_id, "ref": {"source-name": name}}}
            resp = api.post("/manageable_snapshots", body)
            assert resp.status_code == 202, resp.text
            return api.wait_snapshot(resp.json()["snapshot"]["id"])

        _foreign(vdir / "legacy-a", GiB + 100, b"mark-a")
        _foreign(vdir / "legacy-b", GiB, b"mark-b")
        cut_manage = manage("legacy-a")
        cut_unmanage = manage("legacy-b")
        parent = file_volume(api, volume_type=files_type)
        pfile = f"volume-{parent['id']}"
        _foreign(vdir / f"{pfile}@foreign-1", GiB // 2, b"mark-1")
        _foreign(vdir / f"{pfile}@foreign-2", GiB // 2, b"mark-2")
        snap_adopted = manage_snapshot(parent["id"], f"{pfile}@foreign-1")
        snap_unmanaging = manage_snapshot(parent["id"], f"{pfile}@foreign-2")
        snap_lost = snapshot(api, parent["id"])
        api.client.close()
    finally:
        first.stop()

    # Cut after the driver renamed legacy-a, before the database heard of it.
    _sql(
        url,
        "UPDATE volumes SET status = 'managing', size = 0, provider_id = NULL, "
        "provider_location = NULL, host = :host WHERE id = :id",
        host=FILES_HOST,
        id=cut_manage["id"],
    )
    _sql(url, "DELETE FROM volume_admin_metadata WHERE volume_id = :id", id=cut_manage["id"])
    _claim(url, "legacy-a", cut_manage["id"])
    # Cut while unmanaging.
    _sql(url, "UPDATE volumes SET status = 'unmanaging' WHERE id = :id", id=cut_unmanage["id"])
    _sql(url, "UPDATE snapshots SET status = 'unmanaging' WHERE id = :id", id=snap_unmanaging["id"])
    # A snapshot manage cut after the rename, and one cut before the driver did anything.
    _sql(
        url,
        "UPDATE snapshots SET status = 'creating', provider_id = NULL, volume_size = 1 "
        "WHERE id = :id",
        id=snap_adopted["id"],
    )
    _claim(url, f"{pfile}@foreign-1", snap_adopted["id"])
    _sql(url, "UPDATE snapshots SET status = 'creating' WHERE id = :id", id=snap_lost["id"])
    (vdir / f"{pfile}@snapshot-{snap_lost['id']}").unlink()
    _foreign(vdir / f"{pfile}@foreign-3", GiB // 2, b"mark-3")
    _claim(url, f"{pfile}@foreign-3", snap_lost["id"])

    second = start_service(directory, url)
    try:
        api = Api(second.url, api.project)
        # The cut manage is finished as the manage would have finished it.
        volume = api.get(f"/volumes/{cut_manage['id']}").json()["volume"]
        assert volume["status"] == "available"
        assert volume["size"] == 2
        assert volume["provider_id"] == "legacy-a"
        assert volume["os-vol-host-attr:host"] == f"{FILES_HOST}#files"
        # ... so unmanaging it gives legacy-a back under its name.
        resp = api.post(f"/volumes/{cut_manage['id']}/action", {"os-unmanage": {}})
        assert resp.status_code == 202, resp.text
        api.wait_gone(f"/volumes/{cut_manage['id']}")
        assert _mark(vdir / "legacy-a") == b"mark-a"
        assert not (vdir / f"volume-{cut_manage['id']}").exists()

        # Cut unmanages are redone: rows gone, files back under their names.
        assert api.get(f"/volumes/{cut_unmanage['id']}").status_code == 404
        assert _mark(vdir / "legacy-b") == b"mark-b"
        assert api.get(f"/snapshots/{snap_unmanaging['id']}").status_code == 404
        assert _mark(vdir / f"{pfile}@foreign-2") == b"mark-2"

        # The snapshot whose file was adopted is available with its original name kept.
        snap = api.get(f"/snapshots/{snap_adopted['id']}").json()["snapshot"]
        assert snap["status"] == "available"
        resp = api.post(f"/snapshots/{snap_adopted['id']}/action", {"os-unmanage": {}})
        assert resp.status_code == 202, resp.text
        api.wait_gone(f"/snapshots/{snap_adopted['id']}")
        assert _mark(vdir / f"{pfile}@foreign-1") == b"mark-1"

        # The one cut before adoption failed, and its file can be managed again.
        snap = api.get(f"/snapshots/{snap_lost['id']}").json()["snapshot"]
        assert snap["status"] == "error"
        body = {
            "snapshot": {"volume_id": parent["id"], "ref": {"source-name": f"{pfile}@foreign-3"}}
        }
        resp = api.post("/manageable_snapshots", body)
        assert resp.status_code == 202, resp.text
        assert api.wait_snapshot(resp.json()["snapshot"]["id"])["status"] == "available"

        # Repair finishes a manage too (here: a status reset by hand to managing).
        legacy = api.post(
            "/manageable_volumes",
            {"volume": {"host": FILES_HOST, "ref": {"source-name": "legacy-b"}}},
        )
        assert legacy.status_code == 202, legacy.text
        legacy_id = api.wait_volume(legacy.json()["volume"]["id"])["id"]
        resp = api.post(f"/volumes/{legacy_id}/action", {"os-reset_status": {"status": "managing"}})
        assert resp.status_code == 202
        assert repair(api, "volume", legacy_id).json() == {
            "repair": {"status": "available", "found": True}
        }
        shown = api.get(f"/volumes/{legacy_id}").json()["volume"]
        assert (shown["size"], shown["provider_id"]) == (1, "legacy-b")
        api.client.close()
    finally:
        second.stop()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM manage_claims")).scalar() == 0
    finally:
        engine.dispose()
