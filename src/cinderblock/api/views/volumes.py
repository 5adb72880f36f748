"""Volume views: summary, detail (show/list), and the create/update/manage shapes."""

from __future__ import annotations

from typing import Any

from cinderblock.api.framework import ApiRequest
from cinderblock.api.views import timestamp
from cinderblock.db.models import Volume
from cinderblock.db.repo import volumes as volumes_repo
from cinderblock.states import volume_display_status

# Admin metadata keys users may see among a volume's metadata.
_VISIBLE_ADMIN_KEYS = ("readonly", "attached_mode")


def summary(req: ApiRequest, volume: Volume) -> dict[str, Any]:
    return {
        "id": volume.id,
        "name": volume.display_name,
        "links": req.link("volumes", volume.id),
    }


def _metadata(volume: Volume) -> dict[str, str]:
    meta = {m.key: m.value for m in volume.volume_metadata}
    for row in volume.volume_admin_metadata:
        if row.key in _VISIBLE_ADMIN_KEYS:
            meta[row.key] = row.value
    return meta


def _type_name(volume: Volume) -> str:
    vtype = volume.volume_type
    return vtype.name if vtype is not None else volume.volume_type_id


def _attachments(req: ApiRequest, volume: Any, rows: list[Any] | None) -> list[dict[str, Any]]:
    """The volume's attached attachments, as Cinder lists them in volume views."""
    if rows is None:
        # Loaded with the row (selectin); a just-created volume has none and no session.
        rows = getattr(volume, "__dict__", {}).get("volume_attachments") or []
    return [
        {
            "id": volume.id,
            "attachment_id": row.id,
            "volume_id": volume.id,
            "server_id": row.instance_uuid,
            "host_name": row.attached_host if req.ctx.is_admin else None,
            "device": row.mountpoint,
            "attached_at": timestamp(row.attach_time),
        }
        for row in rows
        if row.attach_status == "attached"
    ]


def legacy(
    req: ApiRequest,
    volume: Volume,
    *,
    metadata: dict[str, str] | None = None,
    type_name: str | None = None,
    attachments: list[Any] | None = None,
) -> dict[str, Any]:
    """The 3.0 detail body without the os-vol-* keys (create, update, manage).

    `volume` is an ORM object or a plain row of the volumes table; for rows the
    caller passes the visible metadata and the type name it loaded in bulk.
    """
    body: dict[str, Any] = {
        "id": volume.id,
        "status": volume_display_status(volume.status),
        "size": volume.size,
        "availability_zone": volume.availability_zone,
        "created_at": timestamp(volume.created_at),
        "updated_at": timestamp(volume.updated_at),
        "name": volume.display_name,
        "description": volume.display_description,
        "volume_type": type_name if type_name is not None else _type_name(volume),
        "snapshot_id": volume.snapshot_id,
        "source_volid": volume.source_volid,
        "metadata": metadata if metadata is not None else _metadata(volume),
        "links": req.link("volumes", volume.id),
        "user_id": volume.user_id,
        "bootable": "true" if volume.bootable else "false",
        "encrypted": volume.encryption_key_id is not None,
        "replication_status": volume.replication_status,
        "consistencygroup_id": None,
        "multiattach": volume.multiattach,
        "attachments": _attachments(req, volume, attachments),
    }
    if req.ctx.is_admin:
        body["migration_status"] = volume.migration_status
    return body


def detail(
    req: ApiRequest,
    volume: Volume,
    *,
    extended: bool = True,
    metadata: dict[str, str] | None = None,
    type_name: str | None = None,
    attachments: list[Any] | None = None,
) -> dict[str, Any]:
    """Detail body for the request's microversion; `extended` adds os-vol-* keys."""
    body = legacy(req, volume, metadata=metadata, type_name=type_name, attachments=attachments)
    admin = req.ctx.is_admin
    if req.at_least("3.13"):
        body["group_id"] = volume.group_id
    if req.at_least("3.21") and admin:
        body["provider_id"] = volume.provider_id
    if req.at_least("3.48"):
        shared = volume.shared_targets
        body["shared_targets"] = (
            shared if req.at_least("3.69") else (True if shared is None else shared)
        )
        body["service_uuid"] = volume.service_uuid
    if req.at_least("3.61") and admin:
        body["cluster_name"] = volume.cluster_name
    if req.at_least("3.63"):
        body["volume_type_id"] = volume.volume_type_id
    if req.at_least("3.64") and volume.encryption_key_id:
        body["encryption_key_id"] = volume.encryption_key_id
    if req.at_least("3.65"):
        body["consumes_quota"] = volume.consumes_quota
    if extended:
        body["os-vol-tenant-attr:tenant_id"] = volume.project_id
        if admin:
            body["os-vol-mig-status-attr:migstat"] = volume.migration_status
            body["os-vol-mig-status-attr:name_id"] = None
            body["os-vol-host-attr:host"] = volume.host
    return body


def page_details(req: ApiRequest, page: volumes_repo.VolumePage) -> list[dict[str, Any]]:
    items = []
    for row in page.rows:
        meta = dict(page.metadata.get(row.id, {}))
        for key, value in page.admin_metadata.get(row.id, {}).items():
            if key in _VISIBLE_ADMIN_KEYS:
                meta[key] = value
        type_name = page.type_names.get(row.volume_type_id, row.volume_type_id)
        items.append(
            detail(
                req,
                row,
                metadata=meta,
                type_name=type_name,
                attachments=page.attachments.get(row.id, []),
            )
        )
    return items


def metadata_body(volume: Volume) -> dict[str, Any]:
    return {"metadata": volumes_repo.metadata_of(volume)}
