"""Microversion negotiation (`OpenStack-API-Version: volume 3.NN`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache, total_ordering

from cinderblock import exceptions as exc

HEADER = "OpenStack-API-Version"
SERVICE = "volume"
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@total_ordering
@dataclass(frozen=True, slots=True)
class APIVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> APIVersion:
        match = _VERSION_RE.match(text)
        if not match:
            raise exc.InvalidMicroversion(version=text)
        return cls(int(match.group(1)), int(match.group(2)))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, APIVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, text: str) -> bool:
        other = _parsed(text)
        return (self.major, self.minor) >= (other.major, other.minor)


@lru_cache(maxsize=256)
def _parsed(text: str) -> APIVersion:
    """Versions named in code are parsed once (views ask for them per item)."""
    return APIVersion.parse(text)


MIN_VERSION = APIVersion(3, 0)
# Every change of 3.1-3.71 to the resources we serve is honoured; see
# docs/microversions.md for the table and for resources not served yet.
MAX_VERSION = APIVersion(3, 71)
UPDATED = "2023-08-31T00:00:00Z"


def negotiate(header: str | None) -> APIVersion:
    """Version in effect for a request, or an error (400 malformed, 406 out of range)."""
    if header is None or header.strip() == "":
        return MIN_VERSION
    wanted = None
    for item in header.split(","):
        parts = item.strip().split(None, 1)
        if parts and parts[0].lower() == SERVICE:
            wanted = parts[1].strip() if len(parts) > 1 else ""
            break
    if wanted is None:
        raise exc.InvalidInput(reason=f"No '{SERVICE}' entry in the {HEADER} header.")
    if wanted.lower() == "latest":
        return MAX_VERSION
    version = APIVersion.parse(wanted)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise exc.VersionNotAcceptable(version=wanted, min=MIN_VERSION, max=MAX_VERSION)
    return version
