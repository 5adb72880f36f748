"""Secrets never reach a log: one place masks them in every record, whoever logs it.

`install()` wraps the logging module's record factory, so every record of every logger
(ours, SQLAlchemy's statements and rows, uvicorn's, kombu's...) is masked once, when it
is made, before any handler or formatter sees it. Masked are:

* the secrets the configuration holds (database, transport and Keystone passwords),
  registered with `add_secret` when the settings are loaded;
* passwords in URLs (``scheme://user:secret@host``);
* provider_auth values (``CHAP <user> <secret>``, ``PSK <identity> <key>``);
* values of keys that name a secret (``auth_password``, ``password``, ``secret``,
  ``token``, ``X-Auth-Token``...), in dict reprs, JSON, headers and key=value text.

A record whose text needs no masking is left untouched (uvicorn's access formatter reads
its args); one that does gets its message formatted, masked, and args dropped.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

MASK = "***"
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)([^@\s/]+)(@)")
_PROVIDER_AUTH = re.compile(r"\b(CHAP|PSK)(\s+[A-Za-z0-9._:\-]+\s+)([A-Za-z0-9+/=]{8,})\b")
_SECRET_KEY = re.compile(
    r"(?i)(\b(?:auth_password|password|passwd|secret|secret_key|psk_key|auth_token|token"
    r"|x-auth-token|x-service-token|x-subject-token)\b[\"']?\s*[:=]\s*(?:b?[\"'])?)"
    r"([^\"'\s,;}&)\]]+)"
)

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False
_previous_factory: Callable[..., logging.LogRecord] | None = None


def add_secret(value: str | None) -> None:
    """Mask this exact text wherever it appears (too short a value would mask noise)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def mask(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(rf"\1{MASK}\3", text)
    text = _PROVIDER_AUTH.sub(rf"\1\2{MASK}", text)
    return _SECRET_KEY.sub(rf"\1{MASK}", text)


def _untruncated(args: Any) -> Any:
    """SQLAlchemy logs parameters and rows through wrappers that cut long values in the
    middle; a secret cut in two would escape the patterns, so mask the whole value."""
    items = args if isinstance(args, tuple) else (args,)
    for item in items:
        if hasattr(item, "max_chars") and type(item).__module__.startswith("sqlalchemy"):
            with contextlib.suppress(AttributeError):  # (should SQLAlchemy forbid it)
                item.max_chars = 1 << 20
    return args


def _masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous_factory is not None
    record = _previous_factory(*args, **kwargs)
    try:
        if record.args and record.name.startswith("sqlalchemy"):
            _untruncated(record.args)
        message = record.getMessage()
    except Exception:  # a broken format string: let logging report it as it would
        return record
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = mask(record.exc_text)
    if record.stack_info:
        record.stack_info = mask(record.stack_info)
    return record


def install() -> None:
    """Mask every log record from now on (idempotent)."""
    global _installed, _previous_factory
    with _lock:
        if _installed:
            return
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_masked_record)
        _installed = True
