"""Secrets never reach the logs, nor non-admin responses other than the connection_info
handed to the caller that attaches.

A service with every logger at DEBUG (SQLAlchemy's statements, parameters and rows
included), a file backend exported by a private tgtd (so attaching makes real CHAP
credentials), requests carrying a Keystone-style service token, and on PostgreSQL runs
a database URL with a password (trust authentication accepts any). Afterwards none of
those secrets is in anything logged.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cinderblock.config import load_settings
from cinderblock.embedded import build
from conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL, Api, free_port, serve_in_thread, stop_serving

DB_PASSWORD = f"s3cret-db-pw-{secrets.token_hex(6)}"
SERVICE_TOKEN = "gAAAAAB" + secrets.token_urlsafe(120)  # shaped like a Fernet token
RABBIT_PASSWORD = f"rabbit-pw-{secrets.token_hex(6)}"
INITIATOR = "iqn.1993-08.org.debian:01:secrets-test"


def _tgtadm(control: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tgtadm", "-C", str(control), *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def tgtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A private tgtd on its own control port and iSCSI port: (control_port, port)."""
    if os.geteuid() != 0 or not shutil.which("tgtd") or not shutil.which("tgtadm"):
        pytest.skip("needs root and tgt (apt-get install tgt)")
    for _ in range(50):
        control = 1000 + int.from_bytes(os.urandom(2), "big") % 31000  # tgtd: <= 32767
        if _tgtadm(control, "--op", "show", "--mode", "system").returncode != 0:
            break
    port = free_port()
    log = (tmp_path_factory.mktemp("tgtd") / "tgtd.log").open("ab")
    proc = subprocess.Popen(
        ["tgtd", "-f", "-C", str(control), "--iscsi", f"portal=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while "State: ready" not in _tgtadm(control, "--op", "show", "--mode", "system").stdout:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip("tgtd cannot run here")
        time.sleep(0.05)
    try:
        yield control, port
    finally:
        show = _tgtadm(control, "--lld", "iscsi", "--op", "show", "--mode", "target").stdout
        for line in show.splitlines():
            if line.startswith("Target ") and ":" in line:
                tid = line.split()[1].rstrip(":")
                _tgtadm(
                    control,
                    *("--lld", "iscsi", "--op", "delete", "--mode", "target", "--force"),
                    *("--tid", tid),
                )
        _tgtadm(control, "--op", "delete", "--mode", "system")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this module's own (its service's backend must stay unknown to the
    shared service's scheduler); on PostgreSQL reached with a password."""
    kind = os.environ.get("CINDERBLOCK_TEST_DB", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('secrets-db') / 'cinderblock.sqlite'}"
        return
    admin_url = {"postgresql": PG_ADMIN_URL, "mariadb": MARIADB_ADMIN_URL}[kind]
    name = f"cb_secrets_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.engine.make_url(admin_url).set(database=name)
    if kind == "postgresql":
        url = url.set(password=DB_PASSWORD)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


class Captured(logging.Handler):
    """Everything logged, formatted as a log file would hold it (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = io.StringIO()
        self.records = 0
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")):
            return  # the test's own HTTP client, not the service
        self.records += 1
        self.stream.write(self.format(record) + "\n")

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture(scope="module")
def debug_service(
    tmp_path_factory: pytest.TempPathFactory, db_url: str, tgtd: tuple[int, int]
) -> Iterator[tuple[str, Captured, Path]]:
    control, port = tgtd
    directory = tmp_path_factory.mktemp("secrets")
    config = directory / "cinderblock.conf"
    api_port = free_port()
    config.write_text(
        f"""[DEFAULT]
host = secrethost-{uuid.uuid4().hex[:6]}
enabled_backends = files
bind_port = {api_port}
state_path = {directory}
report_interval = 2

[database]
connection = {db_url}

[files]
volume_driver = file
volume_backend_name = secret-files-{uuid.uuid4().hex[:6]}
file_volumes_dir = {directory / "volumes"}
target_protocol = iscsi
target_ip_address = 127.0.0.1
target_port = {port}
tgt_control_port = {control}
"""
    )
    captured = Captured()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(captured)
    root.setLevel(logging.DEBUG)
    # SQLAlchemy keeps its loggers at WARNING unless told: an operator debugging SQL sees
    # statements, their parameters and the rows fetched. So does this test.
    sql = logging.getLogger("sqlalchemy.engine")
    old_sql_level = sql.level
    sql.setLevel(logging.DEBUG)
    try:
        settings = load_settings(config)
        service = build(settings)
        server, thread = serve_in_thread(
            service.app,
            api_port,
            log_level="debug",
            access_log=True,
            log_config=None,  # (keep our handler: no dictConfig of uvicorn's own)
        )
        try:
            yield f"http://127.0.0.1:{api_port}", captured, config
        finally:
            stop_serving(server, thread)
            service.stop()
    finally:
        root.removeHandler(captured)
        root.setLevel(old_level)
        sql.setLevel(old_sql_level)


def _client(url: str, project: str, user: str = "demo") -> Api:
    client = Api(url, project, user=user)
    # Nova sends its own token beside the user's: a Keystone-style secret.
    client.client.headers.update({"X-Service-Token": SERVICE_TOKEN})
    return client


def _connector() -> dict[str, Any]:
    return {"initiator": INITIATOR, "host": "compute-s", "ip": "127.0.0.1", "multipath": False}


def test_secrets_stay_out_of_logs_and_views(
    debug_service: tuple[str, Captured, Path], db_url: str
) -> None:
    url, captured, _config = debug_service
    project = uuid.uuid4().hex
    owner = _client(url, project)
    other = _client(url, uuid.uuid4().hex)
    admin = _client(url, uuid.uuid4().hex, user="admin")
    try:
        vol = owner.create_volume(size=1)
        vid = vol["id"]
        snap = owner.post("/snapshots", {"snapshot": {"volume_id": vid, "name": "s"}})
        assert snap.status_code == 202, snap.text
        owner.wait_snapshot(snap.json()["snapshot"]["id"])
        # The attachments API: connection_info carries the CHAP password, for the caller.
        resp = owner.post(
            "/attachments",
            {
                "attachment": {
                    "volume_uuid": vid,
                    "instance_uuid": str(uuid.uuid4()),
                    "connector": _connector(),
                }
            },
        )
        assert resp.status_code == 200, resp.text
        attachment = resp.json()["attachment"]
        info = attachment["connection_info"]
        assert info["auth_method"] == "CHAP"
        password, username = info["auth_password"], info["auth_username"]
        assert len(password) >= 12
        # The legacy path hands the same credentials to its caller too.
        resp = owner.post(
            f"/volumes/{vid}/action", {"os-initialize_connection": {"connector": _connector()}}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["connection_info"]["data"]["auth_password"] == password

        # Views of the volume, its snapshot and messages never carry it: not to the owner,
        # not to anyone else (who sees nothing of it at all).
        views = [
            owner.get(f"/volumes/{vid}"),
            owner.get("/volumes"),
            owner.get("/volumes/detail"),
            owner.get("/volumes/summary"),
            owner.get(f"/volumes/{vid}/metadata"),
            owner.get("/snapshots/detail"),
            owner.get("/attachments"),
            owner.get("/messages"),
            owner.get("/limits"),
            other.get("/volumes/detail?all_tenants=1"),
            other.get("/attachments/detail?all_tenants=1"),
            other.get(f"/attachments/{attachment['id']}"),
            admin.get("/volumes/detail?all_tenants=1"),
            admin.get(f"/volumes/{vid}"),
        ]
        for resp in views:
            assert resp.status_code in (200, 404), resp.text
            assert password not in resp.text, resp.request.url
        assert other.get(f"/attachments/{attachment['id']}").status_code == 404
        done = owner.post(f"/attachments/{attachment['id']}/action", {"os-complete": {}})
        assert done.status_code == 204, done.text
        assert owner.get(f"/volumes/{vid}").json()["volume"]["status"] == "in-use"

        # A Keystone token sent to this noauth service is refused, not taken for a name
        # (it would be stored and logged as the caller's ids; it was a 500 on PostgreSQL).
        for token in (SERVICE_TOKEN, f"{SERVICE_TOKEN}:{project}", f"demo:{SERVICE_TOKEN}"):
            resp = httpx.get(
                f"{url}/v3/volumes",
                headers={"X-Auth-Token": token, "OpenStack-API-Version": "volume 3.71"},
            )
            assert resp.status_code == 401, resp.text
            resp = httpx.post(
                f"{url}/v3/volumes",
                json={"volume": {"size": 1}},
                headers={"X-Auth-Token": token, "OpenStack-API-Version": "volume 3.71"},
            )
            assert resp.status_code == 401, resp.text

        # Detach and delete: the export goes, the credentials with it.
        assert owner.delete(f"/attachments/{attachment['id']}").status_code == 200
        owner.wait_volume(vid, statuses=("available",))
    finally:
        for client in (owner, other, admin):
            client.client.close()

    # Whatever code logs the settings or a URL, or fails with one in its message, the
    # passwords in them are masked (logmask.py, installed when the settings load).
    settings = load_settings(debug_service[2])
    log_probe = logging.getLogger("cinderblock.secrets_probe")
    log_probe.debug("settings: %r", settings)
    log_probe.info("transport rabbit://guest:%s@127.0.0.1:5672/x", RABBIT_PASSWORD)
    try:
        raise RuntimeError(f"cannot connect to {settings.database_url}")
    except RuntimeError:
        log_probe.exception("probe")
    log = captured.text
    # Logging was on and saw the work (so the checks below can fail).
    assert captured.records > 100, captured.records
    assert vid in log
    leaks = {
        "CHAP password": password,
        "service token": SERVICE_TOKEN,
        "service token (prefix)": SERVICE_TOKEN[:40],
        "transport password": RABBIT_PASSWORD,
    }
    if DB_PASSWORD in db_url:  # (PostgreSQL runs)
        leaks["database password"] = DB_PASSWORD
    for what, secret in leaks.items():
        assert secret not in log, f"the {what} is in the log"
    assert username  # (user names are not secret: they may be logged)
