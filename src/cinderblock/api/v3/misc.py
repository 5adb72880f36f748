"""Versions documents, limits, availability zones, resource filters."""

from __future__ import annotations

from typing import Any

from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.microversions import MAX_VERSION, MIN_VERSION, UPDATED
from cinderblock.api.v3 import messages, snapshots, volumes
from cinderblock.services.policy import authorize
from cinderblock.services.quotas import QuotaEngine
from cinderblock.services.volumes import VolumeService


def versions_document(req: ApiRequest) -> dict[str, Any]:
    return {
        "versions": [
            {
                "id": "v3.0",
                "status": "CURRENT",
                "version": str(MAX_VERSION),
                "min_version": str(MIN_VERSION),
                "updated": UPDATED,
                "links": [
                    {
                        "rel": "describedby",
                        "type": "text/html",
                        "href": "https://docs.openstack.org/",
                    },
                    {"rel": "self", "href": f"{req.endpoint_base}/v3/"},
                ],
                "media-types": [
                    {
                        "base": "application/json",
                        "type": "application/vnd.openstack.volume+json;version=3",
                    }
                ],
            }
        ]
    }


def versions_root(req: ApiRequest) -> Reply:
    return Reply(300, versions_document(req))


def versions_v3(req: ApiRequest) -> Reply:
    return Reply(200, versions_document(req))


def limits(req: ApiRequest) -> Reply:
    authorize(req.ctx, "limits_extension:used_limits")
    project = req.ctx.project_id
    if req.ctx.is_admin and req.at_least("3.39") and req.query.get("project_id"):
        project = req.query["project_id"]
    with req.deps.db.session() as session:
        quota = QuotaEngine.for_deps(req.deps).quota_set(session, str(project), usage=True)
    absolute = {
        "maxTotalVolumes": quota["volumes"]["limit"],
        "maxTotalSnapshots": quota["snapshots"]["limit"],
        "maxTotalVolumeGigabytes": quota["gigabytes"]["limit"],
        "maxTotalBackups": quota["backups"]["limit"],
        "maxTotalBackupGigabytes": quota["backup_gigabytes"]["limit"],
        "totalVolumesUsed": quota["volumes"]["in_use"],
        "totalGigabytesUsed": quota["gigabytes"]["in_use"],
        "totalSnapshotsUsed": quota["snapshots"]["in_use"],
        "totalBackupsUsed": quota["backups"]["in_use"],
        "totalBackupGigabytesUsed": quota["backup_gigabytes"]["in_use"],
    }
    return Reply(200, {"limits": {"rate": [], "absolute": absolute}})


def availability_zones(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume_extension:availability_zone_list")
    with req.deps.db.session() as session:
        zones = sorted(VolumeService(req.deps).known_zones(session))
    return Reply(
        200,
        {
            "availabilityZoneInfo": [
                {"zoneName": z, "zoneState": {"available": True}} for z in zones
            ]
        },
    )


RESOURCE_FILTERS = {
    "volume": list(volumes.USER_FILTERS),
    "snapshot": list(snapshots.USER_FILTERS),
    "message": list(messages.USER_FILTERS),
}


def resource_filters(req: ApiRequest) -> Reply:
    authorize(req.ctx, "volume:get_resource_filters")
    wanted = req.query.get("resource")
    items = [
        {"resource": name, "filters": filters}
        for name, filters in RESOURCE_FILTERS.items()
        if wanted is None or wanted == name
    ]
    return Reply(200, {"resource_filters": items})
