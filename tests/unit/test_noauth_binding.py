"""noauth stays on loopback unless the operator says otherwise, and then it warns."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from cinderblock.cli.main import check_noauth_binding, main
from cinderblock.config import ConfigError, Settings


def test_noauth_on_loopback_is_fine() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.5"):
        check_noauth_binding(replace(Settings(), bind_host=host), allow=False)


def test_noauth_on_a_public_address_needs_the_flag(caplog: pytest.LogCaptureFixture) -> None:
    public = replace(Settings(), bind_host="0.0.0.0")
    with pytest.raises(ConfigError, match="--allow-insecure-noauth"):
        check_noauth_binding(public, allow=False)
    with caplog.at_level(logging.WARNING):
        check_noauth_binding(public, allow=True)
    assert "anyone who can reach it" in caplog.text


def test_keystone_may_bind_anywhere() -> None:
    check_noauth_binding(replace(Settings(), bind_host="0.0.0.0", auth_strategy="keystone"), False)


def test_serve_refuses_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--bind-host", "0.0.0.0", "--bind-port", "1"]) == 2
    assert "noauth would accept any token" in capsys.readouterr().err
