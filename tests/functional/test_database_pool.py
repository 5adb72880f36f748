"""The connection pool without a ping per transaction: connections the database dropped.

Pooled connections are pinged only after sitting idle (PING_AFTER_IDLE_S); one the server
dropped while idle is replaced unseen, one dropped between two uses fails that one request
with a 503 and the pool starts afresh. Reads and single statements run in autocommit on
PostgreSQL. Runs on the suite's database (CINDERBLOCK_TEST_DB); SQLite has no
server to drop anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from cinderblock.api.errors import fault_for
from cinderblock.db import engine as engine_module
from cinderblock.db.database import Database
from cinderblock.db.models import VolumeType
from cinderblock.db.repo import types as types_repo
from conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL, scratch_database

KIND = os.environ.get("CINDERBLOCK_TEST_DB", "sqlite")
pytestmark = pytest.mark.skipif(KIND == "sqlite", reason="SQLite has no server connections")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with scratch_database(tmp_path, "cb_pool") as url:
        database = Database(url)
        database.upgrade()
        try:
            yield database
        finally:
            database.dispose()


def drop_connections(db: Database) -> int:
    """What a database restart does to our connections: the server closes them."""
    name = db.engine.url.database
    admin = sa.create_engine(
        PG_ADMIN_URL if KIND == "postgresql" else MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT"
    )
    if KIND == "postgresql":
        listing = "SELECT pid FROM pg_stat_activity WHERE datname = :n"
        kill = "SELECT pg_terminate_backend({})"
    else:
        listing = "SELECT id FROM information_schema.processlist WHERE db = :n"
        kill = "KILL {}"
    try:
        with admin.connect() as conn:
            ids = list(conn.execute(sa.text(listing), {"n": name}).scalars())
            for ident in ids:
                conn.execute(sa.text(kill.format(int(ident))))
    finally:
        admin.dispose()
    return len(ids)


def test_a_connection_dropped_while_idle_is_replaced_unseen(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.read() as session:
        assert types_repo.get_by_name(session, "nothing-here") is None
    assert drop_connections(db) >= 1
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)
    with db.session() as session:
        types_repo.create(session, "after-the-drop", None, True, {})
    with db.read() as session:
        assert types_repo.get_by_name(session, "after-the-drop") is not None


def test_a_connection_dropped_between_uses_fails_one_request_with_a_503(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 3600.0)
    with db.read() as session:
        types_repo.get_by_name(session, "warm-up")
    assert drop_connections(db) >= 1
    with pytest.raises(DBAPIError) as caught, db.read() as session:
        types_repo.get_by_name(session, "lost")
    status, body = fault_for(caught.value)
    assert status == 503
    assert "retry" in body["serviceUnavailable"]["message"]
    # The pool was emptied: the retry gets a new connection and works.
    with db.session() as session:
        types_repo.create(session, "retried", None, True, {})
    with db.read() as session:
        assert types_repo.get_by_name(session, "retried") is not None


def test_reads_and_single_statements_commit_on_their_own(db: Database) -> None:
    with db.session() as session:
        made = types_repo.create(session, "cas-target", "before", True, {})
    with db.one_statement() as session:
        session.execute(
            sa.update(VolumeType).where(VolumeType.id == made.id).values(description="after")
        )
        if KIND == "postgresql":
            # Committed already, before the block ends: another connection sees it.
            with db.engine.connect() as other:
                seen = other.execute(
                    sa.text("SELECT description FROM volume_types WHERE id = :i"), {"i": made.id}
                ).scalar()
            assert seen == "after"
    with db.read() as session:
        if KIND == "postgresql":
            options = session.connection().get_execution_options()
            assert options.get("isolation_level") == "AUTOCOMMIT"
        assert types_repo.get_by_name(session, "cas-target").description == "after"
