"""Helpers shared by the API-side services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cinderblock import exceptions as exc
from cinderblock.concurrency import RunSlots
from cinderblock.config import Settings
from cinderblock.context import RequestContext
from cinderblock.db.database import Database
from cinderblock.rpc.base import Transport
from cinderblock.services.messages import MessageRecorder

if TYPE_CHECKING:
    from cinderblock.services.quotas import QuotaEngine


@dataclass
class ServiceDeps:
    """Everything the API-side services need, built once per process."""

    settings: Settings
    db: Database
    transport: Transport
    messages: MessageRecorder
    # backend host (host@backend) -> capability names its driver implements, or None
    # when the backend is unknown; lets the API refuse before any state changes.
    capabilities_of: Callable[[str], frozenset[str] | None] = field(default=lambda _host: None)
    # Per-process quota engine; QuotaEngine.for_deps builds it on first use.
    quotas: QuotaEngine | None = None
    # Handlers running at once (api_handler_slots); RPC waits lend theirs.
    run_slots: RunSlots = field(default_factory=lambda: RunSlots(Settings.api_handler_slots))


def scope(ctx: RequestContext) -> str | None:
    """Project to restrict single-object lookups to (admins see every project)."""
    return None if ctx.is_admin else ctx.project_id


def backend_of(host: str) -> str:
    """host@backend#pool -> host@backend."""
    return host.partition("#")[0]


def require_capability(deps: ServiceDeps, host: str | None, capability: str, what: str) -> None:
    """Refuse (400) an action the owning backend's driver does not implement, or an action
    on a volume that no backend holds (it failed scheduling): nothing could carry it out,
    and the status it would start would stay forever."""
    if host is None:
        raise exc.InvalidVolume(reason="The volume is not on any backend.")
    caps = deps.capabilities_of(backend_of(host))
    if caps is not None and capability not in caps:
        raise exc.InvalidVolume(reason=f"The volume's backend does not support {what}.")
