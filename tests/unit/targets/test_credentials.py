"""Credentials: provider_auth format, generation, and derived (stable) snapshot credentials."""

from __future__ import annotations

import stat
import string
from pathlib import Path

import pytest

from cinderblock.targets.base import (
    CHAP_SECRET_LENGTH,
    Credentials,
    new_chap_credentials,
    stable_digest,
)
from cinderblock.targets.nbd import NbdOptions, NbdTarget
from cinderblock.targets.tgt import TgtOptions, TgtTarget


def test_parse_and_format_provider_auth() -> None:
    creds = Credentials.parse("CHAP alice s3cretS3cret1234", "CHAP")
    assert creds == Credentials("CHAP", "alice", "s3cretS3cret1234")
    assert str(creds) == "CHAP alice s3cretS3cret1234"
    assert Credentials.parse("chap alice s3cret", "CHAP") == Credentials("CHAP", "alice", "s3cret")


@pytest.mark.parametrize(
    "auth", [None, "", "CHAP alice", "PSK id key", "CHAP a b c", "CHAP al;ce secret"]
)
def test_unusable_provider_auth_is_none(auth: str | None) -> None:
    assert Credentials.parse(auth, "CHAP") is None


def test_secrets_stay_out_of_repr() -> None:
    creds = Credentials("CHAP", "alice", "verysecretvalue123")
    assert "verysecretvalue123" not in repr(creds)
    assert "alice" in repr(creds)


def test_generated_chap_credentials() -> None:
    many = [new_chap_credentials() for _ in range(50)]
    assert len({c.username for c in many}) == 50
    assert len({c.secret for c in many}) == 50
    for creds in many:
        assert creds.method == "CHAP"
        assert len(creds.secret) == CHAP_SECRET_LENGTH >= 16
        assert set(creds.username + creds.secret) <= set(string.ascii_letters + string.digits)
        assert Credentials.parse(str(creds), "CHAP") == creds


def test_stable_digest(tmp_path: Path) -> None:
    first = stable_digest(str(tmp_path / "a"), "snapshot-1")
    assert stable_digest(str(tmp_path / "a"), "snapshot-1") == first
    assert stable_digest(str(tmp_path / "a"), "snapshot-2") != first
    assert stable_digest(str(tmp_path / "b"), "snapshot-1") != first  # another key
    key = tmp_path / "a" / "auth.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["auth.key"]


def test_snapshot_credentials_survive_a_new_target_object(tmp_path: Path) -> None:
    one = TgtTarget(TgtOptions(state_dir=str(tmp_path)))
    two = TgtTarget(TgtOptions(state_dir=str(tmp_path)))
    auth = one.stable_auth("snapshot-1")
    assert auth is not None and auth == two.stable_auth("snapshot-1")
    creds = Credentials.parse(auth, "CHAP")
    assert creds is not None and len(creds.secret) >= 16
    assert auth != one.stable_auth("snapshot-2")


def test_nbd_without_tls_has_no_credentials(tmp_path: Path) -> None:
    assert NbdTarget(NbdOptions(state_dir=str(tmp_path))).stable_auth("snapshot-1") is None
    tls = NbdTarget(NbdOptions(state_dir=str(tmp_path), tls="psk"))
    auth = tls.stable_auth("snapshot-1")
    creds = Credentials.parse(auth, "PSK")
    assert creds is not None and len(creds.secret) == 64
