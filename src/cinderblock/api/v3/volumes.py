"""/v3/{project_id}/volumes: CRUD, metadata, actions."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from cinderblock import exceptions as exc
from cinderblock.api import validation
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.params import build_list_params
from cinderblock.api.schemas import manage as manage_schemas
from cinderblock.api.schemas import volumes as schemas
from cinderblock.api.v3 import attachments as attachment_actions
from cinderblock.api.validation import validate
from cinderblock.api.views import volumes as views
from cinderblock.db.query import ListParams
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.services.common import scope
from cinderblock.services.manage import ManageService
from cinderblock.services.migrate import MigrateService
from cinderblock.services.policy import authorize
from cinderblock.services.volumes import CreateRequest, VolumeService
from cinderblock.states import MIGRATION_STATUSES, VOLUME_RESETTABLE, AttachStatus
from cinderblock.volume.repair import request_repair

USER_FILTERS = (
    "name",
    "status",
    "metadata",
    "bootable",
    "migration_status",
    "availability_zone",
    "group_id",
    "size",
    "created_at",
    "updated_at",
    "consumes_quota",
)
ADMIN_FILTERS = (
    "id",
    "host",
    "user_id",
    "volume_type_id",
    "display_name",
    "display_description",
    "description",
    "attach_status",
    "snapshot_id",
    "source_volid",
    "multiattach",
    "cluster_name",
    "provider_id",
)
VERSION_GATED = {
    "group_id": "3.10",
    "created_at": "3.60",
    "updated_at": "3.60",
    "consumes_quota": "3.65",
    "glance_metadata": "3.4",
}


def _service(req: ApiRequest) -> VolumeService:
    return VolumeService(req.deps)


def _list_params(req: ApiRequest) -> tuple[ListParams, bool]:
    """Filters, sorting and paging of a volume list (index, detail and summary alike)."""
    params, all_tenants = build_list_params(
        req,
        user_filters=USER_FILTERS,
        admin_filters=ADMIN_FILTERS,
        bool_filters=("bootable", "consumes_quota", "multiattach"),
        int_filters=("size",),
        version_gated=VERSION_GATED,
        like_filters=("name", "status", "availability_zone", "description", "display_name"),
        time_filters=("created_at", "updated_at"),
    )
    if "name" in params.filters:
        params.filters["display_name"] = params.filters.pop("name")
    if "name" in params.like_filters:
        params.like_filters["display_name"] = params.like_filters.pop("name")
    if "description" in params.filters:
        params.filters["display_description"] = params.filters.pop("description")
    return params, all_tenants


def _list(req: ApiRequest, detailed: bool) -> Reply:
    authorize(req.ctx, "volume:get_all")
    params, all_tenants = _list_params(req)
    with req.deps.db.read() as session:
        page = _service(req).list_page(session, req.ctx, params, all_tenants)
    if detailed:
        items = views.page_details(req, page)
    else:
        items = [views.summary(req, row) for row in page.rows]
    body: dict[str, Any] = {"volumes": items}
    if page.rows and params.limit is not None and len(page.rows) >= params.limit:
        body["volumes_links"] = [{"rel": "next", "href": req.next_link(page.rows[-1].id)}]
    if page.count is not None:
        body["count"] = page.count
    return Reply(200, body)


def index(req: ApiRequest) -> Reply:
    return _list(req, detailed=False)


def detail(req: ApiRequest) -> Reply:
    return _list(req, detailed=True)


def show(req: ApiRequest, volume_id: str) -> Reply:
    with req.deps.db.read() as session:
        page = _service(req).show_page(session, req.ctx, volume_id)
    authorize(req.ctx, "volume:get", page.rows[0])
    return Reply(200, {"volume": views.page_details(req, page)[0]})


def summary(req: ApiRequest) -> Reply:
    # The list's own parsing: typed boolean/time filters (a raw string compared with a
    # boolean or timestamp column is a database error on PostgreSQL), names mapped.
    authorize(req.ctx, "volume:get_all")
    params, all_tenants = _list_params(req)
    params.limit = None
    with req.deps.db.read() as session:
        volumes, _ = _service(req).list(session, req.ctx, params, all_tenants)
        body: dict[str, Any] = {
            "total_count": len(volumes),
            "total_size": sum(v.size for v in volumes),
        }
        if req.at_least("3.36"):
            meta: dict[str, list[str]] = {}
            for volume in volumes:
                for key, value in volumes_repo.metadata_of(volume).items():
                    values = meta.setdefault(key, [])
                    if value not in values:
                        values.append(value)
            body["metadata"] = meta
    return Reply(200, {"volume-summary": body})


def create(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume:create")
    body = req.body()
    validate(schemas.create_v353 if req.at_least("3.53") else schemas.create, body)
    vol = body["volume"]
    if vol.get("multiattach"):
        raise exc.InvalidInput(
            reason="multiattach parameter has been removed. The default behavior is to use "
            "multiattach enabled volume types. Contact your administrator to create a "
            "multiattach enabled volume type and use it to create multiattach volumes."
        )
    for unsupported in (
        "imageRef",
        "image_id",
        "backup_id",
        "consistencygroup_id",
        "source_replica",
    ):
        if vol.get(unsupported):
            raise exc.InvalidInput(reason=f"{unsupported} is not supported by this service yet.")
    if vol.get("group_id") and req.at_least("3.13"):
        raise exc.InvalidInput(reason="group_id is not supported by this service yet.")
    size = vol.get("size")
    request = CreateRequest(
        size=validation.size_value("size", size) if size is not None else None,
        name=validation.strip_name(vol.get("name", vol.get("display_name"))),
        description=validation.strip_name(vol.get("description", vol.get("display_description"))),
        volume_type=vol.get("volume_type") or None,  # "" means the default, as in Cinder
        availability_zone=vol.get("availability_zone"),
        metadata=vol.get("metadata") or {},
        snapshot_id=vol.get("snapshot_id"),
        source_volid=vol.get("source_volid"),
    )
    volume = _service(req).create(req.ctx, request)
    return Reply(202, {"volume": views.detail(req, volume, extended=False)})


def update(req: ApiRequest, volume_id: str) -> Reply:
    body = req.body()
    validate(schemas.update_v353 if req.at_least("3.53") else schemas.update, body)
    vol = body["volume"]
    changes: dict[str, Any] = {}
    for src, dst in (
        ("name", "display_name"),
        ("display_name", "display_name"),
        ("description", "display_description"),
        ("display_description", "display_description"),
    ):
        if src in vol:
            changes[dst] = validation.strip_name(vol[src])
    if "metadata" in vol:
        changes["metadata"] = vol["metadata"]
    service = _service(req)
    _authorize_on(req, "volume:update", volume_id)
    service.update(req.ctx, volume_id, changes)
    with req.deps.db.session() as session:
        volume = service.get(session, req.ctx, volume_id)
        return Reply(200, {"volume": views.detail(req, volume, extended=False)})


def delete(req: ApiRequest, volume_id: str) -> Reply:
    cascade = validation.to_bool(req.query.get("cascade", "false"))
    force = req.at_least("3.23") and validation.to_bool(req.query.get("force", "false"))
    _authorize_on(req, "volume:delete", volume_id)
    _service(req).delete(req.ctx, volume_id, cascade=cascade, force=force)
    return Reply(202)


def _authorize_on(req: ApiRequest, action: str, volume_id: str) -> None:
    """404 for a volume the caller cannot see, then the policy for action on it."""
    with req.deps.db.read() as session:
        authorize(req.ctx, action, volumes_repo.owner_of(session, volume_id, scope(req.ctx)))


# --- metadata ------------------------------------------------------------------------------
def _etag(metadata: dict[str, str]) -> str:
    return hashlib.md5(orjson.dumps({"metadata": metadata}), usedforsecurity=False).hexdigest()


def _check_if_match(req: ApiRequest, metadata: dict[str, str]) -> None:
    wanted = req.request.headers.get("if-match")
    if req.at_least("3.15") and wanted and wanted.strip('"') != _etag(metadata):
        raise exc.PreconditionFailed()


def metadata_index(req: ApiRequest, volume_id: str) -> Reply:
    with req.deps.db.read() as session:
        volume = _service(req).get(session, req.ctx, volume_id)
        authorize(req.ctx, "volume:get_volume_metadata", volume)
        meta = volumes_repo.metadata_of(volume)
    headers = {"etag": _etag(meta)} if req.at_least("3.15") else {}
    return Reply(200, {"metadata": meta}, headers)


def _write_metadata(req: ApiRequest, volume_id: str, replace: bool) -> Reply:
    body = req.body()
    validate(schemas.metadata, body)
    service = _service(req)
    with req.deps.db.session() as session:
        volume = service.get(session, req.ctx, volume_id)
        authorize(
            req.ctx,
            "volume:update_volume_metadata" if replace else "volume:create_volume_metadata",
            volume,
        )
        service.check_metadata_writable(volume)
        if replace:
            _check_if_match(req, volumes_repo.metadata_of(volume))
        meta = volumes_repo.set_metadata(session, volume, body["metadata"], replace=replace)
    return Reply(200, {"metadata": meta})


def metadata_create(req: ApiRequest, volume_id: str) -> Reply:
    return _write_metadata(req, volume_id, replace=False)


def metadata_replace(req: ApiRequest, volume_id: str) -> Reply:
    return _write_metadata(req, volume_id, replace=True)


def metadata_show(req: ApiRequest, volume_id: str, key: str) -> Reply:
    with req.deps.db.read() as session:
        volume = _service(req).get(session, req.ctx, volume_id)
        authorize(req.ctx, "volume:get_volume_metadata", volume)
        meta = volumes_repo.metadata_of(volume)
    if key not in meta:
        raise exc.VolumeMetadataNotFound(volume_id=volume_id, key=key)
    return Reply(200, {"meta": {key: meta[key]}})


def metadata_update(req: ApiRequest, volume_id: str, key: str) -> Reply:
    body = req.body()
    if isinstance(body, dict) and isinstance(body.get("meta"), dict) and len(body["meta"]) > 1:
        raise exc.Invalid("Request body contains too many items")
    validate(schemas.metadata_item, body)
    if key not in body["meta"]:
        raise exc.Invalid("Request body and URI mismatch")
    service = _service(req)
    with req.deps.db.session() as session:
        volume = service.get(session, req.ctx, volume_id)
        authorize(req.ctx, "volume:update_volume_metadata", volume)
        service.check_metadata_writable(volume)
        _check_if_match(req, volumes_repo.metadata_of(volume))
        volumes_repo.set_metadata(session, volume, body["meta"], replace=False)
    return Reply(200, {"meta": body["meta"]})


def metadata_delete(req: ApiRequest, volume_id: str, key: str) -> Reply:
    service = _service(req)
    with req.deps.db.session() as session:
        volume = service.get(session, req.ctx, volume_id)
        authorize(req.ctx, "volume:delete_volume_metadata", volume)
        service.check_metadata_writable(volume)
        _check_if_match(req, volumes_repo.metadata_of(volume))
        volumes_repo.delete_metadata_key(session, volume, key)
    return Reply(200)


# --- actions -------------------------------------------------------------------------------
def action(req: ApiRequest, volume_id: str) -> Reply:
    body = req.body()
    if not isinstance(body, dict) or len(body) != 1:
        raise exc.Invalid("Malformed request body")
    name = next(iter(body))
    handler = _ACTIONS.get(name)
    if handler is None:
        raise exc.Invalid(f"There is no such action: {name}")
    min_version = _ACTION_MIN_VERSION.get(name)
    if min_version and not req.at_least(min_version):
        # Like a method missing at this version: Cinder's generic 404.
        raise exc.ResourceNotFound()
    with req.deps.db.session() as session:
        volume = _service(req).get(session, req.ctx, volume_id)  # 404 before anything else
        authorize(req.ctx, ACTION_POLICY[name], volume)  # then policy, before the body
        if name == "os-extend" and volume.status == "in-use":
            authorize(req.ctx, "volume:extend_attached_volume", volume)
    return handler(req, volume_id, body)


def _extend(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.extend, body)
    _service(req).extend(
        req.ctx,
        volume_id,
        validation.size_value("new_size", body["os-extend"]["new_size"]),
        allow_in_use=req.at_least("3.42"),
    )
    return Reply(202)


def _reset_status(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.reset_status, body)
    args = body["os-reset_status"]
    status = args.get("status")
    attach_status = args.get("attach_status")
    migration_status = args.get("migration_status")
    if status is None and attach_status is None and migration_status is None:
        raise exc.Invalid(
            "Must specify 'status', 'attach_status' or 'migration_status' for update."
        )
    if status is not None:
        status = status.lower()
        if status not in VOLUME_RESETTABLE and status != "deleting":
            raise exc.Invalid(f"Must specify a valid status: {status}")
    if attach_status is not None:
        attach_status = attach_status.lower()
        if attach_status not in (AttachStatus.ATTACHED, AttachStatus.DETACHED):
            raise exc.Invalid(f"Must specify a valid attach status: {attach_status}")
    if migration_status is not None:
        migration_status = migration_status.lower()
        if migration_status not in MIGRATION_STATUSES:
            raise exc.Invalid(f"Must specify a valid migration status: {migration_status}")
    _service(req).reset_status(req.ctx, volume_id, status, attach_status, migration_status)
    return Reply(202)


def _force_delete(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.force_delete, body)
    _service(req).force_delete(req.ctx, volume_id)
    return Reply(202)


def _revert(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(schemas.revert, body)
    _service(req).revert(req.ctx, volume_id, body["revert"]["snapshot_id"])
    return Reply(202)


def _unmanage(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    validate(manage_schemas.unmanage, body)
    ManageService(req.deps).unmanage_volume(req.ctx, volume_id)
    return Reply(202)


def _repair_status(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    """Our extension: the status from what the backend holds (volume/repair.py)."""
    args = body["os-repair_status"]
    return Reply(200, request_repair(req.deps, req.ctx, "volume", volume_id, args))


def _migrate(req: ApiRequest, volume_id: str, body: dict[str, Any]) -> Reply:
    MigrateService(req.deps).migrate(req.ctx, volume_id, body, clusters=req.at_least("3.16"))
    return Reply(202)


_ACTIONS = {
    **attachment_actions.VOLUME_ACTIONS,
    "os-unmanage": _unmanage,
    "os-extend": _extend,
    "os-reset_status": _reset_status,
    "os-repair_status": _repair_status,
    "os-force_delete": _force_delete,
    "os-migrate_volume": _migrate,
    "revert": _revert,
}
_ACTION_MIN_VERSION = {"revert": "3.40"}
# The policy action each volume action is authorized as.
ACTION_POLICY = {
    "os-reserve": "volume_extension:volume_actions:reserve",
    "os-unreserve": "volume_extension:volume_actions:unreserve",
    "os-begin_detaching": "volume_extension:volume_actions:begin_detaching",
    "os-roll_detaching": "volume_extension:volume_actions:roll_detaching",
    "os-attach": "volume_extension:volume_actions:attach",
    "os-detach": "volume_extension:volume_actions:detach",
    "os-initialize_connection": "volume_extension:volume_actions:initialize_connection",
    "os-terminate_connection": "volume_extension:volume_actions:terminate_connection",
    "os-update_readonly_flag": "volume_extension:volume_actions:update_readonly",
    "os-set_bootable": "volume:update",
    "os-unmanage": "volume_extension:volume_unmanage",
    "os-extend": "volume:extend",
    "os-reset_status": "volume_extension:volume_admin_actions:reset_status",
    "os-repair_status": "volume_extension:volume_admin_actions:repair_status",
    "os-force_delete": "volume_extension:volume_admin_actions:force_delete",
    "os-migrate_volume": "volume_extension:volume_admin_actions:migrate_volume",
    "revert": "volume:revert_to_snapshot",
}
