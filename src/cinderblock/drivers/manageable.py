"""Shared pieces of manageable listings and manage-time refusals, for every driver.

* Reason codes: each listing entry that is not safe to manage carries
  ``extra_info = {"reason_code": <code>}`` next to the human ``reason_not_safe``
  (None when safe). The codes are stable; clients may switch on them.
* Manage-time refusals (ManageExistingInvalidReference) carry the same kind of
  code as ``exc.kwargs["reason_code"]``; their message is written for an
  operator, because it becomes the user message of the failed manage.
* Sorting, marker and paging as Cinder's API defines them: keys 'reference'
  (and the driver interface's 'identifier', an alias) and 'size', directions
  'asc'/'desc', default reference desc; the marker is the reference of the
  last entry of the previous page. An unknown marker, key or direction is an
  InvalidInput (HTTP 400), worded as Cinder words it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from cinderblock.drivers.refs import GiB, ManageableEntry, VolumeRef
from cinderblock.exceptions import InvalidInput, ManageExistingInvalidReference

# --- reason codes (listings and manage time) ---------------------------------------
ALREADY_MANAGED = "already_managed"  # Cinder already manages this object
IN_USE = "in_use"  # open by a process / attached / exported elsewhere
NOT_REGULAR_FILE = "not_regular_file"  # directory, fifo, socket, device...
SYMLINK = "symlink"
HARD_LINKED = "hard_linked"  # another name (maybe outside the backend) shares the data
NOT_RAW = "not_raw"  # an image container (qcow2, vmdk...), not raw data
UNREADABLE = "unreadable"  # cannot be opened or read
BAD_NAME = "bad_name"  # the name cannot be used as a reference

LISTING_CODES = frozenset(
    {ALREADY_MANAGED, IN_USE, NOT_REGULAR_FILE, SYMLINK, HARD_LINKED, NOT_RAW, UNREADABLE, BAD_NAME}
)

# Codes that only manage-time refusals carry (never in a listing).
BAD_REFERENCE = "bad_reference"  # malformed reference (no 'source-name', wrong type...)
NOT_FOUND = "not_found"  # no such object on the backend
WRONG_KIND = "wrong_kind"  # a snapshot given as a volume, or a snapshot of another volume
NAME_TAKEN = "name_taken"  # the name the object would be renamed to exists
CHANGED = "changed"  # the object changed while being checked

MANAGE_CODES = LISTING_CODES | {BAD_REFERENCE, NOT_FOUND, WRONG_KIND, NAME_TAKEN, CHANGED}

# Cinder's (LVM driver) wording for the two reasons every backend has.
REASON_ALREADY_MANAGED = "already managed"


def managed_names(volumes: Iterable[VolumeRef]) -> dict[str, str]:
    """Backend object name -> volume id for the volumes the service already manages
    (by their name and by their provider_location)."""
    managed: dict[str, str] = {}
    for vol in volumes:
        for name in (vol.name, vol.provider_location):
            if name:
                managed[name] = vol.id
    return managed


def reason_in_use(*, snapshots: bool) -> str:
    return "snapshot in use" if snapshots else "volume in use"


def invalid_reference(existing_ref: Any, code: str, reason: str) -> ManageExistingInvalidReference:
    """A manage refusal whose message reads well and whose kwargs carry `reason_code`."""
    return ManageExistingInvalidReference(
        existing_ref=existing_ref, reason=reason, reason_code=code
    )


def reason_code_of(exc: BaseException) -> str | None:
    """The reason code of a manage refusal raised by a driver, if it has one."""
    kwargs = getattr(exc, "kwargs", None)
    code = kwargs.get("reason_code") if isinstance(kwargs, Mapping) else None
    return code if isinstance(code, str) else None


def ceil_gib(nbytes: int) -> int:
    """Size in whole GiB, rounded up, at least 1 (Cinder volumes are never 0 GiB)."""
    return max(1, -(-nbytes // GiB))


# --- entries ----------------------------------------------------------------------------
def make_entry(
    name: str,
    size: int,
    *,
    cinder_id: str | None = None,
    source_name: str | None = None,
    snapshots: bool = False,
) -> ManageableEntry:
    """A listing entry, safe until marked otherwise (already managed when cinder_id)."""
    entry: ManageableEntry = {
        "reference": {"source-name": name},
        "size": size,
        "safe_to_manage": True,
        "reason_not_safe": None,
        "cinder_id": cinder_id,
        "extra_info": None,
    }
    if snapshots:
        entry["source_reference"] = {"source-name": source_name or ""}
    if cinder_id:
        mark_unsafe(entry, ALREADY_MANAGED, REASON_ALREADY_MANAGED)
    return entry


def mark_unsafe(entry: ManageableEntry, code: str, reason: str) -> None:
    entry["safe_to_manage"] = False
    entry["reason_not_safe"] = reason
    entry["extra_info"] = {"reason_code": code}


# --- sorting, marker, paging ------------------------------------------------------------
_FIELDS = {"reference": "reference", "identifier": "reference", "size": "size"}
DEFAULT_SORT_KEY = "reference"
DEFAULT_SORT_DIR = "desc"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SortSpec:
    """Validated sort: (field, descending) pairs, most significant first."""

    order: tuple[tuple[str, bool], ...]

    @property
    def needs_size(self) -> bool:
        return any(field == "size" for field, _ in self.order)


def sort_spec(sort_keys: Sequence[str] | None, sort_dirs: Sequence[str] | None) -> SortSpec:
    keys = list(sort_keys or [DEFAULT_SORT_KEY])
    dirs = list(sort_dirs or [])
    if len(dirs) > len(keys):
        raise InvalidInput(reason="more sort directions than sort keys")
    dirs += [DEFAULT_SORT_DIR] * (len(keys) - len(dirs))
    order = []
    for key, direction in zip(keys, dirs, strict=True):
        field = _FIELDS.get(str(key).strip())
        if field is None:
            raise InvalidInput(reason=f"Invalid sort key {key!r}; use 'reference' or 'size'")
        if direction not in ("asc", "desc"):
            raise InvalidInput(reason=f"Invalid sort direction {direction!r}; use 'asc' or 'desc'")
        order.append((field, direction == "desc"))
    return SortSpec(tuple(order))


def marker_name(marker: Any) -> str | None:
    """The reference name a marker designates (a reference dict, or its JSON text)."""
    if marker is None or marker == "" or marker == {}:
        return None
    original = marker
    if isinstance(marker, str | bytes):
        try:
            marker = json.loads(marker)
        except ValueError:
            marker = None
        if not isinstance(marker, Mapping):
            raise InvalidInput(
                reason=f"marker {original} can not be analysed, please use json like format"
            )
    if not isinstance(marker, Mapping):
        raise InvalidInput(reason=f"marker not found: {original}")
    name = marker.get("source-name", marker.get("source-id"))
    if not isinstance(name, str):
        raise InvalidInput(reason=f"marker not found: {original}")
    return name


def ordered(
    items: Iterable[T],
    spec: SortSpec,
    name_of: Callable[[T], str],
    size_of: Callable[[T], int] | None = None,
) -> list[T]:
    """Items in the order of `spec`; ties fall back to the name ascending."""
    result = sorted(items, key=name_of)
    # Stable sorts applied from the least to the most significant key.
    for field, descending in reversed(spec.order):
        if field == "size":
            if size_of is None:
                raise ValueError("sorting by size needs size_of")
            result.sort(key=size_of, reverse=descending)
        else:
            result.sort(key=name_of, reverse=descending)
    return result


def after_marker(
    items: Sequence[T], marker: Any, offset: int | None, name_of: Callable[[T], str]
) -> Sequence[T]:
    """The sorted items that follow the marker entry, then `offset` more skipped."""
    start = 0
    wanted = marker_name(marker)
    if wanted is not None:
        for index, item in enumerate(items):
            if name_of(item) == wanted:
                start = index + 1
                break
        else:
            raise InvalidInput(reason=f"marker not found: {marker}")
    if offset and offset > 0:
        start += offset
    return items[start:] if start else items


def names_after_marker(names: Sequence[str], marker: Any, offset: int | None) -> Sequence[str]:
    """after_marker for a sequence of plain names (the search runs at C speed)."""
    start = 0
    wanted = marker_name(marker)
    if wanted is not None:
        try:
            start = names.index(wanted) + 1
        except ValueError:
            raise InvalidInput(reason=f"marker not found: {marker}") from None
    if offset and offset > 0:
        start += offset
    return names[start:] if start else names


def paginate(
    entries: Iterable[ManageableEntry],
    marker: Any,
    limit: int | None,
    offset: int | None,
    sort_keys: Sequence[str] | None,
    sort_dirs: Sequence[str] | None,
) -> list[ManageableEntry]:
    """Sort complete entries, then apply marker, offset and limit (None or < 0: no limit)."""
    spec = sort_spec(sort_keys, sort_dirs)
    result = ordered(entries, spec, entry_name, entry_size)
    rest = after_marker(result, marker, offset, entry_name)
    if limit is not None and limit >= 0:
        return list(islice(rest, limit))
    return list(rest)


def entry_name(entry: ManageableEntry) -> str:
    return entry["reference"]["source-name"]


def entry_size(entry: ManageableEntry) -> int:
    return entry["size"]
