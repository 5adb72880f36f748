"""/v3/{project_id}/os-quota-sets/{target}: per-project quotas (show, defaults, update, reset)."""

from __future__ import annotations

from typing import Any

from cinderblock import exceptions as exc
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.validation import validate
from cinderblock.services.policy import authorize
from cinderblock.services.quotas import QuotaEngine

update_body = {
    "type": "object",
    "properties": {"quota_set": {"type": "object", "minProperties": 1}},
    "required": ["quota_set"],
    "additionalProperties": False,
}

_TRUE = ("1", "t", "true", "on", "y", "yes")


def _engine(req: ApiRequest) -> QuotaEngine:
    return QuotaEngine.for_deps(req.deps)


def _may_read(req: ApiRequest, target_project_id: str) -> None:
    """Project readers see their own project's quotas; admins any project's (whatever
    the policy file says, no member sees another project's)."""
    authorize(req.ctx, "volume_extension:quotas:show", {"project_id": target_project_id})
    if not req.ctx.is_admin and target_project_id != req.ctx.project_id:
        raise exc.PolicyNotAuthorized(action="volume_extension:quotas:show")


def show(req: ApiRequest, target_project_id: str) -> Reply:
    _may_read(req, target_project_id)
    usage = str(req.query.get("usage", "")).strip().lower() in _TRUE
    with req.deps.db.session() as session:
        body: dict[str, Any] = _engine(req).quota_set(session, target_project_id, usage)
    body["id"] = target_project_id
    return Reply(200, {"quota_set": body})


def defaults(req: ApiRequest, target_project_id: str) -> Reply:
    _may_read(req, target_project_id)
    with req.deps.db.session() as session:
        body: dict[str, Any] = _engine(req).defaults(session)
    body["id"] = target_project_id
    return Reply(200, {"quota_set": body})


def update(req: ApiRequest, target_project_id: str) -> Reply:
    authorize(req.ctx, "volume_extension:quotas:update", {"project_id": target_project_id})
    body = req.body()
    validate(update_body, body)
    engine = _engine(req)
    engine.update(req.deps.db, target_project_id, body["quota_set"])
    with req.deps.db.session() as session:
        limits = engine.quota_set(session, target_project_id, usage=False)
    return Reply(200, {"quota_set": limits})


def delete(req: ApiRequest, target_project_id: str) -> Reply:
    """Back to the defaults: the project's own limits are dropped (usage is kept)."""
    authorize(req.ctx, "volume_extension:quotas:delete", {"project_id": target_project_id})
    _engine(req).reset(req.deps.db, target_project_id)
    return Reply(200)


ROUTES: list[tuple[str, list[str], Any, str | None]] = [
    ("/os-quota-sets/{target_project_id}", ["GET"], show, None),
    ("/os-quota-sets/{target_project_id}", ["PUT"], update, None),
    ("/os-quota-sets/{target_project_id}", ["DELETE"], delete, None),
    ("/os-quota-sets/{target_project_id}/defaults", ["GET"], defaults, None),
]
