"""Status values exactly as Cinder stores them, and how the API shows them.

Status strings live only here; every other module refers to these names.
"""

from __future__ import annotations

from enum import StrEnum


class VolumeStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    ERROR_RESTORING = "error_restoring"
    ERROR_EXTENDING = "error_extending"
    ERROR_BACKING_UP = "error_backing-up"
    EXTENDING = "extending"
    IN_USE = "in-use"
    ATTACHING = "attaching"
    DETACHING = "detaching"
    RESERVED = "reserved"
    MAINTENANCE = "maintenance"
    AWAITING_TRANSFER = "awaiting-transfer"
    BACKING_UP = "backing-up"
    RESTORING_BACKUP = "restoring-backup"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    RETYPING = "retyping"
    REVERTING = "reverting"
    MANAGING = "managing"
    ERROR_MANAGING = "error_managing"
    ERROR_MANAGING_DELETING = "error_managing_deleting"
    UNMANAGING = "unmanaging"
    ERROR_UNMANAGING = "error_unmanaging"


class AttachStatus(StrEnum):
    DETACHED = "detached"
    RESERVED = "reserved"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    ERROR_ATTACHING = "error_attaching"
    ERROR_DETACHING = "error_detaching"


class SnapshotStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    UPDATING = "updating"
    UNMANAGING = "unmanaging"
    BACKING_UP = "backing-up"
    RESTORING = "restoring"


# Internal statuses Cinder hides behind a public one in every volume view.
_VOLUME_DISPLAY = {
    VolumeStatus.MANAGING: VolumeStatus.CREATING,
    VolumeStatus.ERROR_MANAGING: VolumeStatus.ERROR,
    VolumeStatus.ERROR_MANAGING_DELETING: VolumeStatus.DELETING,
}


def volume_display_status(status: str) -> str:
    return str(_VOLUME_DISPLAY.get(status, status))  # type: ignore[call-overload]


# A volume may be deleted (without force) only from these statuses.
VOLUME_DELETABLE = (
    VolumeStatus.AVAILABLE,
    VolumeStatus.ERROR,
    VolumeStatus.ERROR_RESTORING,
    VolumeStatus.ERROR_EXTENDING,
    VolumeStatus.ERROR_MANAGING,
)

# Statuses that mean work is in flight; a restarted volume service resolves these.
VOLUME_TRANSITIONAL = (
    VolumeStatus.CREATING,
    VolumeStatus.DELETING,
    VolumeStatus.EXTENDING,
    VolumeStatus.MANAGING,
    VolumeStatus.ERROR_MANAGING_DELETING,
    VolumeStatus.UNMANAGING,
    VolumeStatus.REVERTING,
)

SNAPSHOT_DELETABLE = (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR)
SNAPSHOT_TRANSITIONAL = (
    SnapshotStatus.CREATING,
    SnapshotStatus.DELETING,
    SnapshotStatus.RESTORING,
    SnapshotStatus.UNMANAGING,
)

# Statuses os-reset_status accepts for volumes (Cinder's list, lower-case).
VOLUME_RESETTABLE = tuple(
    s
    for s in VolumeStatus
    if s
    not in (
        VolumeStatus.UNMANAGING,
        VolumeStatus.ERROR_UNMANAGING,
        VolumeStatus.ERROR_MANAGING_DELETING,
        VolumeStatus.DELETING,
    )
)
SNAPSHOT_RESETTABLE = tuple(s for s in SnapshotStatus if s != SnapshotStatus.DELETING)
MIGRATION_STATUSES = ("migrating", "error", "success", "completing", "none", "starting")
# migration_status values of a volume no migration is working on: it may change size,
# take snapshots or start a new migration.
MIGRATION_IDLE = (None, "error", "success", "none")
