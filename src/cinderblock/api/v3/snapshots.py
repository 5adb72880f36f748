"""/v3/{project_id}/snapshots: CRUD, metadata, actions."""

from __future__ import annotations

from typing import Any

from cinderblock import exceptions as exc
from cinderblock.api import validation
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.params import build_list_params
from cinderblock.api.schemas import manage as manage_schemas
from cinderblock.api.schemas import snapshots as schemas
from cinderblock.api.schemas import volumes as volume_schemas
from cinderblock.api.validation import validate
from cinderblock.api.views import snapshots as views
from cinderblock.db.repo import snapshots as snapshots_repo
from cinderblock.services.manage import ManageService
from cinderblock.services.policy import authorize
from cinderblock.services.snapshots import SnapshotService
from cinderblock.states import SNAPSHOT_RESETTABLE
from cinderblock.volume.repair import request_repair

USER_FILTERS = ("name", "status", "volume_id", "metadata", "availability_zone", "consumes_quota")
ADMIN_FILTERS = ("id", "user_id", "display_name", "description", "group_snapshot_id")


def _service(req: ApiRequest) -> SnapshotService:
    return SnapshotService(req.deps)


def _list(req: ApiRequest, detailed: bool) -> Reply:
    authorize(req.ctx, "volume:get_all_snapshots")
    params, all_tenants = build_list_params(
        req,
        user_filters=USER_FILTERS,
        admin_filters=ADMIN_FILTERS,
        bool_filters=("consumes_quota",),
        version_gated={"metadata": "3.22", "consumes_quota": "3.65"},
        like_filters=("name", "status"),
    )
    if "name" in params.sort_keys and not req.at_least("3.30"):
        raise exc.InvalidSortKey()
    if "name" in params.filters:
        params.filters["display_name"] = params.filters.pop("name")
    if "name" in params.like_filters:
        params.like_filters["display_name"] = params.like_filters.pop("name")
    with req.deps.db.read() as session:
        snapshots, count = _service(req).list(session, req.ctx, params, all_tenants)
        if detailed:
            items = [views.detail(req, s) for s in snapshots]
        else:
            items = [views.summary(req, s) for s in snapshots]
    body: dict[str, Any] = {"snapshots": items}
    if snapshots and params.limit is not None and len(snapshots) >= params.limit:
        body["snapshots_links"] = [{"rel": "next", "href": req.next_link(snapshots[-1].id)}]
    if count is not None:
        body["count"] = count
    return Reply(200, body)


def index(req: ApiRequest) -> Reply:
    return _list(req, detailed=False)


def detail(req: ApiRequest) -> Reply:
    return _list(req, detailed=True)


def show(req: ApiRequest, snapshot_id: str) -> Reply:
    with req.deps.db.read() as session:
        snapshot = _service(req).get(session, req.ctx, snapshot_id)
        authorize(req.ctx, "volume:get_snapshot", snapshot)
        return Reply(200, {"snapshot": views.detail(req, snapshot)})


def create(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume:create_snapshot")
    body = req.body()
    validate(schemas.create, body)
    snap = body["snapshot"]
    volume_id = snap.get("volume_id")
    if volume_id is None:
        raise exc.InvalidInput(reason="'volume_id' must be specified")
    force = validation.to_bool(snap.get("force", False))
    if req.at_least("3.66"):
        if "force" in snap and not force:
            raise exc.InvalidInput(
                reason="Since microversion 3.66 the 'force' flag is invalid for this request. "
                "For backward compatibility, however, when the 'force' flag is passed with a "
                "value evaluating to True, it is silently ignored."
            )
        force = True
    snapshot = _service(req).create(
        req.ctx,
        volume_id,
        validation.strip_name(snap.get("name", snap.get("display_name"))),
        validation.strip_name(snap.get("description", snap.get("display_description"))),
        snap.get("metadata") or {},
        allow_in_use=force,
    )
    return Reply(202, {"snapshot": views.detail(req, snapshot, extended=False)})


def update(req: ApiRequest, snapshot_id: str) -> Reply:
    body = req.body()
    validate(schemas.update, body)
    snap = body["snapshot"]
    changes = {}
    for src, dst in (
        ("name", "display_name"),
        ("display_name", "display_name"),
        ("description", "display_description"),
        ("display_description", "display_description"),
    ):
        if src in snap:
            changes[dst] = validation.strip_name(snap[src])
    service = _service(req)
    _authorize_on(req, "volume:update_snapshot", snapshot_id)
    service.update(req.ctx, snapshot_id, changes)
    with req.deps.db.session() as session:
        snapshot = service.get(session, req.ctx, snapshot_id)
        return Reply(200, {"snapshot": views.detail(req, snapshot, extended=False)})


def delete(req: ApiRequest, snapshot_id: str) -> Reply:
    _authorize_on(req, "volume:delete_snapshot", snapshot_id)
    _service(req).delete(req.ctx, snapshot_id)
    return Reply(202)


def _authorize_on(req: ApiRequest, action: str, snapshot_id: str) -> None:
    """404 for a snapshot the caller cannot see, then the policy for action on it."""
    with req.deps.db.read() as session:
        authorize(req.ctx, action, _service(req).get(session, req.ctx, snapshot_id))


# --- metadata ------------------------------------------------------------------------------
def metadata_index(req: ApiRequest, snapshot_id: str) -> Reply:
    with req.deps.db.read() as session:
        snapshot = _service(req).get(session, req.ctx, snapshot_id)
        authorize(req.ctx, "volume:get_snapshot_metadata", snapshot)
        return Reply(200, {"metadata": snapshots_repo.metadata_of(snapshot)})


def _write_metadata(req: ApiRequest, snapshot_id: str, replace: bool) -> Reply:
    body = req.body()
    validate(volume_schemas.metadata, body)
    with req.deps.db.session() as session:
        snapshot = _service(req).get(session, req.ctx, snapshot_id)
        authorize(req.ctx, "volume:update_snapshot_metadata", snapshot)
        meta = snapshots_repo.set_metadata(session, snapshot, body["metadata"], replace=replace)
    return Reply(200, {"metadata": meta})


def metadata_create(req: ApiRequest, snapshot_id: str) -> Reply:
    return _write_metadata(req, snapshot_id, replace=False)


def metadata_replace(req: ApiRequest, snapshot_id: str) -> Reply:
    return _write_metadata(req, snapshot_id, replace=True)


def metadata_show(req: ApiRequest, snapshot_id: str, key: str) -> Reply:
    with req.deps.db.read() as session:
        snapshot = _service(req).get(session, req.ctx, snapshot_id)
        authorize(req.ctx, "volume:get_snapshot_metadata", snapshot)
        meta = snapshots_repo.metadata_of(snapshot)
    if key not in meta:
        raise exc.SnapshotMetadataNotFound(snapshot_id=snapshot_id, key=key)
    return Reply(200, {"meta": {key: meta[key]}})


def metadata_update(req: ApiRequest, snapshot_id: str, key: str) -> Reply:
    body = req.body()
    if isinstance(body, dict) and isinstance(body.get("meta"), dict) and len(body["meta"]) > 1:
        raise exc.Invalid("Request body contains too many items")
    validate(volume_schemas.metadata_item, body)
    if key not in body["meta"]:
        raise exc.Invalid("Request body and URI mismatch")
    with req.deps.db.session() as session:
        snapshot = _service(req).get(session, req.ctx, snapshot_id)
        authorize(req.ctx, "volume:update_snapshot_metadata", snapshot)
        snapshots_repo.set_metadata(session, snapshot, body["meta"], replace=False)
    return Reply(200, {"meta": body["meta"]})


def metadata_delete(req: ApiRequest, snapshot_id: str, key: str) -> Reply:
    with req.deps.db.session() as session:
        snapshot = _service(req).get(session, req.ctx, snapshot_id)
        authorize(req.ctx, "volume:delete_snapshot_metadata", snapshot)
        snapshots_repo.delete_metadata_key(session, snapshot, key)
    return Reply(200)


# --- actions -------------------------------------------------------------------------------
def action(req: ApiRequest, snapshot_id: str) -> Reply:
    body = req.body()
    if not isinstance(body, dict) or len(body) != 1:
        raise exc.Invalid("Malformed request body")
    name = next(iter(body))
    with req.deps.db.session() as session:
        snapshot = _service(req).get(session, req.ctx, snapshot_id)
        if name in ACTION_POLICY:
            authorize(req.ctx, ACTION_POLICY[name], snapshot)
    if name == "os-reset_status":
        validate(schemas.reset_status, body)
        status = body[name]["status"].lower()
        if status not in SNAPSHOT_RESETTABLE:
            raise exc.Invalid(f"Must specify a valid status: {status}")
        _service(req).reset_status(req.ctx, snapshot_id, status)
        return Reply(202)
    if name == "os-repair_status":  # our extension: the status from the backend's truth
        return Reply(200, request_repair(req.deps, req.ctx, "snapshot", snapshot_id, body[name]))
    if name == "os-force_delete":
        validate(schemas.force_delete, body)
        _service(req).force_delete(req.ctx, snapshot_id)
        return Reply(202)
    if name == "os-unmanage":
        validate(manage_schemas.unmanage, body)
        ManageService(req.deps).unmanage_snapshot(req.ctx, snapshot_id)
        return Reply(202)
    raise exc.Invalid(f"There is no such action: {name}")


# The policy action each snapshot action is authorized as.
ACTION_POLICY = {
    "os-reset_status": "volume_extension:snapshot_admin_actions:reset_status",
    "os-repair_status": "volume_extension:snapshot_admin_actions:repair_status",
    "os-force_delete": "volume_extension:snapshot_admin_actions:force_delete",
    "os-unmanage": "snapshot_extension:snapshot_unmanage",
}
