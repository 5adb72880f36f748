"""Fuzz every operation of the OpenAPI document with schemathesis.

Every operation of the document the server serves at /openapi.json (both URL forms, every
method, DELETE and POST actions included) gets a bounded, derandomised run of generated
requests, valid and invalid, against the session's server. No answer may be a 5xx, and every
4xx must be a one-key Cinder fault whose code is the status and whose message is a string.

Random ids only ever reach "not found", so about half of the cases (chosen from a hash of the
case, so runs repeat) are aimed at real objects of the fuzz project instead: a volume with
metadata, a snapshot, a volume type with an extra spec, a user message, an attachment, a real
backend host. Whatever a case destroys or changes is made again before the next case that
needs it.

Nothing is excluded. Bounds: MAX_EXAMPLES (25) generated cases per operation, plus the few
fixed ones schemathesis always sends (e.g. each path with a method it does not serve); with a
fixed seed and derandomised generation a run repeats exactly. The module takes 30-40 s on
SQLite, PostgreSQL or MariaDB.

Run it alone:  .venv/bin/pytest tests/functional/test_fuzz_api.py -q
Longer by hand:  CINDERBLOCK_FUZZ_EXAMPLES=150 CINDERBLOCK_FUZZ_COVERAGE=1 (about 12 minutes)
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from cbhelpers import backend_type
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from cinderblock.api.app import V3_ROUTES
from cinderblock.api.openapi import build_document, restore_pattern_properties
from conftest import Api, RunningService

# One project for the whole run: the token's, and the one every {project_id} is fixed to.
PROJECT = uuid.uuid5(uuid.NAMESPACE_URL, "cinderblock-fuzz").hex
TOKEN = f"admin:{PROJECT}"
# Cases per operation in the fuzzing phase; the coverage phase (schemathesis's systematic
# boundary values: several hundred cases per operation, some minutes in all) is off unless
# CINDERBLOCK_FUZZ_COVERAGE=1. Both are for longer runs by hand.
MAX_EXAMPLES = int(os.environ.get("CINDERBLOCK_FUZZ_EXAMPLES", "25"))
COVERAGE_PHASE = os.environ.get("CINDERBLOCK_FUZZ_COVERAGE") == "1"
SEED = 20240611
META_KEY = "fuzz-key"
SPEC_KEY = "volume_backend_name"


@schemathesis.check
def cinder_fault_body(ctx: schemathesis.CheckContext, response: Any, case: Any) -> bool | None:
    """A 4xx is {"<kind>": {"code": <status>, "message": "<text>"}}, nothing else."""
    status = response.status_code
    if not 400 <= status < 500:
        return None
    if status == 400 and _not_http(case) and response.text == UVICORN_BAD_REQUEST:
        return None  # refused by the HTTP server before it is a request the API could answer
    try:
        body = response.json()
    except ValueError as err:
        raise AssertionError(f"{status} without a JSON body: {response.text[:200]!r}") from err
    assert isinstance(body, dict) and len(body) == 1, f"not a one-key fault: {body!r}"
    fault = next(iter(body.values()))
    assert isinstance(fault, dict), f"fault is not an object: {body!r}"
    assert fault.get("code") == status, f"fault code {fault.get('code')!r} != status {status}"
    assert isinstance(fault.get("message"), str), f"fault message not a string: {body!r}"
    return True


UVICORN_BAD_REQUEST = "Invalid HTTP request received."
# RFC 9110 field names are tokens; values hold no control characters but tab.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def _not_http(case: Any) -> bool:
    """The case's headers cannot form an HTTP/1.1 request (a name that is no token, say)."""
    return any(
        not _TOKEN.fullmatch(str(name)) or not _FIELD_VALUE.fullmatch(str(value))
        for name, value in (getattr(case, "headers", None) or {}).items()
    )


def _schema() -> schemathesis.BaseSchema:
    # The document the server serves (test_served_document_is_the_fuzzed_one checks that);
    # built here because the parametrisation happens at collection, before the server runs.
    document = build_document(V3_ROUTES)
    # Back to Draft 4's patternProperties so generated metadata / extra-spec keys can be valid.
    restore_pattern_properties(document)
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"X-Auth-Token": TOKEN},
            "parameters": {"path.project_id": PROJECT},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {"coverage": {"enabled": COVERAGE_PHASE}},
        }
    )
    return schemathesis.openapi.from_dict(document, config=config)


schema = _schema()


class Targets:
    """Real objects of the fuzz project, made again whenever a case destroyed or changed one."""

    def __init__(self, cinder: RunningService) -> None:
        self.api = Api(cinder.url, PROJECT)
        self._volume: dict[str, Any] | None = None
        self._snapshot: str | None = None
        self._type: dict[str, Any] | None = None
        self._message: str | None = None
        self._attachment: str | None = None
        self.created_types: list[str] = []  # volume types are global: removed at the end
        nowhere = self.api.post(
            "/types",
            {
                "volume_type": {
                    "name": f"fuzz-nowhere-{uuid.uuid4().hex[:8]}",
                    "extra_specs": {SPEC_KEY: "no-such-backend"},
                }
            },
        )
        assert nowhere.status_code == 200, nowhere.text
        self._nowhere = nowhere.json()["volume_type"]["name"]

    def _alive(self, path: str, key: str, version: str = "3.71") -> dict[str, Any] | None:
        resp = self.api.get(path, version=version)
        return resp.json()[key] if resp.status_code == 200 else None

    def discard(self, volume: dict[str, Any]) -> None:
        """Delete a volume whatever a case left it in (best effort, not waited for): a volume
        extended to 2**31 GiB would otherwise hold the memory backend's capacity."""
        api, vid = self.api, volume["id"]
        for attachment in api.get(f"/attachments?volume_id={vid}").json().get("attachments", []):
            api.delete(f"/attachments/{attachment['id']}")
        for snap in api.get(f"/snapshots?volume_id={vid}").json().get("snapshots", []):
            reset = {"os-reset_status": {"status": "available"}}
            api.post(f"/snapshots/{snap['id']}/action", reset)
        api.post(
            f"/volumes/{vid}/action",
            {"os-reset_status": {"status": "available", "attach_status": "detached"}},
        )
        api.delete(f"/volumes/{vid}?cascade=true&force=true")

    def note(self, case: schemathesis.Case, response: Any) -> None:
        if case.method == "POST" and case.path.endswith("/types") and response.status_code == 200:
            self.created_types.append(response.json()["volume_type"]["id"])

    def discard_all(self) -> None:
        """Delete what the run left, so later tests find the backends' capacity free. Some
        deletes are refused for good (a snapshot a case unmanaged keeps its volume busy)."""
        for volume in self.api.get("/volumes/detail").json()["volumes"]:
            self.discard(volume)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = self.api.get("/volumes/detail").json()["volumes"]
            if not any(v["status"] == "deleting" for v in left):
                break
            time.sleep(0.05)

    def volume(self) -> dict[str, Any]:
        """An available 1 GiB volume with metadata {META_KEY: ...} on the memory backend."""
        if self._volume is not None:
            current = self._alive(f"/volumes/{self._volume['id']}", "volume")
            usable = current and current["status"] == "available" and current["size"] == 1
            if current and usable and not current["attachments"]:
                if META_KEY not in current["metadata"]:
                    self.api.put(
                        f"/volumes/{current['id']}/metadata/{META_KEY}", {"meta": {META_KEY: "v"}}
                    )
                self._volume = current
                return current
            if current:
                self.discard(current)
        for _ in range(2):
            created = self._post(
                "/volumes",
                lambda: {
                    "volume": {
                        "size": 1,
                        "volume_type": backend_type(self.api, "mem")["name"],
                        "metadata": {META_KEY: "v"},
                    }
                },
            )
            volume = self.api.wait_volume(created["id"], ("available", "error"))
            if volume["status"] == "available":
                self._volume = volume
                return volume
            # The volumes the cases created (sizes up to 2**31 GiB) filled the backend.
            self.discard_all()
        raise AssertionError(f"no room for a 1 GiB volume even after clearing: {volume}")

    def _post(self, path: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Create an object; when the objects the cases made used up the project's quota
        (413), clear the project and try once more (`body` is built again: its ids may
        have been cleared too)."""
        for attempt in range(2):
            resp = self.api.post(path, body())
            if resp.status_code == 413 and attempt == 0:
                self.discard_all()
                continue
            assert resp.status_code in (200, 202), resp.text
            return dict(next(iter(resp.json().values())))
        raise AssertionError("unreachable")

    def volume_id(self) -> str:
        return str(self.volume()["id"])

    def host(self) -> str:
        """The volume's backend, host@backend (its pool cut off)."""
        return str(self.volume()["os-vol-host-attr:host"]).partition("#")[0]

    def snapshot_id(self) -> str:
        if self._snapshot is not None:
            current = self._alive(f"/snapshots/{self._snapshot}", "snapshot")
            if current and current["status"] == "available":
                if META_KEY not in current["metadata"]:
                    self.api.put(
                        f"/snapshots/{self._snapshot}/metadata/{META_KEY}",
                        {"meta": {META_KEY: "v"}},
                    )
                return self._snapshot
        created = self._post(
            "/snapshots",
            lambda: {"snapshot": {"volume_id": self.volume_id(), "metadata": {META_KEY: "v"}}},
        )
        self._snapshot = str(self.api.wait_snapshot(created["id"])["id"])
        return self._snapshot

    def type_id(self) -> str:
        if self._type is not None:
            current = self._alive(f"/types/{self._type['id']}", "volume_type")
            if current is not None:
                if SPEC_KEY not in (current.get("extra_specs") or {}):
                    self.api.post(
                        f"/types/{current['id']}/extra_specs", {"extra_specs": {SPEC_KEY: "mem"}}
                    )
                return str(current["id"])
        resp = self.api.post(
            "/types",
            {
                "volume_type": {
                    "name": f"fuzz-{uuid.uuid4().hex[:8]}",
                    "extra_specs": {SPEC_KEY: "mem"},
                }
            },
        )
        assert resp.status_code == 200, resp.text
        self._type = resp.json()["volume_type"]
        return str(self._type["id"])

    def message_id(self) -> str:
        if self._message is not None and self._alive(
            f"/messages/{self._message}", "message", version="3.3"
        ):
            return self._message
        body = {"volume": {"size": 1, "volume_type": self._nowhere}}
        failed = self._post("/volumes", lambda: body)["id"]
        deadline = time.monotonic() + 30
        while True:
            listed = self.api.get(f"/messages?resource_uuid={failed}", version="3.3")
            messages = listed.json()["messages"] if listed.status_code == 200 else []
            if messages:
                self._message = str(messages[0]["id"])
                return self._message
            assert time.monotonic() < deadline, f"no message for volume {failed}"
            time.sleep(0.02)

    def attachment_id(self) -> str:
        if self._attachment is not None and self._alive(
            f"/attachments/{self._attachment}", "attachment"
        ):
            return self._attachment
        resp = self.api.post(
            "/attachments",
            {"attachment": {"volume_uuid": self.volume_id(), "instance_uuid": str(uuid.uuid4())}},
        )
        assert resp.status_code == 200, resp.text
        self._attachment = str(resp.json()["attachment"]["id"])
        self._volume = None  # an attached volume is no longer a free target: use a fresh one
        return self._attachment

    # --- aiming a case ------------------------------------------------------------------------
    def aim(self, case: schemathesis.Case) -> None:
        """Replace ids in the path, the query and the body by real ones, for about half of
        the cases (a hash of the case decides, so a run repeats exactly)."""
        digest = zlib.crc32(
            json.dumps(
                [case.method, case.path, case.path_parameters, case.query, case.body],
                sort_keys=True,
                default=_stable,  # no body is a sentinel object: its repr has an address
            ).encode()
        )
        if digest % 2:
            return
        path = case.path_parameters
        ids = {
            "volume_id": self.volume_id,
            "snapshot_id": self.snapshot_id,
            "type_id": self.type_id,
            "message_id": self.message_id,
            "attachment_id": self.attachment_id,
            "host": self.host,
        }
        owner = None
        for name, make in ids.items():
            if isinstance(path.get(name), str):
                path[name] = make()
                owner = name
        if isinstance(path.get("key"), str) and digest % 4 == 0:
            path["key"] = SPEC_KEY if owner == "type_id" else META_KEY
        if isinstance(case.query, dict) and isinstance(case.query.get("host"), str):
            case.query["host"] = self.host()
        if isinstance(case.body, dict):
            for inner in case.body.values():
                if isinstance(inner, dict):
                    self._aim_body(inner)

    def _aim_body(self, inner: dict[str, Any]) -> None:
        fields = {
            "volume_id": self.volume_id,
            "volume_uuid": self.volume_id,
            "source_volid": self.volume_id,
            "snapshot_id": self.snapshot_id,
            "attachment_id": self.attachment_id,
            "host": self.host,  # manage: a real backend (os-services bodies are not nested)
        }
        for name, make in fields.items():
            if isinstance(inner.get(name), str):
                inner[name] = make()


def _stable(value: Any) -> str:
    return repr(value) if isinstance(value, bytes) else type(value).__name__


@pytest.fixture(scope="module")
def targets(cinder: RunningService) -> Iterator[Targets]:
    made = Targets(cinder)
    yield made
    made.discard_all()
    for type_id in made.created_types:
        made.api.delete(f"/types/{type_id}")
    made.api.client.close()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # Slow data generation and filtered-out examples are expected here; no health check
    # says anything about the service.
    suppress_health_check=list(HealthCheck),
)
def test_fuzz(
    case: schemathesis.Case,
    cinder: RunningService,
    targets: Targets,
    session: requests.Session,
) -> None:
    # The config fixes {project_id} too; this also covers cases generated around it.
    if "project_id" in case.path_parameters:
        case.path_parameters["project_id"] = PROJECT
    targets.aim(case)
    response = case.call_and_validate(
        base_url=cinder.url,
        session=session,
        headers={"X-Auth-Token": TOKEN},
        checks=[not_a_server_error, cinder_fault_body],
    )
    targets.note(case, response)


def test_served_document_is_the_fuzzed_one(cinder: RunningService) -> None:
    resp = httpx.get(f"{cinder.url}/openapi.json", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == build_document(V3_ROUTES)
