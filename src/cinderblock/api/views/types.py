"""Volume type views."""

from __future__ import annotations

from typing import Any

from cinderblock.api.framework import ApiRequest
from cinderblock.db.models import VolumeType
from cinderblock.db.repo import types as types_repo

# Extra specs that only admins see (they reveal backend layout).
SENSITIVE_SPECS = ("volume_backend_name",)


def view(req: ApiRequest, volume_type: VolumeType) -> dict[str, Any]:
    specs = types_repo.extra_specs_of(volume_type)
    if not req.ctx.is_admin:
        specs = {k: v for k, v in specs.items() if k not in SENSITIVE_SPECS}
    body: dict[str, Any] = {
        "id": volume_type.id,
        "name": volume_type.name,
        "description": volume_type.description,
        "is_public": volume_type.is_public,
        "os-volume-type-access:is_public": volume_type.is_public,
        "extra_specs": specs,
    }
    if req.ctx.is_admin:
        body["qos_specs_id"] = None
    return body
