"""Response bodies: exactly Cinder's fields for the microversion in effect."""

from __future__ import annotations

import datetime as dt


def timestamp(value: dt.datetime | None) -> str | None:
    """Naive ISO-8601 with microseconds, as Cinder shows them."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
