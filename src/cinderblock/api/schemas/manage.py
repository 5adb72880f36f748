"""Manage / unmanage request bodies."""

from __future__ import annotations

import copy
from typing import Any

from cinderblock.api import validation as v

cinder_host = {
    "type": ["string", "null"],
    "minLength": 1,
    "maxLength": 255,
    "pattern": r"^[a-zA-Z0-9-._#@:/+\[\]]*$",
}
_ref = {"type": ["object", "string"]}

_volume_props: dict[str, Any] = {
    "host": cinder_host,
    "ref": _ref,
    "name": v.name,
    "description": v.description,
    "volume_type": {"type": ["string", "null"], "minLength": 0, "maxLength": 255},
    "availability_zone": {"type": ["string", "null"], "minLength": 0, "maxLength": 255},
    "bootable": v.boolean,
    "metadata": v.nullable_metadata,
}
manage_volume: dict[str, Any] = {
    "type": "object",
    "properties": {
        "volume": {
            "type": "object",
            "properties": _volume_props,
            "required": ["ref"],
            "additionalProperties": False,
        }
    },
    "required": ["volume"],
    "additionalProperties": False,
}
# 3.16 accepts `cluster` as the alternative to `host`.
manage_volume_v316 = copy.deepcopy(manage_volume)
manage_volume_v316["properties"]["volume"]["properties"]["cluster"] = {
    "type": ["string", "null"],
    "minLength": 0,
    "maxLength": 255,
}

manage_snapshot = {
    "type": "object",
    "properties": {
        "snapshot": {
            "type": "object",
            "properties": {
                "volume_id": v.uuid_type,
                "ref": {"type": ["object", "string", "null"]},
                "name": v.name,
                "description": v.description,
                "metadata": v.nullable_metadata,
            },
            "required": ["volume_id", "ref"],
            "additionalProperties": False,
        }
    },
    "required": ["snapshot"],
    "additionalProperties": False,
}
unmanage = {
    "type": "object",
    "properties": {"os-unmanage": {}},
    "required": ["os-unmanage"],
    "additionalProperties": False,
}
