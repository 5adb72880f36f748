"""/v3/{project_id}/messages (3.3+): why asynchronous operations failed."""

from __future__ import annotations

from typing import Any

from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.params import build_list_params
from cinderblock.api.views import timestamp
from cinderblock.db.models import Message
from cinderblock.db.repo import messages as messages_repo
from cinderblock.services.common import scope
from cinderblock.services.policy import authorize

USER_FILTERS = ("resource_uuid", "resource_type", "event_id", "request_id", "message_level")


def _view(req: ApiRequest, message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "event_id": message.event_id,
        "user_message": message.user_message,
        "message_level": message.message_level,
        "resource_type": message.resource_type,
        "resource_uuid": message.resource_uuid,
        "created_at": timestamp(message.created_at),
        "guaranteed_until": timestamp(message.expires_at),
        "request_id": message.request_id,
        "links": req.link("messages", message.id),
    }


def index(req: ApiRequest) -> Reply:
    authorize(req.ctx, "message:get_all")
    params, _ = build_list_params(
        req,
        user_filters=USER_FILTERS,
        admin_filters=(),
    )
    if not req.at_least("3.5"):
        params.marker, params.limit, params.offset = None, None, 0
        params.sort_keys, params.sort_dirs = ["created_at"], ["desc"]
    with req.deps.db.session() as session:
        rows = messages_repo.list_(session, req.ctx.project_id, params)
        body: dict[str, Any] = {"messages": [_view(req, m) for m in rows]}
    if rows and params.limit is not None and len(rows) >= params.limit and req.at_least("3.5"):
        body["messages_links"] = [{"rel": "next", "href": req.next_link(rows[-1].id)}]
    return Reply(200, body)


def show(req: ApiRequest, message_id: str) -> Reply:
    with req.deps.db.session() as session:
        message = messages_repo.get(session, message_id, scope(req.ctx))
        authorize(req.ctx, "message:get", message)
        return Reply(200, {"message": _view(req, message)})


def delete(req: ApiRequest, message_id: str) -> Reply:
    with req.deps.db.session() as session:
        message = messages_repo.get(session, message_id, scope(req.ctx))
        authorize(req.ctx, "message:delete", message)
        messages_repo.delete_one(session, message)
    return Reply(204)
