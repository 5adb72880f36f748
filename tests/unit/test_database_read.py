"""Database.read(): a read-only transaction that on SQLite neither waits for nor
blocks the writer, and refuses to write."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cinderblock.db.database import Database
from cinderblock.db.repo import types as types_repo


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'cb.sqlite'}")
    database.upgrade()
    return database


def test_a_read_sees_the_last_commit_while_a_writer_holds_the_lock(db: Database) -> None:
    with db.session() as session:
        types_repo.create(session, "committed", None, True, {})
    writing = threading.Event()
    finish = threading.Event()

    def writer() -> None:
        with db.session() as session:
            types_repo.create(session, "uncommitted", None, True, {})
            session.flush()
            writing.set()
            finish.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        # The writer holds SQLite's write lock; a read must not wait for it.
        with db.read() as session:
            assert types_repo.get_by_name(session, "committed") is not None
            assert types_repo.get_by_name(session, "uncommitted") is None
    finally:
        finish.set()
        thread.join(10)
    with db.read() as session:
        assert types_repo.get_by_name(session, "uncommitted") is not None


def test_a_read_transaction_refuses_to_write(db: Database) -> None:
    with pytest.raises(RuntimeError, match="read"), db.read() as session:
        types_repo.create(session, "sneaky", None, True, {})
        session.flush()
    with db.read() as session:
        assert types_repo.get_by_name(session, "sneaky") is None
