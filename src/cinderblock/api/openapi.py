"""The OpenAPI 3.0 document of the API, built from the route tables.

Every route is listed in both URL forms (`/v3/{project_id}/...` and `/v3/...`), with its path
parameters, the query parameters its handler reads, the OpenStack-API-Version header, the
request body schema the handler validates against (the JSON schemas of api/schemas, rewritten
from Draft 4 into OpenAPI 3.0's dialect) and the Cinder fault body for every 4xx.

One Draft 4 keyword has no OpenAPI 3.0 counterpart: `patternProperties`, which says which
metadata / extra-spec keys are valid. The document stays valid OpenAPI 3.0 by giving the value
schema as `additionalProperties` and the key patterns in the `x-patternProperties` extension
(which `restore_pattern_properties` turns back into the JSON-schema keyword for tools, such as
a fuzzer, that understand it).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cinderblock import __version__
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.microversions import HEADER, MAX_VERSION, MIN_VERSION
from cinderblock.api.schemas import attachments as attachment_schemas
from cinderblock.api.schemas import manage as manage_schemas
from cinderblock.api.schemas import snapshots as snapshot_schemas
from cinderblock.api.schemas import types as type_schemas
from cinderblock.api.schemas import volumes as volume_schemas
from cinderblock.api.v3 import admin, attachments, messages, quotas, snapshots, volumes

# (path below /v3/{project_id}, methods, handler, min microversion), as in api.app.
RouteSpec = tuple[str, list[str], Callable[..., Any], str | None]

FAULT_REF = "#/components/schemas/Fault"
_PATH_PARAM = re.compile(r"{([^}]+)}")


def _any_of(*schemas: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": list(schemas)}


# os-repair_status (our extension) takes no arguments and has no schema module of its own.
_REPAIR_STATUS = {
    "type": "object",
    "properties": {"os-repair_status": {"type": ["object", "null"], "maxProperties": 0}},
    "required": ["os-repair_status"],
    "additionalProperties": False,
}

# Request bodies, by (path below /v3/{project_id}, method). Where the schema depends on the
# microversion the more permissive one is given (the other answers 400 with a fault).
REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/volumes", "POST"): volume_schemas.create,
    ("/volumes/{volume_id}", "PUT"): volume_schemas.update,
    ("/volumes/{volume_id}/action", "POST"): _any_of(
        volume_schemas.extend,
        volume_schemas.reset_status,
        _REPAIR_STATUS,
        volume_schemas.force_delete,
        volume_schemas.revert,
        manage_schemas.unmanage,
        attachment_schemas.reserve,
        attachment_schemas.unreserve,
        attachment_schemas.begin_detaching,
        attachment_schemas.roll_detaching,
        attachment_schemas.attach,
        attachment_schemas.detach,
        attachment_schemas.initialize_connection,
        attachment_schemas.terminate_connection,
        attachment_schemas.update_readonly_flag,
        attachment_schemas.set_bootable,
    ),
    ("/volumes/{volume_id}/metadata", "POST"): volume_schemas.metadata,
    ("/volumes/{volume_id}/metadata", "PUT"): volume_schemas.metadata,
    ("/volumes/{volume_id}/metadata/{key}", "PUT"): volume_schemas.metadata_item,
    ("/snapshots", "POST"): snapshot_schemas.create,
    ("/snapshots/{snapshot_id}", "PUT"): snapshot_schemas.update,
    ("/snapshots/{snapshot_id}/action", "POST"): _any_of(
        snapshot_schemas.reset_status,
        _REPAIR_STATUS,
        snapshot_schemas.force_delete,
        manage_schemas.unmanage,
    ),
    ("/snapshots/{snapshot_id}/metadata", "POST"): volume_schemas.metadata,
    ("/snapshots/{snapshot_id}/metadata", "PUT"): volume_schemas.metadata,
    ("/snapshots/{snapshot_id}/metadata/{key}", "PUT"): volume_schemas.metadata_item,
    ("/types", "POST"): type_schemas.create,
    ("/types/{type_id}", "PUT"): type_schemas.update,
    ("/types/{type_id}/extra_specs", "POST"): type_schemas.extra_specs_body,
    ("/types/{type_id}/extra_specs/{key}", "PUT"): type_schemas.extra_spec_item,
    ("/manageable_volumes", "POST"): manage_schemas.manage_volume_v316,
    ("/os-volume-manage", "POST"): manage_schemas.manage_volume_v316,
    ("/manageable_snapshots", "POST"): manage_schemas.manage_snapshot,
    ("/os-snapshot-manage", "POST"): manage_schemas.manage_snapshot,
    ("/os-services/{action}", "PUT"): admin._service_body,
    ("/attachments", "POST"): attachment_schemas.create,
    ("/attachments/{attachment_id}", "PUT"): attachment_schemas.update,
    ("/attachments/{attachment_id}/action", "POST"): attachment_schemas.complete,
    ("/os-quota-sets/{target_project_id}", "PUT"): quotas.update_body,
}

# Success statuses other than 200, by (path, method).
SUCCESS_STATUS: dict[tuple[str, str], int | tuple[int, ...]] = {
    ("/volumes", "POST"): 202,
    ("/volumes/{volume_id}", "DELETE"): 202,
    # os-set_bootable, os-repair_status, os-initialize_connection: 200
    ("/volumes/{volume_id}/action", "POST"): (200, 202),
    ("/snapshots", "POST"): 202,
    ("/snapshots/{snapshot_id}", "DELETE"): 202,
    ("/snapshots/{snapshot_id}/action", "POST"): (200, 202),  # os-repair_status: 200
    ("/types/{type_id}", "DELETE"): 202,
    ("/types/{type_id}/extra_specs/{key}", "DELETE"): 202,
    ("/messages/{message_id}", "DELETE"): 204,
    ("/manageable_volumes", "POST"): 202,
    ("/os-volume-manage", "POST"): 202,
    ("/manageable_snapshots", "POST"): 202,
    ("/os-snapshot-manage", "POST"): 202,
    ("/attachments/{attachment_id}/action", "POST"): 204,
}

# --- query parameters ---------------------------------------------------------------------
_STRING: dict[str, Any] = {"type": "string"}
_BOOLEAN: dict[str, Any] = {"type": "boolean"}
_QUERY_TYPES: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 0},
    "offset": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "size": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "with_count": _BOOLEAN,
    "all_tenants": _BOOLEAN,
    "bootable": _BOOLEAN,
    "multiattach": _BOOLEAN,
    "consumes_quota": _BOOLEAN,
    "cascade": _BOOLEAN,
    "force": _BOOLEAN,
    "dry_run": _BOOLEAN,
    "detail": _BOOLEAN,
}
_QUERY_HELP = {
    "limit": "Page size (capped by osapi_max_limit).",
    "offset": "Entries to skip.",
    "marker": "Id of the last entry of the previous page.",
    "sort": "key[:asc|desc][,key[:asc|desc]...]; not with sort_key/sort_dir.",
    "sort_key": "Deprecated: comma-separated sort keys.",
    "sort_dir": "Deprecated: comma-separated sort directions.",
    "with_count": "3.45+: add the total count to the list.",
    "all_tenants": "Admin only: list every project's resources.",
    "metadata": "A Python dict literal, e.g. {'key': 'value'}.",
    "created_at": "op:timestamp[,op:timestamp], op one of gt, gte, lt, lte, eq, neq (3.60+).",
    "updated_at": "op:timestamp[,op:timestamp], op one of gt, gte, lt, lte, eq, neq (3.60+).",
}
PAGING = ("limit", "offset", "marker", "sort", "sort_key", "sort_dir", "with_count")
_VOLUME_LIST = (
    *PAGING,
    "all_tenants",
    "project_id",
    *volumes.USER_FILTERS,
    *volumes.ADMIN_FILTERS,
    "name~",
    "status~",
    "availability_zone~",
    "description~",
    "display_name~",
)
_SNAPSHOT_LIST = (
    *PAGING,
    "all_tenants",
    "project_id",
    *snapshots.USER_FILTERS,
    *snapshots.ADMIN_FILTERS,
    "name~",
    "status~",
)
_MANAGEABLE_LIST = ("host", "cluster", "limit", "offset", "marker", "sort", "sort_key", "sort_dir")

# Query parameters, by (path, method). Paths not listed take none.
QUERY_PARAMETERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("/volumes", "GET"): _VOLUME_LIST,
    ("/volumes/detail", "GET"): _VOLUME_LIST,
    ("/volumes/summary", "GET"): _VOLUME_LIST,
    ("/volumes/{volume_id}", "DELETE"): ("cascade", "force"),
    ("/snapshots", "GET"): _SNAPSHOT_LIST,
    ("/snapshots/detail", "GET"): _SNAPSHOT_LIST,
    ("/messages", "GET"): (*PAGING, "all_tenants", *messages.USER_FILTERS),
    ("/types", "GET"): ("is_public", "limit", "offset", "marker", "sort", "sort_key", "sort_dir"),
    ("/limits", "GET"): ("project_id",),
    ("/resource_filters", "GET"): ("resource",),
    ("/os-services", "GET"): ("host", "binary"),
    ("/scheduler-stats/get_pools", "GET"): ("detail", "name"),
    ("/manageable_volumes", "GET"): _MANAGEABLE_LIST,
    ("/manageable_volumes/detail", "GET"): _MANAGEABLE_LIST,
    ("/os-volume-manage", "GET"): _MANAGEABLE_LIST,
    ("/os-volume-manage/detail", "GET"): _MANAGEABLE_LIST,
    ("/manageable_snapshots", "GET"): _MANAGEABLE_LIST,
    ("/manageable_snapshots/detail", "GET"): _MANAGEABLE_LIST,
    ("/os-snapshot-manage", "GET"): _MANAGEABLE_LIST,
    ("/os-snapshot-manage/detail", "GET"): _MANAGEABLE_LIST,
    ("/manageable_volumes", "POST"): ("dry_run",),
    ("/os-volume-manage", "POST"): ("dry_run",),
    ("/attachments", "GET"): ("all_tenants", "limit", *attachments.FILTERS),
    ("/attachments/detail", "GET"): ("all_tenants", "limit", *attachments.FILTERS),
    ("/os-quota-sets/{target_project_id}", "GET"): ("usage",),
}

_PATH_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "project_id": {"type": "string", "pattern": "^[0-9a-f-]+$"},
    "action": {"type": "string", "enum": ["enable", "disable", "disable-log-reason"]},
}


# --- Draft 4 -> OpenAPI 3.0 schema objects -----------------------------------------------------
_SUBSCHEMA_MAPS = ("properties", "patternProperties")
PATTERN_EXTENSION = "x-patternProperties"
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf")


def to_openapi_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A Draft 4 schema in OpenAPI 3.0's dialect: a list of types becomes `nullable` and/or
    an anyOf of one branch per type (the other keywords apply per type in both dialects)."""
    out = copy.deepcopy(schema)
    _convert(out)
    return out


def _convert(node: dict[str, Any]) -> None:
    types = node.get("type")
    if isinstance(types, list):
        concrete = [t for t in types if t != "null"]
        nullable = "null" in types
        del node["type"]
        if len(concrete) == 1:
            node["type"] = concrete[0]
            if nullable:
                node["nullable"] = True
        else:
            branches: list[dict[str, Any]] = [{"type": t} for t in concrete]
            if nullable:
                branches[-1]["nullable"] = True
            if "anyOf" in node:  # both a type list and an anyOf: keep both
                node["allOf"] = [{"anyOf": branches}, *node.get("allOf", [])]
            else:
                node["anyOf"] = branches
    for key in _SUBSCHEMA_MAPS:
        for sub in (node.get(key) or {}).values():
            _convert(sub)
    for key in _SUBSCHEMA_LISTS:
        for sub in node.get(key) or []:
            _convert(sub)
    for key in ("additionalProperties", "items", "not"):
        if isinstance(node.get(key), dict):
            _convert(node[key])
    patterns = node.pop("patternProperties", None)
    if patterns:
        values = list(patterns.values())
        node[PATTERN_EXTENSION] = patterns
        if node.get("additionalProperties") is False:
            node["additionalProperties"] = values[0] if len(values) == 1 else {"anyOf": values}


def restore_pattern_properties(node: Any) -> Any:
    """The document with `x-patternProperties` back as `patternProperties` (and no other
    keys allowed): the exact Draft 4 key rules, for JSON-schema tools. Changes `node`."""
    if isinstance(node, dict):
        patterns = node.pop(PATTERN_EXTENSION, None)
        if patterns is not None:
            node["patternProperties"] = patterns
            node["additionalProperties"] = False
        for value in node.values():
            restore_pattern_properties(value)
    elif isinstance(node, list):
        for value in node:
            restore_pattern_properties(value)
    return node


# --- the document ------------------------------------------------------------------------------
def _query_parameter(name: str) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": False,
        "schema": _QUERY_TYPES.get(name, _STRING),
    }
    if name in _QUERY_HELP:
        param["description"] = _QUERY_HELP[name]
    return param


def _path_parameter(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": _PATH_PARAM_SCHEMAS.get(name, _STRING),
    }


def _operation_id(method: str, path: str) -> str:
    return f"{method.lower()}_" + re.sub(r"[^a-zA-Z0-9]+", "_", path).strip("_")


def _responses(success: int | tuple[int, ...], description: str = "Success") -> dict[str, Any]:
    fault = {
        "description": "A Cinder fault",
        "content": {"application/json": {"schema": {"$ref": FAULT_REF}}},
    }
    codes = success if isinstance(success, tuple) else (success,)
    return {
        **{str(code): {"description": description} for code in codes},
        "4XX": fault,
    }


def _operation(
    method: str,
    full_path: str,
    short_path: str,
    handler: Callable[..., Any],
    min_version: str | None,
) -> dict[str, Any]:
    key = (short_path, method)
    params: list[dict[str, Any]] = [_path_parameter(n) for n in _PATH_PARAM.findall(full_path)]
    params += [_query_parameter(n) for n in QUERY_PARAMETERS.get(key, ())]
    params.append({"$ref": "#/components/parameters/Microversion"})
    doc = (handler.__doc__ or "").strip().splitlines()
    op: dict[str, Any] = {
        "operationId": _operation_id(method, full_path),
        "summary": doc[0] if doc else f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}",
        "tags": [short_path.strip("/").split("/")[0]],
        "parameters": params,
        "responses": _responses(SUCCESS_STATUS.get(key, 200)),
    }
    if min_version:
        op["description"] = f"Needs microversion {min_version} or later (404 before)."
        op["x-openstack-min-version"] = min_version
    body = REQUEST_BODIES.get(key)
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": to_openapi_schema(body)}},
        }
    return op


def _unauthenticated(operation_id: str, status: int, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "security": [],
        "parameters": [{"$ref": "#/components/parameters/Microversion"}],
        "responses": _responses(status, description),
    }


def _microversions() -> list[str]:
    minors = range(MIN_VERSION.minor, MAX_VERSION.minor + 1)
    return [*(f"volume {MAX_VERSION.major}.{m}" for m in minors), "volume latest"]


def build_document(routes: Iterable[RouteSpec]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {
        "/": {"get": _unauthenticated("get_versions", 300, "The versions document")},
        "/v3/": {"get": _unauthenticated("get_v3", 200, "The v3 version document")},
        "/v3": {"get": _unauthenticated("get_v3_redirect", 302, "A redirect to /v3/")},
        "/openapi.json": {
            "get": {
                "operationId": "get_openapi",
                "summary": "This document",
                "security": [],
                "responses": _responses(200, "The OpenAPI document"),
            }
        },
    }
    for path, methods, handler, min_version in routes:
        for full in (f"/v3/{{project_id}}{path}", f"/v3{path}"):
            item = paths.setdefault(full, {})
            for method in methods:
                item[method.lower()] = _operation(method, full, path, handler, min_version)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "cinderblock Block Storage API",
            "version": __version__,
            "description": "The OpenStack Block Storage (Cinder) API v3, microversions "
            f"{MIN_VERSION} to {MAX_VERSION}. Authentication is noauth: X-Auth-Token is "
            "'user:project'. Every error is a Cinder fault body.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
            },
            "parameters": {
                "Microversion": {
                    "name": HEADER,
                    "in": "header",
                    "required": False,
                    "description": f"'volume 3.N' ({MIN_VERSION} to {MAX_VERSION}) or "
                    "'volume latest'; 3.0 when absent.",
                    "schema": {"type": "string", "enum": _microversions()},
                }
            },
            "schemas": {
                "Fault": {
                    "description": 'One key naming the kind of fault: {"<kind>": '
                    '{"code": <the HTTP status>, "message": "..."}}.',
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "integer"},
                            "message": {"type": "string"},
                        },
                    },
                }
            },
        },
        "security": [{"token": []}],
    }


def handler(routes: Sequence[RouteSpec]) -> Callable[[ApiRequest], Reply]:
    """A GET handler serving the document of `routes` (built once)."""
    document = build_document(routes)

    def openapi_document(req: ApiRequest) -> Reply:
        return Reply(200, document)

    return openapi_document
