"""Plain, frozen descriptions of what a driver acts on.

The volume manager builds these from database rows; drivers never see a row
or a session, and never set a status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

GiB = 1024**3


@dataclass(frozen=True, slots=True)
class VolumeRef:
    id: str
    size: int  # GiB
    name: str = ""  # backend object name; defaults to "volume-<id>"
    project_id: str = ""
    host: str | None = None  # host@backend#pool
    provider_location: str | None = None
    provider_id: str | None = None
    provider_auth: str | None = None
    volume_type_id: str | None = None
    extra_specs: Mapping[str, str] = field(default_factory=dict)
    admin_metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"volume-{self.id}")


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    id: str
    volume: VolumeRef  # the parent volume
    size: int  # GiB
    name: str = ""  # backend object name; defaults to "snapshot-<id>"
    provider_location: str | None = None
    provider_id: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"snapshot-{self.id}")


class ModelUpdate(TypedDict, total=False):
    """Fields a driver may ask the manager to persist on the volume/snapshot."""

    provider_location: str | None
    provider_id: str | None
    provider_auth: str | None
    size: int
    # Facts the service keeps for the operator (e.g. a managed file's original size).
    admin_metadata: dict[str, str]


class ManageableEntry(TypedDict, total=False):
    """One entry of get_manageable_volumes / get_manageable_snapshots."""

    reference: dict[str, str]
    size: int
    safe_to_manage: bool
    reason_not_safe: str | None
    cinder_id: str | None
    extra_info: dict[str, Any] | str | None
    source_reference: dict[str, str] | None  # snapshots only


# A connector as os-brick sends it: initiator, ip, host, multipath, wwpns...
Connector = Mapping[str, Any]
