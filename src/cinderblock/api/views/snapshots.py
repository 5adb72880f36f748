"""Snapshot views."""

from __future__ import annotations

from typing import Any

from cinderblock.api.framework import ApiRequest
from cinderblock.api.views import timestamp
from cinderblock.db.models import Snapshot


def summary(req: ApiRequest, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "id": snapshot.id,
        "created_at": timestamp(snapshot.created_at),
        "updated_at": timestamp(snapshot.updated_at),
        "name": snapshot.display_name,
        "description": snapshot.display_description,
        "volume_id": snapshot.volume_id,
        "status": snapshot.status,
        "size": snapshot.volume_size,
        "metadata": {m.key: m.value for m in snapshot.snapshot_metadata},
    }


def detail(req: ApiRequest, snapshot: Snapshot, *, extended: bool = True) -> dict[str, Any]:
    body = summary(req, snapshot)
    if req.at_least("3.14"):
        body["group_snapshot_id"] = snapshot.group_snapshot_id
    if req.at_least("3.41"):
        body["user_id"] = snapshot.user_id
    if req.at_least("3.65"):
        body["consumes_quota"] = snapshot.consumes_quota
    if extended:
        body["os-extended-snapshot-attributes:project_id"] = snapshot.project_id
        body["os-extended-snapshot-attributes:progress"] = snapshot.progress
    return body
