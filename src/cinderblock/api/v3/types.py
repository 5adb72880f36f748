"""/v3/{project_id}/types: volume types and extra specs."""

from __future__ import annotations

from cinderblock import exceptions as exc
from cinderblock.api import validation
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.params import parse_limit, parse_offset, parse_sort
from cinderblock.api.schemas import types as schemas
from cinderblock.api.validation import validate
from cinderblock.api.views import types as views
from cinderblock.db.models import VolumeType, utcnow
from cinderblock.db.repo import quotas as quotas_repo
from cinderblock.db.repo import types as types_repo
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.services.policy import authorize


def _get(req: ApiRequest, session: object, type_id: str) -> VolumeType:
    if type_id == "default":
        volume_type = types_repo.get_by_name(session, req.deps.settings.default_volume_type)  # type: ignore[arg-type]
        if volume_type is None:
            raise exc.VolumeTypeNotFound(volume_type_id="default")
    else:
        volume_type = types_repo.get(session, type_id)  # type: ignore[arg-type]
    if not volume_type.is_public and not req.ctx.is_admin:
        raise exc.VolumeTypeNotFound(volume_type_id=type_id)
    return volume_type


def index(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume_extension:type_get_all")
    is_public: bool | None = True
    raw = req.query.get("is_public")
    if req.ctx.is_admin:
        if raw is None or raw.lower() == "none":
            is_public = None if raw is not None else True
        else:
            is_public = validation.to_bool(raw)
    keys, dirs = parse_sort(req, default_key="created_at", default_dir="asc")
    with req.deps.db.session() as session:
        rows = types_repo.list_(
            session,
            is_public,
            keys,
            dirs,
            req.query.get("marker"),
            parse_limit(req),
            parse_offset(req),
        )
        return Reply(200, {"volume_types": [views.view(req, t) for t in rows]})


def show(req: ApiRequest, type_id: str) -> Reply:
    authorize(req.ctx, "volume_extension:type_get")
    with req.deps.db.session() as session:
        return Reply(200, {"volume_type": views.view(req, _get(req, session, type_id))})


def create(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume_extension:types_manage")
    body = req.body()
    validate(schemas.create, body)
    spec = body["volume_type"]
    name = spec["name"].strip()
    if not name:
        raise exc.InvalidVolumeType(reason="Type name must not be empty.")
    is_public = validation.to_bool(spec.get("os-volume-type-access:is_public", True))
    with req.deps.db.session() as session:
        volume_type = types_repo.create(
            session, name, spec.get("description"), is_public, spec.get("extra_specs") or {}
        )
        return Reply(200, {"volume_type": views.view(req, volume_type)})


def update(req: ApiRequest, type_id: str) -> Reply:
    authorize(req.ctx, "volume_extension:types_manage")
    body = req.body()
    validate(schemas.update, body)
    spec = body["volume_type"]
    with req.deps.db.session() as session:
        volume_type = types_repo.get(session, type_id)
        if "name" in spec and spec["name"] is not None:
            name = spec["name"].strip()
            if not name:
                raise exc.InvalidVolumeType(reason="Type name must not be empty.")
            default_name = req.deps.settings.default_volume_type
            if volume_type.name == default_name and name != default_name:
                # The default is found by its configured name: renaming it would break
                # every create without a type (and let it be deleted).
                raise exc.InvalidVolumeType(reason="The default volume type cannot be renamed.")
            other = types_repo.get_by_name(session, name)
            if other is not None and other.id != type_id:
                raise exc.VolumeTypeExists(name=name)
            quotas_repo.rename_type(session, volume_type.name, name)  # volumes_<name> etc.
            volume_type.name = name
        if "description" in spec:
            volume_type.description = spec["description"]
        if "is_public" in spec:
            volume_type.is_public = validation.to_bool(spec["is_public"])
        volume_type.updated_at = utcnow()
        session.flush()
        return Reply(200, {"volume_type": views.view(req, volume_type)})


def delete(req: ApiRequest, type_id: str) -> Reply:
    authorize(req.ctx, "volume_extension:types_manage")
    with req.deps.db.session() as session:
        volume_type = types_repo.get(session, type_id)
        if volume_type.name == req.deps.settings.default_volume_type:
            raise exc.Invalid("Default volume type can not be deleted.")
        if volumes_repo.count_using_type(session, type_id):
            raise exc.Invalid(f"Target volume type is still in use: {type_id}")
        session.delete(volume_type)
    return Reply(202)


def extra_specs_index(req: ApiRequest, type_id: str) -> Reply:
    authorize(req.ctx, "volume_extension:types_extra_specs:index")
    with req.deps.db.session() as session:
        volume_type = _get(req, session, type_id)
        return Reply(200, {"extra_specs": views.view(req, volume_type)["extra_specs"]})


def extra_specs_create(req: ApiRequest, type_id: str) -> Reply:
    authorize(req.ctx, "volume_extension:types_extra_specs:create")
    body = req.body()
    validate(schemas.extra_specs_body, body)
    with req.deps.db.session() as session:
        volume_type = types_repo.get(session, type_id)
        types_repo.set_extra_specs(session, volume_type, body["extra_specs"])
    return Reply(200, {"extra_specs": body["extra_specs"]})


def extra_specs_show(req: ApiRequest, type_id: str, key: str) -> Reply:
    authorize(req.ctx, "volume_extension:types_extra_specs:show")
    with req.deps.db.session() as session:
        specs = views.view(req, _get(req, session, type_id))["extra_specs"]
    if key not in specs:
        raise exc.VolumeTypeExtraSpecsNotFound(volume_type_id=type_id, key=key)
    return Reply(200, {key: specs[key]})


def extra_specs_update(req: ApiRequest, type_id: str, key: str) -> Reply:
    authorize(req.ctx, "volume_extension:types_extra_specs:update")
    body = req.body()
    if isinstance(body, dict) and len(body) > 1:
        raise exc.Invalid("Request body contains too many items")
    validate(schemas.extra_spec_item, body)
    if key not in body:
        raise exc.Invalid("Request body and URI mismatch")
    with req.deps.db.session() as session:
        types_repo.set_extra_specs(session, types_repo.get(session, type_id), body)
    return Reply(200, body)


def extra_specs_delete(req: ApiRequest, type_id: str, key: str) -> Reply:
    authorize(req.ctx, "volume_extension:types_extra_specs:delete")
    with req.deps.db.session() as session:
        types_repo.delete_extra_spec(session, types_repo.get(session, type_id), key)
    return Reply(202)
