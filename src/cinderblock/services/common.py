"""Helpers shared by the API-side services."""

from __future__ import annotations

from dataclasses import dataclass

from cinderblock.config import Settings
from cinderblock.context import RequestContext
from cinderblock.db.database import Database
from cinderblock.rpc.base import Transport
from cinderblock.services.messages import MessageRecorder


@dataclass
class ServiceDeps:
    """Everything the API-side services need, built once per process."""

    settings: Settings
    db: Database
    transport: Transport
    messages: MessageRecorder


def scope(ctx: RequestContext) -> str | None:
    """Project to restrict single-object lookups to (admins see every project)."""
    return None if ctx.is_admin else ctx.project_id


def backend_of(host: str) -> str:
    """host@backend#pool -> host@backend."""
    return host.partition("#")[0]
