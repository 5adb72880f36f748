"""Volume request bodies."""

from __future__ import annotations

import copy
from typing import Any

from cinderblock.api import validation as v

_create_props: dict[str, Any] = {
    "name": v.name,
    "display_name": v.name,
    "description": v.description,
    "display_description": v.description,
    "size": v.nullable_volume_size,
    "availability_zone": v.availability_zone,
    "volume_type": {"type": ["string", "null"], "minLength": 0, "maxLength": 255},
    "metadata": v.nullable_metadata,
    "snapshot_id": v.nullable_uuid,
    "source_volid": v.nullable_uuid,
    "imageRef": {"type": ["string", "null"], "maxLength": 255},
    "image_id": {"type": ["string", "null"], "maxLength": 255},
    "backup_id": v.nullable_uuid,
    "consistencygroup_id": v.nullable_uuid,
    "group_id": {"type": ["string", "null"], "maxLength": 255},
    "multiattach": {"type": ["boolean", "null"]},
    "source_replica": {"type": ["string", "null"]},
}

create = {
    "type": "object",
    "properties": {
        "volume": {"type": "object", "properties": _create_props},
        "OS-SCH-HNT:scheduler_hints": {"type": ["object", "null"]},
    },
    "required": ["volume"],
    "additionalProperties": False,
}
# 3.53 made unknown keys inside "volume" an error.
create_v353 = copy.deepcopy(create)
create_v353["properties"]["volume"]["additionalProperties"] = False

_update_props = {
    "name": v.name,
    "display_name": v.name,
    "description": v.description,
    "display_description": v.description,
    "metadata": v.nullable_metadata,
}
update = {
    "type": "object",
    "properties": {
        "volume": {"type": "object", "properties": _update_props, "additionalProperties": False}
    },
    "required": ["volume"],
    "additionalProperties": False,
}
update_v353 = copy.deepcopy(update)
update_v353["properties"]["volume"]["minProperties"] = 1

metadata = {
    "type": "object",
    "properties": {"metadata": v.metadata},
    "required": ["metadata"],
    "additionalProperties": False,
}
metadata_item = {
    "type": "object",
    "properties": {"meta": {**v.metadata, "minProperties": 1, "maxProperties": 1}},
    "required": ["meta"],
    "additionalProperties": False,
}

extend = {
    "type": "object",
    "properties": {
        "os-extend": {
            "type": "object",
            "properties": {"new_size": v.volume_size},
            "required": ["new_size"],
            "additionalProperties": False,
        }
    },
    "required": ["os-extend"],
    "additionalProperties": False,
}
reset_status = {
    "type": "object",
    "properties": {
        "os-reset_status": {
            "type": "object",
            "properties": {
                "status": {"type": "string"},
                "attach_status": {"type": "string"},
                "migration_status": {"type": "string"},
            },
            "additionalProperties": False,
        }
    },
    "required": ["os-reset_status"],
    "additionalProperties": False,
}
force_delete = {
    "type": "object",
    "properties": {"os-force_delete": {}},
    "required": ["os-force_delete"],
    "additionalProperties": False,
}
revert = {
    "type": "object",
    "properties": {
        "revert": {
            "type": "object",
            "properties": {"snapshot_id": v.uuid_type},
            "required": ["snapshot_id"],
            "additionalProperties": False,
        }
    },
    "required": ["revert"],
    "additionalProperties": False,
}
