"""Database.read(): a transaction that reads and refuses to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderblock.db.database import Database
from cinderblock.db.repo import types as types_repo


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'cb.sqlite'}")
    database.upgrade()
    return database


def test_a_read_sees_what_was_committed(db: Database) -> None:
    with db.session() as session:
        types_repo.create(session, "committed", None, True, {})
    with db.read() as session:
        assert types_repo.get_by_name(session, "committed") is not None


def test_a_read_transaction_refuses_to_write(db: Database) -> None:
    with pytest.raises(RuntimeError, match="read"), db.read() as session:
        types_repo.create(session, "sneaky", None, True, {})
        session.flush()
    with db.read() as session:
        assert types_repo.get_by_name(session, "sneaky") is None
