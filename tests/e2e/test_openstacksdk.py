"""openstacksdk, unchanged, against a cinderblock process.

Working set-up (keystoneauth's admin_token plugin: fixed endpoint + fixed token):

    conn = openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": "http://127.0.0.1:PORT/v3/PROJECT", "token": "admin:PROJECT"},
        block_storage_api_version="3",
        load_yaml_config=False, load_envvars=False,
    )

auth_type="none" does not let the caller choose who it is: keystoneauth's NoAuth
plugin sends the literal header `X-Auth-Token: notused` (and no X-User-Id /
X-Project-Id), which the server's noauth reads as user "notused" in project
"notused". That works against the project-less endpoint http://HOST:PORT/v3 and is
refused (400 "Malformed request url") with /v3/<project> in the URL.

Every proxy runs version discovery: `GET /v3` (unauthenticated), which redirects to
`/v3/` and its version document; the proxy then negotiates 3.71.
"""

from __future__ import annotations

import os
from typing import Any

import openstack
import pytest
from openstack import exceptions

from .support import MAX_LIMIT, Server, unique

WAIT = {"interval": 0.2, "wait": 60}


def _new_volume(sdk: Any, **fields: Any) -> Any:
    volume = sdk.block_storage.create_volume(size=1, **fields)
    return sdk.block_storage.wait_for_status(volume, status="available", failures=["error"], **WAIT)


def test_create_get_list_wait(sdk: Any, project_id: str) -> None:
    bs = sdk.block_storage
    name = unique("sdk-vol")
    created = bs.create_volume(size=1, name=name, description="sdk", metadata={"k": "v"})
    assert created.id
    assert created.status == "creating"  # the POST response itself
    volume = bs.wait_for_status(created, status="available", failures=["error"], **WAIT)
    assert volume.status == "available"

    fetched = bs.get_volume(volume.id)
    assert fetched.name == name
    assert fetched.description == "sdk"
    assert fetched.size == 1
    assert fetched.metadata == {"k": "v"}
    assert fetched.availability_zone == "nova"
    assert fetched.volume_type == "__DEFAULT__"
    assert fetched.project_id == project_id
    assert fetched.host.startswith("e2ehost@")
    assert bs.find_volume(name).id == volume.id

    # Enough volumes for two pages: the proxy follows volumes_links.
    others = [_new_volume(sdk, name=f"{name}-{i}") for i in range(MAX_LIMIT)]
    listed = list(bs.volumes())
    assert sorted(v.id for v in listed) == sorted([volume.id, *(o.id for o in others)])
    assert len(list(bs.volumes(details=False))) == MAX_LIMIT + 1
    assert len(list(bs.volumes(limit=2))) == MAX_LIMIT + 1  # limit is the page size
    assert [v.id for v in bs.volumes(name=name)] == [volume.id]

    bs.set_volume_metadata(volume, purpose="e2e")
    assert bs.get_volume(volume.id).metadata == {"k": "v", "purpose": "e2e"}
    # Pass a fresh object: set_volume_metadata leaves only the keys it sent on the
    # local object, and delete_volume_metadata then fails with KeyError on "k" while
    # popping it locally (an openstacksdk quirk; the server returns the merged set).
    bs.delete_volume_metadata(bs.get_volume(volume.id), keys=["k"])
    assert bs.get_volume(volume.id).metadata == {"purpose": "e2e"}


def test_extend_volume(sdk: Any) -> None:
    bs = sdk.block_storage
    volume = _new_volume(sdk)
    bs.extend_volume(volume, 3)
    extended = bs.wait_for_status(bs.get_volume(volume.id), status="available", **WAIT)
    assert extended.size == 3


def test_snapshots(sdk: Any) -> None:
    bs = sdk.block_storage
    volume = _new_volume(sdk)
    snapshot = bs.create_snapshot(volume_id=volume.id, name="sdk-snap", description="d")
    snapshot = bs.wait_for_status(snapshot, status="available", failures=["error"], **WAIT)
    assert snapshot.volume_id == volume.id
    assert snapshot.size == 1
    assert [s.id for s in bs.snapshots()] == [snapshot.id]
    assert bs.get_snapshot(snapshot.id).name == "sdk-snap"
    assert bs.find_snapshot("sdk-snap").id == snapshot.id

    from_snapshot = _new_volume(sdk, snapshot_id=snapshot.id)
    assert from_snapshot.snapshot_id == snapshot.id
    clone = _new_volume(sdk, source_volume_id=volume.id)
    assert bs.get_volume(clone.id).source_volume_id == volume.id

    bs.delete_snapshot(snapshot)
    bs.wait_for_delete(snapshot, **WAIT)
    assert list(bs.snapshots()) == []


def test_types(sdk: Any) -> None:
    bs = sdk.block_storage
    assert "__DEFAULT__" in {t.name for t in bs.types()}
    name = unique("sdk-type")
    created = bs.create_type(name=name, extra_specs={"volume_backend_name": "mem"})
    try:
        assert created.extra_specs == {"volume_backend_name": "mem"}
        assert bs.get_type(created.id).name == name
        assert name in {t.name for t in bs.types()}
        volume = _new_volume(sdk, volume_type=name)
        assert bs.get_volume(volume.id).host == "e2ehost@mem#mem"
    finally:
        for volume in list(bs.volumes()):
            bs.delete_volume(volume)
            bs.wait_for_delete(volume, **WAIT)
        bs.delete_type(created)
    assert name not in {t.name for t in bs.types()}


def test_delete_volume(sdk: Any) -> None:
    # delete_volume asks utils.supports_microversion(proxy, "3.23"), which needs the
    # endpoint's version range from discovery, and then sends ?cascade=False&force=False.
    bs = sdk.block_storage
    volume = _new_volume(sdk)
    snapshot = bs.wait_for_status(
        bs.create_snapshot(volume_id=volume.id), status="available", **WAIT
    )
    with pytest.raises(exceptions.BadRequestException):
        bs.delete_volume(volume)
    bs.delete_volume(volume, cascade=True)
    bs.wait_for_delete(volume, **WAIT)
    bs.wait_for_delete(snapshot, **WAIT)
    assert list(bs.volumes()) == []
    bs.delete_volume(volume.id)  # already gone: ignore_missing defaults to True
    with pytest.raises(exceptions.NotFoundException):
        bs.delete_volume(volume.id, ignore_missing=False)


def test_microversion_is_negotiated(sdk: Any, e2e_server: Server, project_id: str) -> None:
    data = sdk.block_storage.get_endpoint_data()
    assert data is not None, "no endpoint data: version discovery failed"
    assert data.min_microversion == (3, 0)
    assert data.max_microversion == (3, 71)
    assert data.service_url == e2e_server.project_endpoint(project_id)
    response = sdk.block_storage.get("/volumes", microversion="3.71")
    assert response.headers["OpenStack-API-Version"] == "volume 3.71"


def test_auth_type_none(e2e_server: Server) -> None:
    # auth_type none plus a block-storage endpoint override. keystoneauth's NoAuth
    # sends "X-Auth-Token: notused", so the server sees user "notused" in project
    # "notused"; only the project-less URL form matches that project.
    conn = openstack.connect(
        auth_type="none",
        block_storage_endpoint_override=e2e_server.endpoint,
        block_storage_api_version="3",
        load_yaml_config=False,
        load_envvars=False,
    )
    bs = conn.block_storage
    sent = bs.get("/volumes").request.headers
    assert sent["X-Auth-Token"] == "notused"
    assert "X-User-Id" not in sent
    assert "X-Project-Id" not in sent
    volume = bs.create_volume(size=1, name=unique("sdk-none"))
    volume = bs.wait_for_status(volume, status="available", failures=["error"], **WAIT)
    assert bs.get_volume(volume.id).user_id == "notused"
    bs.delete_volume(volume)
    bs.wait_for_delete(volume, **WAIT)


def test_auth_type_none_with_project_url_is_refused(e2e_server: Server, project_id: str) -> None:
    # With /v3/<project> in the URL the token's project ("notused") does not match:
    # 400 "Malformed request url", as Cinder does.
    conn = openstack.connect(
        auth_type="none",
        block_storage_endpoint_override=e2e_server.project_endpoint(project_id),
        block_storage_api_version="3",
        load_yaml_config=False,
        load_envvars=False,
    )
    with pytest.raises(exceptions.BadRequestException, match="Malformed request url"):
        list(conn.block_storage.volumes())


def test_clouds_yaml(
    e2e_server: Server, project_id: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        f"""clouds:
  cinderblock:
    auth_type: admin_token
    auth:
      endpoint: {e2e_server.project_endpoint(project_id)}
      token: admin:{project_id}
    block_storage_api_version: 3
"""
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    for name in [
        key for key in os.environ if key.startswith("OS_") and key != "OS_CLIENT_CONFIG_FILE"
    ]:
        monkeypatch.delenv(name)
    conn = openstack.connect(cloud="cinderblock")
    volume = _new_volume(conn, name="from-clouds-yaml")
    assert [v.id for v in conn.block_storage.volumes()] == [volume.id]
    assert conn.block_storage.get_endpoint_data().max_microversion == (3, 71)
    conn.close()
