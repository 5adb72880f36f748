"""The OpenAPI document: valid OpenAPI 3.0, every route in both URL forms, maps kept in step."""

from __future__ import annotations

import contextlib
import io
import json
import re

import schemathesis

from cinderblock.api import openapi
from cinderblock.api.app import V3_ROUTES
from cinderblock.cli.main import main

METHODS = {"get", "put", "post", "delete", "patch"}


def test_document_is_valid_openapi_3_0() -> None:
    document = openapi.build_document(V3_ROUTES)
    assert document["openapi"].startswith("3.0.")
    schemathesis.openapi.from_dict(document).validate()  # raises on an invalid document


def test_every_route_in_both_forms_with_its_path_parameters() -> None:
    paths = openapi.build_document(V3_ROUTES)["paths"]
    for path, methods, _handler, min_version in V3_ROUTES:
        for full in (f"/v3/{{project_id}}{path}", f"/v3{path}"):
            for method in methods:
                operation = paths[full][method.lower()]
                declared = {p["name"] for p in operation["parameters"] if p.get("in") == "path"}
                assert declared == set(re.findall(r"{([^}]+)}", full)), (full, method)
                assert operation.get("x-openstack-min-version") == min_version
                assert "4XX" in operation["responses"]
    operation_ids = [
        op["operationId"] for item in paths.values() for m, op in item.items() if m in METHODS
    ]
    assert len(operation_ids) == len(set(operation_ids))


def test_maps_name_existing_routes() -> None:
    # A route renamed or removed must not leave a body, query or status entry behind.
    routes = {(path, method) for path, methods, _h, _v in V3_ROUTES for method in methods}
    for table in (openapi.REQUEST_BODIES, openapi.QUERY_PARAMETERS, openapi.SUCCESS_STATUS):
        assert set(table) <= routes, set(table) - routes


def test_request_bodies_are_json_and_required() -> None:
    paths = openapi.build_document(V3_ROUTES)["paths"]
    for path, method in openapi.REQUEST_BODIES:
        body = paths[f"/v3{path}"][method.lower()]["requestBody"]
        assert body["required"] is True
        assert set(body["content"]) == {"application/json"}


def test_draft4_types_become_openapi_3_0() -> None:
    schema = openapi.to_openapi_schema(
        {
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"]},
                "b": {"type": ["integer", "string", "null"], "minimum": 1},
            },
            "patternProperties": {"^x$": {"type": "string"}},
            "additionalProperties": False,
        }
    )
    assert schema["properties"]["a"] == {"type": "string", "nullable": True}
    assert schema["properties"]["b"] == {
        "minimum": 1,
        "anyOf": [{"type": "integer"}, {"type": "string", "nullable": True}],
    }
    assert "patternProperties" not in schema
    assert schema["additionalProperties"] == {"type": "string"}
    assert schema["x-patternProperties"] == {"^x$": {"type": "string"}}
    restored = openapi.restore_pattern_properties(schema)
    assert restored["patternProperties"] == {"^x$": {"type": "string"}}
    assert restored["additionalProperties"] is False


def test_cli_prints_the_document() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["openapi"]) == 0
    assert json.loads(out.getvalue()) == openapi.build_document(V3_ROUTES)
