"""Versions documents, limits, availability zones, resource filters."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from cinderblock.api.framework import ApiRequest, Reply
from cinderblock.api.microversions import MAX_VERSION, MIN_VERSION, UPDATED
from cinderblock.api.v3 import messages, snapshots, volumes
from cinderblock.db.models import Snapshot, Volume
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
    project = req.ctx.project_id
    if req.ctx.is_admin and req.at_least("3.39") and req.query.get("project_id"):
        project = req.query["project_id"]
    with req.deps.db.session() as session:
        volumes, gigabytes = session.execute(
            select(func.count(Volume.id), func.coalesce(func.sum(Volume.size), 0)).where(
                Volume.project_id == project
            )
        ).one()
        snapshots = session.scalar(
            select(func.count(Snapshot.id)).where(Snapshot.project_id == project)
        )
    absolute = {
        "maxTotalVolumes": -1,
        "maxTotalSnapshots": -1,
        "maxTotalVolumeGigabytes": -1,
        "maxTotalBackups": -1,
        "maxTotalBackupGigabytes": -1,
        "totalVolumesUsed": volumes,
        "totalGigabytesUsed": int(gigabytes),
        "totalSnapshotsUsed": snapshots or 0,
        "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0,
    }
    return Reply(200, {"limits": {"rate": [], "absolute": absolute}})


def availability_zones(req: ApiRequest) -> Reply:
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
    wanted = req.query.get("resource")
    items = [
        {"resource": name, "filters": filters}
        for name, filters in RESOURCE_FILTERS.items()
        if wanted is None or wanted == name
    ]
    return Reply(200, {"resource_filters": items})
