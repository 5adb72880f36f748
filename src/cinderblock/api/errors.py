"""Cinder fault bodies: {"<kind>": {"code": N, "message": "..."}}."""

from __future__ import annotations

from cinderblock import exceptions as exc

FAULT_KEYS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}
GENERIC_500 = "The server has either erred or is incapable of performing the requested operation."


def fault_body(code: int, message: str) -> dict[str, dict[str, object]]:
    return {FAULT_KEYS.get(code, "computeFault"): {"code": code, "message": message}}


def fault_for(error: BaseException) -> tuple[int, dict[str, dict[str, object]]]:
    if isinstance(error, exc.CinderblockError) and not isinstance(error, exc.DriverError):
        return error.code, fault_body(error.code, error.msg)
    if isinstance(error, exc.DriverError) and error.code < 500:
        return error.code, fault_body(error.code, error.msg)
    return 500, fault_body(500, GENERIC_500)
