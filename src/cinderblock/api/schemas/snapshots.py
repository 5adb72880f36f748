"""Snapshot request bodies."""

from __future__ import annotations

from cinderblock.api import validation as v

create = {
    "type": "object",
    "properties": {
        "snapshot": {
            "type": "object",
            "properties": {
                "name": v.name,
                "display_name": v.name,
                "description": v.description,
                "display_description": v.description,
                "volume_id": {"type": ["string", "null"], "format": "uuid"},
                "force": v.boolean,
                "metadata": v.nullable_metadata,
            },
            "required": ["volume_id"],
            "additionalProperties": False,
        }
    },
    "required": ["snapshot"],
    "additionalProperties": False,
}
update = {
    "type": "object",
    "properties": {
        "snapshot": {
            "type": "object",
            "properties": {
                "name": v.name,
                "display_name": v.name,
                "description": v.description,
                "display_description": v.description,
            },
            "minProperties": 1,
            "additionalProperties": False,
        }
    },
    "required": ["snapshot"],
    "additionalProperties": False,
}
reset_status = {
    "type": "object",
    "properties": {
        "os-reset_status": {
            "type": "object",
            "properties": {"status": {"type": "string"}},
            "required": ["status"],
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
