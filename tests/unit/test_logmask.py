"""logmask: what is masked in log records, and what is left alone."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from cinderblock import logmask


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to postgresql+psycopg://cb:hunter2-pw@db1/cinder", "hunter2-pw"),
        ("rabbit://guest:rabbit-pw@127.0.0.1:5672/vh,rabbit://u:other-pw@h2/vh", "other-pw"),
        (
            "provider_auth CHAP u7Hs8dk2LqPzR4wX9mNa s3cr3tS3cr3tS3cr3tAbCd",
            "s3cr3tS3cr3tS3cr3tAbCd",
        ),
        ("('PSK client-1 0f1e2d3c4b5a69788796a5b4c3d2e1f0',)", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        ("{'auth_password': 'pa55word-xyz', 'auth_method': 'CHAP'}", "pa55word-xyz"),
        ('{"data": {"auth_password": "json-secret-1"}}', "json-secret-1"),
        ("headers: X-Auth-Token: gAAAAABtokenvalue123", "gAAAAABtokenvalue123"),
        ("x-service-token=gAAAAAsvc456&next=1", "gAAAAAsvc456"),
        ("[keystone_authtoken] password = ks-pass-99", "ks-pass-99"),
    ],
)
def test_masked(text: str, secret: str) -> None:
    masked = logmask.mask(text)
    assert secret not in masked
    assert logmask.MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "creating the CHAP account for iqn.2010-10.org.openstack:volume-1 failed: busy",
        "volume-1 has no CHAP credentials: create_export must run first",
        "token_cache_time = 300",
        "A project-scoped token is required.",
        "GET /v3/abc/volumes?limit=5 HTTP/1.1 200",
        "http://127.0.0.1:8776/v3/ is up",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert logmask.mask(text) == text


def test_registered_secrets_are_masked_anywhere() -> None:
    logmask.add_secret("plain-secret-for-test")
    assert "plain-secret-for-test" not in logmask.mask("x plain-secret-for-testy z")
    logmask.add_secret("ab")  # too short to mask without masking noise: ignored
    assert logmask.mask("abc") == "abc"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    logmask.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("cinderblock.test_logmask")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)


def test_records_are_masked_once_installed(captured: io.StringIO) -> None:
    log = logging.getLogger("cinderblock.test_logmask")
    log.debug("connection_info %s", {"auth_password": "rec-secret-1"})
    try:
        raise ValueError("cannot reach mysql+pymysql://root:rec-secret-2@db/x")
    except ValueError:
        log.exception("failed")
    text = captured.getvalue()
    assert "rec-secret-1" not in text and "rec-secret-2" not in text
    assert "ValueError" in text  # the traceback is still there, masked


def test_records_without_secrets_keep_their_args() -> None:
    logmask.install()
    record = logging.getLogRecordFactory()(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s" %d', ("c", "GET", "/", 200), None
    )
    assert record.args == ("c", "GET", "/", 200)  # (uvicorn's formatter reads them)
