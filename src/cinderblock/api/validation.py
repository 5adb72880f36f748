"""JSON-schema validation of request bodies with Cinder's error messages."""

from __future__ import annotations

import uuid
from typing import Any

import jsonschema
from jsonschema import Draft4Validator, FormatChecker

from cinderblock import exceptions as exc

_BOOL_TRUE = ("True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t")
_BOOL_FALSE = ("False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f")

boolean = {"type": ["boolean", "string"], "enum": [True, False, *_BOOL_TRUE, *_BOOL_FALSE]}
name = {"type": ["string", "null"], "minLength": 0, "maxLength": 255}
description = {
    "type": ["string", "null"],
    "minLength": 0,
    "maxLength": 255,
    "pattern": r"^[\S\s]*$",
}
uuid_type = {"type": "string", "format": "uuid"}
nullable_uuid = {"type": ["string", "null"], "format": "uuid"}
DB_MAX_INT = 2147483647
volume_size = {
    "type": ["integer", "string"],
    "pattern": "^[0-9]+$",
    "minimum": 1,
    "maximum": DB_MAX_INT,
}
nullable_volume_size = {**volume_size, "type": ["integer", "string", "null"]}
metadata = {
    "type": "object",
    "patternProperties": {"^[a-zA-Z0-9-_:. /]{1,255}$": {"type": "string", "maxLength": 255}},
    "additionalProperties": False,
}
nullable_metadata = {**metadata, "type": ["object", "null"]}
availability_zone = {"type": ["string", "null"], "minLength": 1, "maxLength": 255}
extra_specs = {
    "type": "object",
    "patternProperties": {
        "^[a-zA-Z0-9-_:. /]{1,255}$": {"type": ["string", "null"], "maxLength": 255}
    },
    "additionalProperties": False,
}


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in _BOOL_TRUE:
        return True
    if value in _BOOL_FALSE:
        return False
    raise exc.InvalidInput(reason=f"Invalid boolean value: {value}")


_FORMATS = FormatChecker()


@_FORMATS.checks("uuid", raises=(ValueError, TypeError, AttributeError))
def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    uuid.UUID(value)
    return "-" in value


_VALIDATORS: dict[int, Draft4Validator] = {}


def validate(schema: dict[str, Any], body: Any) -> None:
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = Draft4Validator(schema, format_checker=_FORMATS)
        _VALIDATORS[id(schema)] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is None:
        return
    raise exc.ValidationError(_message(error))


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        return error.message
    if error.validator == "required" or not error.path:
        return error.message
    field = error.path[-1]
    value = error.instance
    if error.validator == "format" and error.validator_value == "uuid":
        detail = f"{value!r} is not a 'uuid'"
    elif error.validator == "type":
        detail = f"{value!r} is not of type {_types(error.validator_value)}"
    else:
        detail = error.message
    return f"Invalid input for field/attribute {field}. Value: {_plain(value)}. {detail}"


def _types(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(repr(v) for v in value)
    return repr(value)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    return str(value)


def size_value(field: str, value: int | str) -> int:
    """A schema-valid volume_size as an int. Digit strings escape the schema's bounds, so
    they are checked here: "0" as Cinder words it, oversized ones as the schema would."""
    number = int(value)
    if number < 1:
        raise exc.InvalidInput(
            reason=f"Volume size '{value}' must be an integer and greater than 0"
        )
    if number > DB_MAX_INT:
        raise exc.ValidationError(
            f"Invalid input for field/attribute {field}. Value: {value}. "
            f"{value!r} is greater than the maximum of {DB_MAX_INT}"
        )
    return number


def strip_name(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value
