"""Manage existing storage: /manageable_volumes, /manageable_snapshots (3.8+) and the
legacy /os-volume-manage, /os-snapshot-manage paths (3.0+), plus os-unmanage."""

from __future__ import annotations

from typing import Any

import orjson

from cinderblock import exceptions as exc
from cinderblock.api import validation
from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.params import parse_limit, parse_offset
from cinderblock.api.schemas import manage as schemas
from cinderblock.api.validation import validate
from cinderblock.api.views import snapshots as snapshot_views
from cinderblock.api.views import volumes as volume_views
from cinderblock.services.manage import ManageService, ManageVolumeRequest
from cinderblock.services.policy import authorize

SORT_KEYS = ("reference", "size")


def _service(req: ApiRequest) -> ManageService:
    return ManageService(req.deps)


def _dry_run(req: ApiRequest) -> bool:
    return validation.to_bool(req.query.get("dry_run", "false"))


def _host_or_cluster(req: ApiRequest, host: str | None, cluster: str | None) -> str:
    if req.at_least("3.16"):
        if bool(host) == bool(cluster):
            raise exc.InvalidInput(reason="One and only one of cluster and host must be set.")
    elif not host:
        raise exc.InvalidInput(reason="Host field is missing.")
    if cluster:
        raise exc.ServiceUnavailable(f"Cluster '{cluster}' not found")
    assert host is not None
    return host


def manage_volume(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume_extension:volume_manage")  # policy before the schema (403)
    body = req.body()
    validate(schemas.manage_volume_v316 if req.at_least("3.16") else schemas.manage_volume, body)
    vol = body["volume"]
    host = _host_or_cluster(req, vol.get("host"), vol.get("cluster"))
    ref = vol["ref"]
    request = ManageVolumeRequest(
        host=host,
        ref=ref if isinstance(ref, dict) else {"source-name": ref},
        name=validation.strip_name(vol.get("name")) or None,
        description=validation.strip_name(vol.get("description")),
        volume_type=vol.get("volume_type") or None,
        availability_zone=vol.get("availability_zone") or None,
        bootable=validation.to_bool(vol.get("bootable", False)),
        metadata=vol.get("metadata") or {},
    )
    result = _service(req).manage_volume(req.ctx, request, dry_run=_dry_run(req))
    if isinstance(result, dict):
        return Reply(200, {"manage_check": result})
    # Cinder answers with the legacy view whatever the microversion.
    return Reply(202, {"volume": volume_views.legacy(req, result)})


def manage_snapshot(req: ApiRequest) -> Reply:
    authorize(req.ctx, "snapshot_extension:snapshot_manage")  # policy before the schema (403)
    body = req.body()
    validate(schemas.manage_snapshot, body)
    snap = body["snapshot"]
    if snap.get("ref") is None:
        raise exc.InvalidInput(reason="ref must name a backend object")
    snapshot = _service(req).manage_snapshot(
        req.ctx,
        snap["volume_id"],
        snap["ref"],
        validation.strip_name(snap.get("name")),
        validation.strip_name(snap.get("description")),
        snap.get("metadata") or {},
    )
    return Reply(202, {"snapshot": snapshot_views.detail(req, snapshot, extended=False)})


def _sort(req: ApiRequest) -> tuple[list[str], list[str]]:
    """Cinder's get_sort_params plus the manageable key/dir checks (InvalidParameterValue,
    whose message is the bare text)."""
    query = req.query
    if query.get("sort"):
        if query.get("sort_key") or query.get("sort_dir"):
            raise exc.InvalidInput(
                reason="The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be "
                "used with the 'sort' parameter."
            )
        keys, dirs = [], []
        for item in query["sort"].strip().split(","):
            key, _, direction = item.partition(":")
            keys.append(key.strip())
            dirs.append(direction.strip() or "desc")
    else:
        keys = [query.get("sort_key") or "reference"]
        dirs = [query.get("sort_dir") or "desc"]
    bad_keys = [k for k in keys if k not in SORT_KEYS]
    if bad_keys:
        raise exc.Invalid(f"Invalid sort keys passed: {', '.join(bad_keys)}")
    bad_dirs = [d for d in dirs if d not in ("asc", "desc")]
    if bad_dirs:
        raise exc.Invalid(f"Invalid sort dirs passed: {', '.join(bad_dirs)}")
    return keys, dirs


def _list(req: ApiRequest, *, snapshots: bool, detailed: bool) -> Reply:
    authorize(
        req.ctx,
        "snapshot_extension:list_manageable" if snapshots else "volume_extension:list_manageable",
    )
    query = req.query
    host = query.get("host")
    if req.at_least("3.17"):
        cluster = query.get("cluster")
        if bool(host) == bool(cluster):
            raise exc.InvalidInput(reason="One and only one of cluster and host must be set.")
    else:  # Cinder's get_cluster_host before the cluster microversion
        cluster = None
        if not host:
            raise exc.InvalidInput(reason="Host field is missing.")
    if cluster:
        raise exc.ServiceNotFound(service_id=cluster)
    marker = None
    if "marker" in query:
        try:
            marker = orjson.loads(query["marker"])
        except orjson.JSONDecodeError as err:
            raise exc.InvalidInput(
                reason=f"marker {query['marker']} can not be analysed, please use json like format"
            ) from err
        # A reference is an object; anything else (a number, a string) names no entry.
        if marker is not None and not isinstance(marker, dict):
            raise exc.InvalidInput(reason=f"marker not found: {query['marker']}")
    keys, dirs = _sort(req)
    entries = _service(req).list_manageable(
        req.ctx,
        host or "",
        snapshots=snapshots,
        marker=marker,
        limit=parse_limit(req),
        offset=parse_offset(req),
        sort_keys=keys,
        sort_dirs=dirs,
    )
    items = [_entry(e, snapshots=snapshots, detailed=detailed) for e in entries]
    key = "manageable-snapshots" if snapshots else "manageable-volumes"
    return Reply(200, {key: items})


def _entry(entry: dict[str, Any], *, snapshots: bool, detailed: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "reference": entry.get("reference"),
        "size": entry.get("size"),
        "safe_to_manage": bool(entry.get("safe_to_manage")),
    }
    if snapshots:
        item["source_reference"] = entry.get("source_reference")
    if detailed:
        item["reason_not_safe"] = entry.get("reason_not_safe")
        item["cinder_id"] = entry.get("cinder_id")
        item["extra_info"] = entry.get("extra_info")
    return item


def list_volumes(req: ApiRequest) -> Reply:
    return _list(req, snapshots=False, detailed=False)


def list_volumes_detail(req: ApiRequest) -> Reply:
    return _list(req, snapshots=False, detailed=True)


def list_snapshots(req: ApiRequest) -> Reply:
    return _list(req, snapshots=True, detailed=False)


def list_snapshots_detail(req: ApiRequest) -> Reply:
    return _list(req, snapshots=True, detailed=True)


ROUTES: list[tuple[str, list[str], Any, str | None]] = []
for prefix, version in (("/manageable_volumes", "3.8"), ("/os-volume-manage", None)):
    ROUTES += [
        (prefix, ["POST"], manage_volume, version),
        (prefix, ["GET"], list_volumes, version),
        (f"{prefix}/detail", ["GET"], list_volumes_detail, version),
    ]
for prefix, version in (("/manageable_snapshots", "3.8"), ("/os-snapshot-manage", None)):
    ROUTES += [
        (prefix, ["POST"], manage_snapshot, version),
        (prefix, ["GET"], list_snapshots, version),
        (f"{prefix}/detail", ["GET"], list_snapshots_detail, version),
    ]
