"""Helpers shared by the functional tests: samples, fault checks, per-backend types."""

from __future__ import annotations

import json
import re
import threading
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from conftest import Api, RunningService

SAMPLES = Path("/work/shared/reference/samples")
REQUEST_ID_RE = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FAULT_KEYS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
}
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
# Keys of the volume detail view only admins may see.
ADMIN_ONLY_VOLUME_KEYS = {
    "os-vol-host-attr:host",
    "os-vol-mig-status-attr:migstat",
    "os-vol-mig-status-attr:name_id",
    "migration_status",
    "provider_id",
    "cluster_name",
}


@cache
def sample(name: str) -> dict[str, Any]:
    """A captured Cinder exchange: {"request": ..., "response": {status, headers, body}}."""
    return json.loads((SAMPLES / name).read_text())


def sample_body(name: str) -> Any:
    return sample(name)["response"]["body"]


def assert_request_ids(resp: httpx.Response) -> str:
    compute = resp.headers.get("x-compute-request-id")
    openstack = resp.headers.get("x-openstack-request-id")
    assert compute is not None, f"no x-compute-request-id on {resp.status_code}: {resp.headers}"
    assert compute == openstack, (compute, openstack)
    assert REQUEST_ID_RE.match(compute), compute
    return compute


def assert_version_headers(resp: httpx.Response, version: str) -> None:
    assert resp.headers.get("openstack-api-version") == f"volume {version}", resp.headers
    assert resp.headers.get("vary") == "OpenStack-API-Version", resp.headers


def assert_fault(resp: httpx.Response, status: int, message: str | None = None) -> str:
    """A Cinder fault: exactly one key naming the kind, with code and a string message."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text}"
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and len(body) == 1, body
    kind = FAULT_KEYS.get(status, "computeFault")
    assert kind in body, body
    fault = body[kind]
    assert set(fault) == {"code", "message"}, fault
    assert fault["code"] == status, fault
    assert isinstance(fault["message"], str) and fault["message"], fault
    if message is not None:
        assert fault["message"] == message, fault["message"]
    assert_request_ids(resp)
    return fault["message"]


_type_lock = threading.Lock()
_types: dict[tuple[str, str], dict[str, Any]] = {}


def backend_type(api: Api, backend: str) -> dict[str, Any]:
    """A public volume type pinned to one backend (`files` or `mem`), made once per service."""
    key = (api.base, backend)
    with _type_lock:
        if key not in _types:
            admin = Api(api.base, api.project)
            resp = admin.post(
                "/types",
                {
                    "volume_type": {
                        "name": f"cbt-{backend}-{uuid.uuid4().hex[:8]}",
                        "extra_specs": {"volume_backend_name": backend},
                    }
                },
            )
            admin.client.close()
            assert resp.status_code == 200, resp.text
            _types[key] = resp.json()["volume_type"]
        return _types[key]


def unversioned(api: Api) -> Api:
    """The same caller sending no OpenStack-API-Version header at all (Api(version=None))."""
    return Api(api.base, api.project, user=api.user, version=None)


def mem_volume(api: Api, size: int = 1, wait: bool = True, **fields: Any) -> dict[str, Any]:
    """A volume on the memory backend (fast, no files)."""
    fields.setdefault("volume_type", backend_type(api, "mem")["name"])
    return api.create_volume(size=size, wait=wait, **fields)


def file_volume(api: Api, size: int = 1, wait: bool = True, **fields: Any) -> dict[str, Any]:
    """A volume on the file backend (a sparse file under cinder.volumes_dir)."""
    fields.setdefault("volume_type", backend_type(api, "files")["name"])
    return api.create_volume(size=size, wait=wait, **fields)


def snapshot(api: Api, volume_id: str, wait: bool = True, **fields: Any) -> dict[str, Any]:
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume_id, **fields}})
    assert resp.status_code == 202, resp.text
    snap = resp.json()["snapshot"]
    return api.wait_snapshot(snap["id"]) if wait else snap


def volume_ids(api: Api, query: str = "", **kw: Any) -> list[str]:
    resp = api.get(f"/volumes{query}", **kw)
    assert resp.status_code == 200, resp.text
    return [v["id"] for v in resp.json()["volumes"]]


def snapshot_ids(api: Api, query: str = "", **kw: Any) -> list[str]:
    resp = api.get(f"/snapshots{query}", **kw)
    assert resp.status_code == 200, resp.text
    return [s["id"] for s in resp.json()["snapshots"]]


def files_in(cinder: RunningService) -> set[str]:
    if not cinder.volumes_dir.exists():
        return set()
    return {p.name for p in cinder.volumes_dir.iterdir()}


def head_bytes(path: Path, count: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(count)


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def read_at(path: Path, offset: int, count: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(count)


def raw(
    cinder: RunningService,
    method: str,
    path: str,
    *,
    token: str | None = None,
    version: str | None = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    follow_redirects: bool = False,
) -> httpx.Response:
    """A request with exactly the headers given (for auth and negotiation tests)."""
    sent: dict[str, str] = {"Accept": "application/json"}
    if token is not None:
        sent["X-Auth-Token"] = token
    if version is not None:
        sent["OpenStack-API-Version"] = version
    sent.update(headers or {})
    with httpx.Client(timeout=30, follow_redirects=follow_redirects) as client:
        return client.request(method, f"{cinder.url}{path}", headers=sent, content=content)
