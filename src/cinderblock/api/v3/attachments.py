"""/v3/{project_id}/attachments (3.27+; os-complete 3.44; mode 3.54) and the legacy
attach actions on volumes (os-reserve, os-attach, os-initialize_connection, ...)."""

from __future__ import annotations

import json
from typing import Any

from cinderblock import exceptions as exc
from cinderblock.api import validation
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.params import parse_limit
from cinderblock.api.schemas import attachments as schemas
from cinderblock.api.validation import validate
from cinderblock.api.views import timestamp
from cinderblock.db.models import VolumeAttachment
from cinderblock.db.repo import attachments as attachments_repo
from cinderblock.services.attachments import AttachmentService
from cinderblock.services.policy import allowed, authorize

FILTERS = ("volume_id", "status", "instance_id", "attach_status")


def _service(req: ApiRequest) -> AttachmentService:
    return AttachmentService(req.deps)


def summary(row: VolumeAttachment) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.attach_status,
        "instance": row.instance_uuid,
        "volume_id": row.volume_id,
    }


def detail(row: VolumeAttachment) -> dict[str, Any]:
    info = attachments_repo.loads(row.connection_info)
    # The attachments API shows connection_info flattened: data keys at the top.
    flat: dict[str, Any] = {}
    if info:
        flat = {
            **(info.get("data") or {}),
            "driver_volume_type": info.get("driver_volume_type"),
            "attachment_id": row.id,
        }
    return {
        **summary(row),
        "attached_at": timestamp(row.attach_time) or "",
        "detached_at": timestamp(row.detach_time) or "",
        "attach_mode": row.attach_mode or "null",
        "connection_info": flat,
    }


def _connector(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as err:
            raise exc.InvalidInput(reason="connector must be an object") from err
    if not isinstance(value, dict):
        raise exc.InvalidInput(reason="connector must be an object")
    return value


def create(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume:attachment_create")
    body = req.body()
    validate(schemas.create, body)
    att = body["attachment"]
    mode = att.get("mode") if req.at_least("3.54") else None
    if "mode" in att and not req.at_least("3.54"):
        raise exc.ValidationError("Additional properties are not allowed ('mode' was unexpected)")
    row = _service(req).create(
        req.ctx,
        att["volume_uuid"],
        att.get("instance_uuid"),
        _connector(att.get("connector")),
        mode,
    )
    return Reply(200, {"attachment": detail(row)})


def update(req: ApiRequest, attachment_id: str) -> Reply:
    body = req.body()
    validate(schemas.update, body)
    _authorize_on(req, "volume:attachment_update", attachment_id)
    row = _service(req).update(req.ctx, attachment_id, body["attachment"]["connector"])
    return Reply(200, {"attachment": detail(row)})


def action(req: ApiRequest, attachment_id: str) -> Reply:
    body = req.body()
    if not isinstance(body, dict) or list(body) != ["os-complete"]:
        name = next(iter(body), "") if isinstance(body, dict) else ""
        raise exc.Invalid(f"There is no such action: {name}")
    if not req.at_least("3.44"):
        # An action that does not exist yet at this version: Cinder's generic 404.
        raise exc.ResourceNotFound()
    validate(schemas.complete, body)
    _authorize_on(req, "volume:attachment_complete", attachment_id)
    _service(req).complete(req.ctx, attachment_id)
    return Reply(204)


def delete(req: ApiRequest, attachment_id: str) -> Reply:
    _authorize_on(req, "volume:attachment_delete", attachment_id)
    remaining = _service(req).delete(req.ctx, attachment_id)
    return Reply(200, {"attachments": [summary(r) for r in remaining]})


def show(req: ApiRequest, attachment_id: str) -> Reply:
    with req.deps.db.session() as session:
        row = _service(req).get(session, req.ctx, attachment_id)
        authorize(req.ctx, "volume:attachment_get", row)
        return Reply(200, {"attachment": detail(row)})


def _list(req: ApiRequest, detailed: bool) -> Reply:
    authorize(req.ctx, "volume:attachment_get_all")
    filters = {k: v for k, v in req.query.items() if k in FILTERS}
    project = req.ctx.project_id
    if (
        req.ctx.is_admin
        and validation.to_bool(req.query.get("all_tenants", "false"))
        and allowed(req.ctx, "volume:get_all_tenants")
    ):
        project = None
    with req.deps.db.session() as session:
        rows = attachments_repo.list_(session, project, filters, parse_limit(req))
        items = [detail(r) if detailed else summary(r) for r in rows]
    return Reply(200, {"attachments": items})


def _authorize_on(req: ApiRequest, action: str, attachment_id: str) -> None:
    """404 for an attachment the caller cannot see, then the policy for action on it."""
    with req.deps.db.session() as session:
        authorize(req.ctx, action, _service(req).get(session, req.ctx, attachment_id))


def index(req: ApiRequest) -> Reply:
    return _list(req, detailed=False)


def index_detail(req: ApiRequest) -> Reply:
    return _list(req, detailed=True)


ROUTES: list[tuple[str, list[str], Any, str | None]] = [
    ("/attachments", ["POST"], create, "3.27"),
    ("/attachments", ["GET"], index, "3.27"),
    ("/attachments/detail", ["GET"], index_detail, "3.27"),
    ("/attachments/{attachment_id}", ["GET"], show, "3.27"),
    ("/attachments/{attachment_id}", ["PUT"], update, "3.27"),
    ("/attachments/{attachment_id}", ["DELETE"], delete, "3.27"),
    ("/attachments/{attachment_id}/action", ["POST"], action, "3.27"),
]


# --- legacy volume actions --------------------------------------------------------------
def _reserve(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.reserve, body)
    _service(req).reserve(req.ctx, volume_id)
    return Reply(202)


def _unreserve(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.unreserve, body)
    _service(req).unreserve(req.ctx, volume_id)
    return Reply(202)


def _begin_detaching(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.begin_detaching, body)
    _service(req).begin_detaching(req.ctx, volume_id)
    return Reply(202)


def _roll_detaching(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.roll_detaching, body)
    _service(req).roll_detaching(req.ctx, volume_id)
    return Reply(202)


def _attach(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.attach, body)
    args = body["os-attach"]
    if not args.get("instance_uuid") and not args.get("host_name"):
        raise exc.InvalidInput(reason="Invalid request to attach volume to an invalid target")
    _service(req).attach(
        req.ctx,
        volume_id,
        args["mountpoint"],
        args.get("instance_uuid"),
        args.get("host_name"),
        args.get("mode", "rw"),
    )
    return Reply(202)


def _detach(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.detach, body)
    args = body.get("os-detach") or {}
    _service(req).detach(req.ctx, volume_id, args.get("attachment_id"))
    return Reply(202)


def _initialize_connection(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.initialize_connection, body)
    connector = _connector(body["os-initialize_connection"]["connector"]) or {}
    info = _service(req).initialize_connection(req.ctx, volume_id, connector)
    # Cinder's API echoes the connector's flag at the top level, for the host's os-brick.
    info["enforce_multipath"] = connector.get("enforce_multipath", False)
    return Reply(200, {"connection_info": info})


def _terminate_connection(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.terminate_connection, body)
    connector = _connector(body["os-terminate_connection"]["connector"])
    _service(req).terminate_connection(req.ctx, volume_id, connector)
    return Reply(202)


def _update_readonly_flag(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.update_readonly_flag, body)
    readonly = validation.to_bool(body["os-update_readonly_flag"]["readonly"])
    _service(req).update_readonly_flag(req.ctx, volume_id, readonly)
    return Reply(202)


def _set_bootable(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.set_bootable, body)
    bootable = validation.to_bool(body["os-set_bootable"]["bootable"])
    _service(req).set_bootable(req.ctx, volume_id, bootable)
    return Reply(200)


VOLUME_ACTIONS = {
    "os-reserve": _reserve,
    "os-unreserve": _unreserve,
    "os-begin_detaching": _begin_detaching,
    "os-roll_detaching": _roll_detaching,
    "os-attach": _attach,
    "os-detach": _detach,
    "os-initialize_connection": _initialize_connection,
    "os-terminate_connection": _terminate_connection,
    "os-update_readonly_flag": _update_readonly_flag,
    "os-set_bootable": _set_bootable,
}
