"""Cinder fault bodies: {"<kind>": {"code": N, "message": "..."}}."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError

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
DATABASE_LOST = "The connection to the database was lost; retry the request."
GENERIC_500 = "The server has either erred or is incapable of performing the requested operation."
DUPLICATE_KEY = (
    "A key in the request is already stored (MySQL and MariaDB take keys that differ only in "
    "letter case or trailing spaces for the same key)."
)


def fault_body(code: int, message: str) -> dict[str, dict[str, object]]:
    return {FAULT_KEYS.get(code, "computeFault"): {"code": code, "message": message}}


def fault_for(error: BaseException) -> tuple[int, dict[str, dict[str, object]]]:
    if isinstance(error, exc.CinderblockError) and not isinstance(error, exc.DriverError):
        return error.code, fault_body(error.code, error.msg)
    if isinstance(error, exc.DriverError) and error.code < 500:
        return error.code, fault_body(error.code, error.msg)
    if isinstance(error, IntegrityError) and _is_duplicate(error):
        # A unique (owner, key) index refused a row: a conflict with what is stored (or
        # with a concurrent write of the same key), not a server fault.
        return 409, fault_body(409, DUPLICATE_KEY)
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        # The database went away under the request (a restart): the pool has been
        # emptied and the next request reconnects.
        return 503, fault_body(503, DATABASE_LOST)
    return 500, fault_body(500, GENERIC_500)


def _is_duplicate(error: IntegrityError) -> bool:
    """A unique-constraint violation (other integrity errors stay 500s: they are bugs)."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return True
    args = getattr(orig, "args", ())
    if args and args[0] == 1062:  # MySQL / MariaDB ER_DUP_ENTRY
        return True
    return "UNIQUE constraint failed" in str(orig)  # SQLite
