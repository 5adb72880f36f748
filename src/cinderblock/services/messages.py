"""User-facing messages about asynchronous failures (messages API, 3.3).

Event ids follow Cinder's shape: <RESOURCE>_<ACTION>_<DETAIL>, e.g.
VOLUME_VOLUME_001_002. The text is what an operator can act on.
"""

from __future__ import annotations

import logging
from enum import Enum, StrEnum

from sqlalchemy.orm import Session

from cinderblock.context import RequestContext
from cinderblock.db.database import Database
from cinderblock.db.repo import messages as messages_repo

LOG = logging.getLogger(__name__)


class Resource(StrEnum):
    VOLUME = "VOLUME"
    SNAPSHOT = "VOLUME_SNAPSHOT"


class Action(Enum):
    SCHEDULE_ALLOCATE_VOLUME = ("001", "schedule allocate volume")
    CREATE_VOLUME = ("002", "create volume")
    DELETE_VOLUME = ("003", "delete volume")
    CREATE_SNAPSHOT = ("004", "create snapshot")
    DELETE_SNAPSHOT = ("005", "delete snapshot")
    EXTEND_VOLUME = ("006", "extend volume")
    CREATE_VOLUME_FROM_SOURCE = ("007", "create volume from source")
    REVERT_VOLUME = ("008", "revert volume")
    MANAGE_VOLUME = ("009", "manage existing volume")
    UNMANAGE_VOLUME = ("010", "unmanage volume")
    MANAGE_SNAPSHOT = ("011", "manage existing snapshot")
    UNMANAGE_SNAPSHOT = ("012", "unmanage snapshot")
    MIGRATE_VOLUME = ("013", "migrate volume")


class Detail(Enum):
    UNKNOWN_ERROR = ("001", "An unknown error occurred.")
    NO_BACKEND = ("002", "Could not find any available weighted backend.")
    DRIVER_FAILED = ("003", "The backend failed the operation: %s")
    DRIVER_NOT_INITIALIZED = (
        "004",
        "The volume backend is not initialised; check its configuration.",
    )
    SNAPSHOT_IS_BUSY = ("005", "The snapshot is still in use by volumes created from it.")
    BACKEND_OBJECT_MISSING = ("006", "The backend object no longer exists: %s")
    NOT_SUPPORTED = ("007", "The backend does not support this operation.")
    INVALID_REFERENCE = ("008", "The reference does not name a usable backend object: %s")
    TYPE_MISMATCH = ("009", "The volume type does not match the backend object: %s")
    INTERRUPTED = ("010", "The operation was interrupted by a service restart.")
    VOLUME_IS_BUSY = (
        "011",
        "The backend still holds objects that depend on the volume (such as snapshots it "
        "does not manage); nothing was deleted.",
    )
    OVER_QUOTA = ("012", "Over quota: %s")
    DESTINATION_REFUSED = ("013", "The destination backend cannot take the volume: %s")


class MessageRecorder:
    def __init__(self, db: Database, ttl_seconds: int) -> None:
        self._db = db
        self._ttl = ttl_seconds

    def record(
        self,
        context: RequestContext,
        project_id: str,
        resource: Resource,
        resource_uuid: str | None,
        action: Action,
        detail: Detail,
        detail_arg: str | None = None,
        session: Session | None = None,
    ) -> None:
        action_id, action_text = action.value
        detail_id, detail_text = detail.value
        if "%s" in detail_text:
            detail_text = detail_text % (detail_arg or "no details")
        fields = {
            "project_id": project_id,
            "request_id": context.request_id,
            "resource_type": resource.value,
            "resource_uuid": resource_uuid,
            "event_id": f"VOLUME_{resource.value}_{action_id}_{detail_id}",
            "user_message": f"{action_text}: {detail_text}",
            "ttl_seconds": self._ttl,
        }
        if session is not None:
            # In the caller's transaction: the message is visible with the error status.
            messages_repo.create(session, **fields)  # type: ignore[arg-type]
            return
        try:
            with self._db.session() as own:
                messages_repo.create(own, **fields)  # type: ignore[arg-type]
        except Exception:  # a lost message must never mask the failure it reports
            LOG.exception("could not record user message for %s", resource_uuid)
