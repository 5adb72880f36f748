"""python-cinderclient's Python API, unchanged, against a cinderblock process.

from cinderclient import client
from cinderclient.contrib.noauth import CinderNoAuthPlugin
from keystoneauth1 import session

auth = CinderNoAuthPlugin("admin", PROJECT, endpoint="http://127.0.0.1:PORT/v3")
cinder = client.Client("3.71", session=session.Session(auth=auth))
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cinderclient import api_versions, exceptions
from cinderclient import client as cinder_client

from .support import (
    MAX_LIMIT,
    Server,
    make_cinderclient,
    unique,
    wait_deleted,
    wait_for,
    wait_resource,
)


def test_endpoint_and_version_discovery(e2e_server: Server, project_id: str) -> None:
    cinder = make_cinderclient(e2e_server, project_id)
    assert cinder.client.get_endpoint() == f"{e2e_server.endpoint}/{project_id}"
    assert cinder.api_version == api_versions.APIVersion("3.71")
    # What the shell does for version negotiation, from the Python side.
    assert cinder_client.get_highest_client_server_version(e2e_server.endpoint) == "3.71"
    assert cinder_client.get_server_version(e2e_server.endpoint) == (
        api_versions.APIVersion("3.0"),
        api_versions.APIVersion("3.71"),
    )
    discovered = api_versions.discover_version(
        make_cinderclient(e2e_server, project_id, version="3.0"), api_versions.APIVersion("3.71")
    )
    assert discovered == api_versions.APIVersion("3.71")
    [version] = cinder.services.server_api_version()
    assert (version.id, version.min_version, version.version) == ("v3.0", "3.0", "3.71")


def test_volume_snapshot_clone_extend_delete(cinderclient: Any, project_id: str) -> None:
    volume = cinderclient.volumes.create(1, name=unique("api-vol"), metadata={"k": "v"})
    assert volume.status == "creating"  # the POST response itself
    volume = wait_resource(cinderclient.volumes, volume.id)
    assert volume.size == 1
    assert volume.metadata == {"k": "v"}
    assert getattr(volume, "os-vol-tenant-attr:tenant_id") == project_id
    assert volume.volume_type == "__DEFAULT__"

    snapshot = cinderclient.volume_snapshots.create(volume.id, name="api-snap")
    snapshot = wait_resource(cinderclient.volume_snapshots, snapshot.id)
    assert snapshot.volume_id == volume.id
    assert snapshot.size == 1
    assert [s.id for s in cinderclient.volume_snapshots.list()] == [snapshot.id]

    from_snapshot = cinderclient.volumes.create(2, snapshot_id=snapshot.id, name="from-snap")
    clone = cinderclient.volumes.create(1, source_volid=volume.id, name="clone")
    from_snapshot = wait_resource(cinderclient.volumes, from_snapshot.id)
    clone = wait_resource(cinderclient.volumes, clone.id)
    assert from_snapshot.snapshot_id == snapshot.id
    assert from_snapshot.size == 2
    assert clone.source_volid == volume.id

    cinderclient.volumes.extend(volume, 3)
    assert wait_for("size 3", lambda: wait_resource(cinderclient.volumes, volume.id).size == 3)

    cinderclient.volumes.set_metadata(volume, {"a": "1"})
    cinderclient.volumes.delete_metadata(volume, ["k"])
    assert cinderclient.volumes.get(volume.id).metadata == {"a": "1"}

    # The server refuses to delete a volume that still has snapshots...
    with pytest.raises(exceptions.BadRequest) as refused:
        cinderclient.volumes.delete(volume)
    assert refused.value.code == 400
    # ...unless asked to cascade.
    cinderclient.volumes.delete(volume, cascade=True)
    wait_deleted(cinderclient.volume_snapshots, snapshot.id)
    wait_deleted(cinderclient.volumes, volume.id)
    for other in (from_snapshot, clone):
        cinderclient.volumes.delete(other)
        wait_deleted(cinderclient.volumes, other.id)
    assert cinderclient.volumes.list() == []

    with pytest.raises(exceptions.NotFound):
        cinderclient.volumes.get(volume.id)


def test_detailed_list_paging(cinderclient: Any) -> None:
    count = 2 * MAX_LIMIT + 1
    ids = [cinderclient.volumes.create(1, name=f"page-{i:02d}").id for i in range(count)]
    for volume_id in ids:
        wait_resource(cinderclient.volumes, volume_id)

    # The server sends MAX_LIMIT volumes and a "next" link; the client follows it.
    _, first_page = cinderclient.client.get("/volumes/detail")
    assert len(first_page["volumes"]) == MAX_LIMIT
    [link] = first_page["volumes_links"]
    assert link["rel"] == "next"
    assert f"marker={first_page['volumes'][-1]['id']}" in link["href"]

    everything = cinderclient.volumes.list(detailed=True)
    assert sorted(v.id for v in everything) == sorted(ids)
    assert len({v.id for v in everything}) == count
    assert all(v.status == "available" for v in everything)
    assert {v.id for v in cinderclient.volumes.list(detailed=False)} == set(ids)

    # limit: fewer than a page, and more than a page (the client fetches the rest).
    assert len(cinderclient.volumes.list(detailed=True, limit=3)) == 3
    assert len(cinderclient.volumes.list(detailed=True, limit=MAX_LIMIT + 2)) == MAX_LIMIT + 2

    by_name = cinderclient.volumes.list(detailed=True, sort="name:asc")
    assert [v.name for v in by_name] == [f"page-{i:02d}" for i in range(count)]
    after = cinderclient.volumes.list(detailed=True, sort="name:asc", marker=by_name[3].id, limit=4)
    assert [v.name for v in after] == [f"page-{i:02d}" for i in range(4, 8)]
    newest_first = cinderclient.volumes.list(detailed=True, sort="name:desc", limit=2)
    assert [v.name for v in newest_first] == [f"page-{count - 1:02d}", f"page-{count - 2:02d}"]

    named = cinderclient.volumes.list(search_opts={"name": "page-07"})
    assert [v.id for v in named] == [by_name[7].id]

    summary = cinderclient.volumes.summary(all_tenants=False)
    assert summary["volume-summary"]["total_count"] == count
    assert summary["volume-summary"]["total_size"] == count


def test_snapshot_list_paging(cinderclient: Any) -> None:
    volume = wait_resource(cinderclient.volumes, cinderclient.volumes.create(1).id)
    snapshots = [
        cinderclient.volume_snapshots.create(volume.id, name=f"s{i}").id
        for i in range(MAX_LIMIT + 2)
    ]
    for snapshot_id in snapshots:
        wait_resource(cinderclient.volume_snapshots, snapshot_id)
    assert sorted(s.id for s in cinderclient.volume_snapshots.list()) == sorted(snapshots)
    assert len(cinderclient.volume_snapshots.list(limit=2)) == 2


def test_types_and_scheduling(
    cinderclient: Any, volume_type_factory: Any, admin_cinderclient: Any
) -> None:
    volume_type = volume_type_factory(backend="files")
    assert volume_type.get_keys() == {"volume_backend_name": "files"}
    assert volume_type.id in {t.id for t in cinderclient.volume_types.list()}
    assert admin_cinderclient.volume_types.get(volume_type.id).name == volume_type.name
    assert cinderclient.volume_types.default().name == "__DEFAULT__"

    volume = cinderclient.volumes.create(1, volume_type=volume_type.name)
    volume = wait_resource(cinderclient.volumes, volume.id)
    assert volume.volume_type == volume_type.name
    assert getattr(volume, "os-vol-host-attr:host") == "e2ehost@files#files"
    cinderclient.volumes.delete(volume)
    wait_deleted(cinderclient.volumes, volume.id)


def test_member_sees_only_its_project(e2e_server: Server, project_id: str) -> None:
    member = make_cinderclient(e2e_server, project_id, user="demo")
    other = make_cinderclient(e2e_server, uuid.uuid4().hex, user="demo")
    volume = wait_resource(member.volumes, member.volumes.create(1, name="mine").id)
    assert [v.id for v in member.volumes.list()] == [volume.id]
    assert other.volumes.list() == []
    with pytest.raises(exceptions.NotFound):
        other.volumes.get(volume.id)
    with pytest.raises(exceptions.Forbidden):
        member.volume_types.create(unique("nope"))
