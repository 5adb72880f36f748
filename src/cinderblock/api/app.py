"""Build the Starlette application: every route, each wrapped by framework.endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from cinderblock.api.errors import fault_body
from cinderblock.api.framework import endpoint, json_response
from cinderblock.api.microversions import HEADER, APIVersion, negotiate
from cinderblock.api.openapi import handler as openapi_handler
from cinderblock.api.v3 import (
    admin,
    attachments,
    manageable,
    messages,
    misc,
    quotas,
    snapshots,
    types,
    volumes,
)
from cinderblock.context import new_request_id
from cinderblock.services.common import ServiceDeps

# (path below /v3/{project_id}, methods, handler, min microversion)
RouteSpec = tuple[str, list[str], Callable[..., Any], str | None]

V3_ROUTES: list[RouteSpec] = [
    ("/volumes", ["GET"], volumes.index, None),
    ("/volumes", ["POST"], volumes.create, None),
    ("/volumes/detail", ["GET"], volumes.detail, None),
    ("/volumes/summary", ["GET"], volumes.summary, "3.12"),
    ("/volumes/{volume_id}", ["GET"], volumes.show, None),
    ("/volumes/{volume_id}", ["PUT"], volumes.update, None),
    ("/volumes/{volume_id}", ["DELETE"], volumes.delete, None),
    ("/volumes/{volume_id}/action", ["POST"], volumes.action, None),
    ("/volumes/{volume_id}/metadata", ["GET"], volumes.metadata_index, None),
    ("/volumes/{volume_id}/metadata", ["POST"], volumes.metadata_create, None),
    ("/volumes/{volume_id}/metadata", ["PUT"], volumes.metadata_replace, None),
    ("/volumes/{volume_id}/metadata/{key}", ["GET"], volumes.metadata_show, None),
    ("/volumes/{volume_id}/metadata/{key}", ["PUT"], volumes.metadata_update, None),
    ("/volumes/{volume_id}/metadata/{key}", ["DELETE"], volumes.metadata_delete, None),
    ("/snapshots", ["GET"], snapshots.index, None),
    ("/snapshots", ["POST"], snapshots.create, None),
    ("/snapshots/detail", ["GET"], snapshots.detail, None),
    ("/snapshots/{snapshot_id}", ["GET"], snapshots.show, None),
    ("/snapshots/{snapshot_id}", ["PUT"], snapshots.update, None),
    ("/snapshots/{snapshot_id}", ["DELETE"], snapshots.delete, None),
    ("/snapshots/{snapshot_id}/action", ["POST"], snapshots.action, None),
    ("/snapshots/{snapshot_id}/metadata", ["GET"], snapshots.metadata_index, None),
    ("/snapshots/{snapshot_id}/metadata", ["POST"], snapshots.metadata_create, None),
    ("/snapshots/{snapshot_id}/metadata", ["PUT"], snapshots.metadata_replace, None),
    ("/snapshots/{snapshot_id}/metadata/{key}", ["GET"], snapshots.metadata_show, None),
    ("/snapshots/{snapshot_id}/metadata/{key}", ["PUT"], snapshots.metadata_update, None),
    ("/snapshots/{snapshot_id}/metadata/{key}", ["DELETE"], snapshots.metadata_delete, None),
    ("/types", ["GET"], types.index, None),
    ("/types", ["POST"], types.create, None),
    ("/types/{type_id}", ["GET"], types.show, None),
    ("/types/{type_id}", ["PUT"], types.update, None),
    ("/types/{type_id}", ["DELETE"], types.delete, None),
    ("/types/{type_id}/extra_specs", ["GET"], types.extra_specs_index, None),
    ("/types/{type_id}/extra_specs", ["POST"], types.extra_specs_create, None),
    ("/types/{type_id}/extra_specs/{key}", ["GET"], types.extra_specs_show, None),
    ("/types/{type_id}/extra_specs/{key}", ["PUT"], types.extra_specs_update, None),
    ("/types/{type_id}/extra_specs/{key}", ["DELETE"], types.extra_specs_delete, None),
    ("/messages", ["GET"], messages.index, "3.3"),
    ("/messages/{message_id}", ["GET"], messages.show, "3.3"),
    ("/messages/{message_id}", ["DELETE"], messages.delete, "3.3"),
    ("/limits", ["GET"], misc.limits, None),
    ("/os-availability-zone", ["GET"], misc.availability_zones, None),
    ("/resource_filters", ["GET"], misc.resource_filters, "3.33"),
    *manageable.ROUTES,
    *admin.ROUTES,
    *attachments.ROUTES,
    *quotas.ROUTES,
]


def build_routes(deps: ServiceDeps, extra: list[RouteSpec] | None = None) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/", endpoint(misc.versions_root, deps, needs_auth=False), methods=["GET"]),
        Route("/v3/", endpoint(misc.versions_v3, deps, needs_auth=False), methods=["GET"]),
        Route("/v3", _redirect_to_v3(deps.settings.public_endpoint), methods=["GET"]),
        Route(
            "/openapi.json",
            endpoint(openapi_handler([*V3_ROUTES, *(extra or [])]), deps, needs_auth=False),
            methods=["GET"],
        ),
    ]
    for path, methods, handler, min_version in [*V3_ROUTES, *(extra or [])]:
        # Both URL forms are served at every version (3.67 only documents the short one).
        routes.append(
            Route(
                f"/v3/{{project_id}}{path}",
                endpoint(handler, deps, min_version=min_version),
                methods=methods,
            )
        )
        routes.append(
            Route(f"/v3{path}", endpoint(handler, deps, min_version=min_version), methods=methods)
        )
    return routes


def _version_or_none(request: Request) -> APIVersion | None:
    try:
        return negotiate(request.headers.get(HEADER))
    except Exception:
        return None


def _redirect_to_v3(public_endpoint: str | None) -> Callable[[Request], Any]:
    """GET /v3 -> 302 to the absolute /v3/ (keystoneauth follows Location literally)."""

    async def redirect(request: Request) -> Response:
        url = request.url
        base = public_endpoint.rstrip("/") if public_endpoint else f"{url.scheme}://{url.netloc}"
        response = RedirectResponse(f"{base}/v3/", status_code=302)
        request_id = new_request_id()
        response.headers["x-compute-request-id"] = request_id
        response.headers["x-openstack-request-id"] = request_id
        return response

    return redirect


async def _http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    message = {
        404: "The resource could not be found.",
        405: "The method is not allowed for this resource.",
    }.get(status, str(error))
    # Unknown routes answer like every other error: fault body, request ids, version headers.
    return json_response(
        status, fault_body(status, message), _version_or_none(request), new_request_id()
    )


def create_app(deps: ServiceDeps, extra_routes: list[RouteSpec] | None = None) -> Starlette:
    return Starlette(
        routes=build_routes(deps, extra_routes),
        exception_handlers={HTTPException: _http_error},
    )
