"""The glue between Starlette and our handlers.

Every route goes through `endpoint()`: microversion negotiation,
authentication (api/auth.py), project check, body parsing, the handler (in a worker thread),
Cinder fault bodies for every error, and the headers every response carries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from cinderblock import exceptions as exc
from cinderblock.api.auth import authenticator_for
from cinderblock.api.errors import fault_body, fault_for
from cinderblock.api.microversions import HEADER, MIN_VERSION, APIVersion, negotiate
from cinderblock.context import RequestContext, new_request_id
from cinderblock.services.common import ServiceDeps

LOG = logging.getLogger(__name__)
PROJECT_RE = re.compile(r"^[0-9a-f\-]+$")
_NO_BODY = object()


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiRequest:
    """What a handler sees: context, version, query, body, URL helpers."""

    ctx: RequestContext
    version: APIVersion
    request: Request
    deps: ServiceDeps
    project_in_url: bool
    raw_body: bytes

    @property
    def query(self) -> Any:
        return self.request.query_params

    def body(self) -> Any:
        if not self.raw_body:
            raise exc.MalformedRequestBody()
        try:
            body = orjson.loads(self.raw_body)
        except orjson.JSONDecodeError as err:
            raise exc.MalformedRequestBody() from err
        if b"u0000" in self.raw_body and _has_nul(body):
            # No column can hold NUL (PostgreSQL refuses it outright): refuse it here.
            raise exc.InvalidInput(reason="Strings must not contain NUL characters.")
        return body

    def optional_body(self) -> Any:
        return self.body() if self.raw_body.strip() else None

    def at_least(self, version: str) -> bool:
        return self.version.at_least(version)

    @property
    def endpoint_base(self) -> str:
        """scheme://host:port (public_endpoint overrides) without a trailing slash."""
        public = self.deps.settings.public_endpoint
        if public:
            return public.rstrip("/")
        url = self.request.url
        return f"{url.scheme}://{url.netloc}"

    def link(self, collection: str, ident: str) -> list[dict[str, str]]:
        project = f"/{self.ctx.project_id}" if self.project_in_url else ""
        base = self.endpoint_base
        return [
            {"rel": "self", "href": f"{base}/v3{project}/{collection}/{ident}"},
            {"rel": "bookmark", "href": f"{base}{project}/{collection}/{ident}"},
        ]

    def next_link(self, last_id: str) -> str:
        """This request's URL with marker=<last id> (other parameters kept)."""
        url = self.request.url
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k != "marker"]
        params.append(("marker", last_id))
        query = "&".join(f"{k}={_quote(v)}" for k, v in params)
        base = self.deps.settings.public_endpoint
        prefix = base.rstrip("/") if base else f"{url.scheme}://{url.netloc}"
        return f"{prefix}{url.path}?{query}"


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe=":,~*!'()")


def json_response(
    status: int,
    body: Any,
    version: APIVersion | None,
    request_id: str,
    extra: dict[str, str] | None = None,
) -> Response:
    headers = {
        "x-compute-request-id": request_id,
        "x-openstack-request-id": request_id,
    }
    if version is not None:
        headers["openstack-api-version"] = f"volume {version}"
        headers["vary"] = HEADER
    if extra:
        headers.update(extra)
    if body is None:
        return Response(status_code=status, headers=headers)
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def authenticate(request: Request, deps: ServiceDeps, request_id: str) -> RequestContext:
    """Who is asking, per auth_strategy: see api/auth.py (noauth or Keystone tokens)."""
    return authenticator_for(deps).authenticate(request, request_id)


Handler = Callable[..., Reply]


def endpoint(
    handler: Handler,
    deps: ServiceDeps,
    *,
    min_version: str | None = None,
    max_version: str | None = None,
    project_in_url: bool = True,
    needs_auth: bool = True,
) -> Callable[[Request], Any]:
    min_v = APIVersion.parse(min_version) if min_version else None
    max_v = APIVersion.parse(max_version) if max_version else None
    # Keystone validation may wait on the network: it runs in a worker thread.
    auth_blocks = needs_auth and authenticator_for(deps).blocking

    async def run(request: Request) -> Response:
        request_id = new_request_id()
        version: APIVersion | None = None
        try:
            version = negotiate(request.headers.get(HEADER))
        except exc.VersionNotAcceptable as err:
            # Cinder echoes the requested version on a 406.
            wanted = request.headers.get(HEADER, "").split()[-1]
            return json_response(
                err.code,
                fault_body(err.code, err.msg),
                None,
                request_id,
                {"openstack-api-version": f"volume {wanted}", "vary": HEADER},
            )
        except exc.CinderblockError as err:
            return json_response(err.code, fault_body(err.code, err.msg), None, request_id)
        try:
            if (min_v and version < min_v) or (max_v and version > max_v):
                raise exc.ResourceNotFound()
            params = dict(request.path_params)
            project = params.pop("project_id", None)
            if project is not None and not PROJECT_RE.match(project):
                raise exc.ResourceNotFound()
            if any("\x00" in value for value in params.values()):
                raise exc.ResourceNotFound()  # no id or key contains NUL
            if any("\x00" in k + v for k, v in request.query_params.multi_items()):
                raise exc.InvalidInput(reason="Query parameters must not contain NUL characters.")
            if auth_blocks:
                ctx = await run_in_threadpool(authenticate, request, deps, request_id)
            elif needs_auth:
                ctx = authenticate(request, deps, request_id)
            else:
                ctx = RequestContext(user_id=None, project_id=None, request_id=request_id)
            if project is not None and needs_auth and project != ctx.project_id:
                raise exc.Invalid("Malformed request url")
            if needs_auth and request.method not in ("GET", "HEAD") and not _may_write(ctx):
                # A reader-only token (Keystone's reader role) may look, not change.
                raise exc.PolicyNotAuthorized(action=f"{request.method} {request.url.path}")
            raw = b""
            if request.method in ("POST", "PUT", "PATCH"):
                raw = await _read_limited(request, deps.settings.max_request_body_size)
            api_request = ApiRequest(
                ctx=ctx,
                version=version,
                request=request,
                deps=deps,
                project_in_url=project is not None,
                raw_body=raw,
            )
            reply = await run_in_threadpool(_in_slot, deps, handler, api_request, params)
        except Exception as err:  # every error becomes a Cinder fault body
            status, body = fault_for(err)
            if status >= 500 and not isinstance(err, exc.CinderblockError):
                LOG.exception("%s %s failed", request.method, request.url.path)
            elif status >= 500:  # expected (e.g. a service or Keystone unreachable)
                LOG.warning("%s %s: %s", request.method, request.url.path, err)
            # (a 401 from Keystone auth carries WWW-Authenticate)
            return json_response(status, body, version, request_id, getattr(err, "headers", None))
        return json_response(reply.status, reply.body, version, request_id, reply.headers)

    return run


def _in_slot(deps: ServiceDeps, handler: Handler, request: ApiRequest, params: Any) -> Reply:
    with deps.run_slots.held():
        return handler(request, **params)


def _may_write(ctx: RequestContext) -> bool:
    return ctx.is_admin or "member" in ctx.roles


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise exc.OverLimit("Request is too large.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise exc.OverLimit("Request is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["MIN_VERSION", "ApiRequest", "Reply", "endpoint", "json_response"]
