"""Attachment and attach-action request bodies."""

from __future__ import annotations

from typing import Any

from cinderblock.api import validation as v

_connector = {"type": ["object", "null"]}

create: dict[str, Any] = {
    "type": "object",
    "properties": {
        "attachment": {
            "type": "object",
            "properties": {
                "volume_uuid": v.uuid_type,
                "instance_uuid": v.nullable_uuid,
                "connector": _connector,
                "mode": {"type": "string", "enum": ["rw", "ro"]},
            },
            "required": ["volume_uuid"],
            "additionalProperties": False,
        }
    },
    "required": ["attachment"],
    "additionalProperties": False,
}
update: dict[str, Any] = {
    "type": "object",
    "properties": {
        "attachment": {
            "type": "object",
            "properties": {"connector": {"type": "object", "minProperties": 1}},
            "required": ["connector"],
            "additionalProperties": False,
        }
    },
    "required": ["attachment"],
    "additionalProperties": False,
}
complete = {
    "type": "object",
    "properties": {"os-complete": {}},
    "required": ["os-complete"],
    "additionalProperties": False,
}


def _action(
    name: str,
    props: dict[str, Any] | None = None,
    required: list[str] | None = None,
    nullable: bool = False,
) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": ["object", "null"] if nullable else "object"}
    if props is not None:
        inner["properties"] = props
        inner["additionalProperties"] = False
    if required:
        inner["required"] = required
    return {
        "type": "object",
        "properties": {name: inner},
        "required": [name],
        "additionalProperties": False,
    }


reserve = _action("os-reserve", nullable=True)
unreserve = _action("os-unreserve", nullable=True)
begin_detaching = _action("os-begin_detaching", nullable=True)
roll_detaching = _action("os-roll_detaching", nullable=True)
attach = _action(
    "os-attach",
    {
        "mountpoint": {"type": "string", "minLength": 1, "maxLength": 255},
        "instance_uuid": v.nullable_uuid,
        "host_name": {"type": ["string", "null"], "maxLength": 255},
        "mode": {"type": "string", "enum": ["rw", "ro"]},
    },
    ["mountpoint"],
)
detach = _action("os-detach", {"attachment_id": v.nullable_uuid}, nullable=True)
initialize_connection = _action(
    "os-initialize_connection", {"connector": {"type": ["object", "string"]}}, ["connector"]
)
terminate_connection = _action(
    "os-terminate_connection",
    {"connector": {"type": ["object", "string", "null"]}},
    ["connector"],
)
update_readonly_flag = _action("os-update_readonly_flag", {"readonly": v.boolean}, ["readonly"])
set_bootable = _action("os-set_bootable", {"bootable": v.boolean}, ["bootable"])
