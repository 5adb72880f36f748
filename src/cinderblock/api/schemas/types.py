"""Volume type request bodies."""

from __future__ import annotations

from cinderblock.api import validation as v

_spec_key = "^[a-zA-Z0-9-_:.]{1,255}$"
extra_specs = {
    "type": "object",
    "patternProperties": {_spec_key: {"type": ["string", "null"], "maxLength": 255}},
    "additionalProperties": False,
}
create = {
    "type": "object",
    "properties": {
        "volume_type": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": v.description,
                "extra_specs": extra_specs,
                "os-volume-type-access:is_public": v.boolean,
            },
            "required": ["name"],
            "additionalProperties": False,
        }
    },
    "required": ["volume_type"],
    "additionalProperties": False,
}
update = {
    "type": "object",
    "properties": {
        "volume_type": {
            "type": "object",
            "properties": {
                "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
                "description": v.description,
                "is_public": v.boolean,
            },
            "additionalProperties": False,
        }
    },
    "required": ["volume_type"],
    "additionalProperties": False,
}
extra_specs_body = {
    "type": "object",
    "properties": {"extra_specs": extra_specs},
    "required": ["extra_specs"],
    "additionalProperties": False,
}
extra_spec_item = {**extra_specs, "minProperties": 1, "maxProperties": 1}
