"""What travels between processes: JSON envelopes with a version field.

A request is ``{"version": 1, "method": "...", "kwargs": {...}}`` plus a
``"context"`` member when the caller passed ``context=`` (the request context
dict, kept apart so that a server can log the request id before it dispatches).
A reply is ``{"version": 1, "result": ...}`` or ``{"version": 1, "error":
{"type": ..., "module": ..., "message": ...}}``.

A remote error whose class lives in :mod:`cinderblock.exceptions` is raised
again on the caller's side as the same class with the same message, so an
``InvalidInput`` raised in a volume service reaches the API as a 400; any
other error becomes :class:`RemoteError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cinderblock import exceptions
from cinderblock.rpc.base import RemoteError

WIRE_VERSION = 1
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"


class MalformedMessage(ValueError):
    """A body that is not an envelope this version understands."""


@dataclass(frozen=True)
class Request:
    method: str
    kwargs: dict[str, Any]

    @property
    def request_id(self) -> str | None:
        context = self.kwargs.get("context")
        if isinstance(context, dict):
            value = context.get("request_id")
            return str(value) if value is not None else None
        return None


def _dumps(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode(CONTENT_ENCODING)


def _loads(body: bytes | str) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (TypeError, ValueError) as err:
        raise MalformedMessage(f"not JSON: {err}") from err
    if not isinstance(envelope, dict):
        raise MalformedMessage("not a JSON object")
    version = envelope.get("version")
    if version != WIRE_VERSION:
        raise MalformedMessage(f"unsupported message version {version!r} (this is {WIRE_VERSION})")
    return envelope


def encode_request(method: str, kwargs: dict[str, Any]) -> bytes:
    """Envelope for a cast or call; raises TypeError/ValueError if kwargs are not JSON."""
    args = dict(kwargs)
    envelope: dict[str, Any] = {"version": WIRE_VERSION, "method": method}
    if "context" in args:
        envelope["context"] = args.pop("context")
    envelope["kwargs"] = args
    return _dumps(envelope)


def decode_request(body: bytes | str) -> Request:
    envelope = _loads(body)
    method = envelope.get("method")
    kwargs = envelope.get("kwargs")
    if not isinstance(method, str) or not isinstance(kwargs, dict):
        raise MalformedMessage("request needs a string 'method' and an object 'kwargs'")
    if "context" in envelope:
        kwargs["context"] = envelope["context"]
    return Request(method=method, kwargs=kwargs)


def encode_result(result: Any) -> bytes:
    """Reply carrying a return value; raises TypeError/ValueError if it is not JSON."""
    return _dumps({"version": WIRE_VERSION, "result": result})


def encode_error(exc_type: str, module: str, message: str) -> bytes:
    return _dumps(
        {
            "version": WIRE_VERSION,
            "error": {"type": exc_type, "module": module, "message": message},
        }
    )


def encode_exception(exc: BaseException) -> bytes:
    cls = type(exc)
    return encode_error(cls.__name__, cls.__module__, str(exc))


def decode_reply(body: bytes | str) -> Any:
    """The call's return value, or raise what the remote handler raised."""
    envelope = _loads(body)
    if "error" not in envelope:
        return envelope.get("result")
    error = envelope["error"] if isinstance(envelope["error"], dict) else {}
    exc_type = str(error.get("type") or "RemoteError")
    message = str(error.get("message") or "")
    raise rebuild_exception(exc_type, str(error.get("module") or ""), message)


def rebuild_exception(exc_type: str, module: str, message: str) -> Exception:
    remote = RemoteError(exc_type, message)
    if module == exceptions.__name__:
        cls = getattr(exceptions, exc_type, None)
        if isinstance(cls, type) and issubclass(cls, exceptions.CinderblockError):
            local = cls(message)
            local.__cause__ = remote
            return local
    return remote
