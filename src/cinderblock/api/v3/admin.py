"""Admin views of the deployment: /os-services, /scheduler-stats/get_pools, /capabilities."""

from __future__ import annotations

from typing import Any

from cinderblock import exceptions as exc
from cinderblock.api import validation
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.validation import validate
from cinderblock.api.views import timestamp
from cinderblock.db.models import Service
from cinderblock.db.repo import services as services_repo
from cinderblock.services.policy import authorize

VOLUME_BINARY = "cinder-volume"

_service_body = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255},
        "binary": {"type": "string", "minLength": 1, "maxLength": 255},
        "disabled_reason": {"type": ["string", "null"], "maxLength": 255},
    },
    "required": ["host"],
    "additionalProperties": False,
}


def _service_view(req: ApiRequest, service: Service) -> dict[str, Any]:
    up = services_repo.is_up(service, req.deps.settings.service_down_time)
    body: dict[str, Any] = {
        "binary": service.binary,
        "host": service.host,
        "zone": service.availability_zone,
        "status": "disabled" if service.disabled else "enabled",
        "state": "up" if up else "down",
        "updated_at": timestamp(service.updated_at),
        "disabled_reason": service.disabled_reason,
    }
    if req.at_least("3.7"):
        body["cluster"] = None
    if service.binary == VOLUME_BINARY:
        body["replication_status"] = "disabled"
        body["active_backend_id"] = None
        body["frozen"] = False
        if req.at_least("3.49"):
            stats = services_repo.stats_of(service)
            body["backend_state"] = "up" if up and stats else "down"
    return body


def services_index(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume_extension:services:index")
    host = req.query.get("host")
    binary = req.query.get("binary")
    with req.deps.db.session() as session:
        rows = services_repo.list_(session, binary)
        items = [_service_view(req, s) for s in rows if host is None or s.host == host]
    return Reply(200, {"services": items})


def services_update(req: ApiRequest, action: str) -> Reply:
    authorize(req.ctx, "volume_extension:services:update")
    if action not in ("enable", "disable", "disable-log-reason"):
        raise exc.ResourceNotFound()
    body = req.body()
    validate(_service_body, body)
    binary = body.get("binary", VOLUME_BINARY)
    reason = body.get("disabled_reason")
    if action == "disable-log-reason":
        if not reason or not reason.strip():
            raise exc.InvalidInput(
                reason="Disabled reason contains invalid characters or is too long"
            )
        reason = reason.strip()
    with req.deps.db.session() as session:
        service = services_repo.get_by_host(session, body["host"], binary)
        if service is None:
            raise exc.ServiceNotFound(service_id=f"{body['host']} {binary}")
        disabled = action != "enable"
        services_repo.set_disabled(session, service, disabled, reason)
        result: dict[str, Any] = {
            "host": service.host,
            "service": service.binary,
            "binary": service.binary,
            "status": "disabled" if disabled else "enabled",
            "disabled": disabled,
        }
        if action == "disable-log-reason":
            result["disabled_reason"] = reason
    return Reply(200, result)


def _live_stats(req: ApiRequest) -> list[tuple[Service, dict[str, Any]]]:
    with req.deps.db.session() as session:
        out = []
        for service in services_repo.list_(session, VOLUME_BINARY):
            stats = services_repo.stats_of(service)
            if stats and services_repo.is_up(service, req.deps.settings.service_down_time):
                out.append((service, stats))
        return out


def get_pools(req: ApiRequest) -> Reply:
    authorize(req.ctx, "scheduler_extension:scheduler_stats:get_pools")
    detail = validation.to_bool(req.query.get("detail", "false"))
    wanted_name = req.query.get("name")
    pools = []
    for service, stats in _live_stats(req):
        shared = {
            k: v
            for k, v in stats.items()
            if k not in ("pools", "capabilities", "filter_function", "goodness_function")
        }
        for pool in stats.get("pools") or []:
            name = f"{service.host}#{pool.get('pool_name')}"
            if wanted_name and wanted_name != name:
                continue
            entry: dict[str, Any] = {"name": name}
            if detail:
                entry["capabilities"] = {
                    **shared,
                    **pool,
                    "timestamp": timestamp(service.stats_updated_at),
                    "backend_state": "up",
                }
            pools.append(entry)
    return Reply(200, {"pools": pools})


def capabilities(req: ApiRequest, host: str) -> Reply:
    authorize(req.ctx, "volume_extension:capabilities")
    for service, stats in _live_stats(req):
        if service.host != host:
            continue
        return Reply(
            200,
            {
                "namespace": f"OS::Storage::Capabilities::{service.host}",
                "vendor_name": stats.get("vendor_name"),
                "volume_backend_name": stats.get("volume_backend_name"),
                "pool_name": None,
                "driver_version": stats.get("driver_version"),
                "storage_protocol": stats.get("storage_protocol"),
                "display_name": None,
                "description": None,
                "visibility": None,
                "replication_targets": [],
                "properties": {},
            },
        )
    raise exc.ServiceNotFound(service_id=host)


ROUTES: list[tuple[str, list[str], Any, str | None]] = [
    ("/os-services", ["GET"], services_index, None),
    ("/os-services/{action}", ["PUT"], services_update, None),
    ("/scheduler-stats/get_pools", ["GET"], get_pools, None),
    ("/capabilities/{host}", ["GET"], capabilities, None),
]
