"""Per-project quotas: the os-quota-sets API, /limits, and what creating, extending,
snapshotting, managing and deleting charge and give back, including under racing requests.

Each test works in a fresh project; limits are set with the admin API where the defaults
(10 volumes, 10 snapshots, 1000 GB, from [DEFAULT] quota_*) would take too long to reach.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cbhelpers import assert_fault, backend_type, file_volume, mem_volume, snapshot, volume_ids

from conftest import Api, RunningService

GiB = 1024**3
FILES_HOST = "testhost@files"
BASE_KEYS = {
    "volumes",
    "snapshots",
    "gigabytes",
    "backups",
    "backup_gigabytes",
    "groups",
    "per_volume_gigabytes",
}
DEFAULTS = {
    "volumes": 10,
    "snapshots": 10,
    "gigabytes": 1000,
    "backups": 10,
    "backup_gigabytes": 1000,
    "groups": 10,
    "per_volume_gigabytes": -1,
}


def volumes_over(allowed: int, name: str = "volumes") -> str:
    return (
        f"VolumeLimitExceeded: Maximum number of volumes allowed ({allowed}) exceeded for "
        f"quota '{name}'."
    )


def gigabytes_over(requested: int, quota: int, consumed: int, name: str = "gigabytes") -> str:
    return (
        f"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
        f"{name} quota. Requested {requested}G, quota is {quota}G and {consumed}G has been "
        "consumed."
    )


def quota_set(api: Api, project: str | None = None, usage: bool = False) -> dict[str, Any]:
    query = "?usage=true" if usage else ""
    resp = api.get(f"/os-quota-sets/{project or api.project}{query}")
    assert resp.status_code == 200, resp.text
    return resp.json()["quota_set"]


def set_quota(api: Api, project: str | None = None, **limits: Any) -> dict[str, Any]:
    resp = api.put(f"/os-quota-sets/{project or api.project}", {"quota_set": limits})
    assert resp.status_code == 200, resp.text
    return resp.json()["quota_set"]


def usage(api: Api, key: str) -> tuple[int, int]:
    """(in_use, reserved) of one resource of the caller's project."""
    entry = quota_set(api, usage=True)[key]
    return entry["in_use"], entry["reserved"]


def wait_usage(api: Api, key: str, expected: tuple[int, int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while usage(api, key) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} usage is {usage(api, key)}, expected {expected}")
        time.sleep(0.02)


def delete_volume(api: Api, volume_id: str) -> None:
    resp = api.delete(f"/volumes/{volume_id}")
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/volumes/{volume_id}")


@contextlib.contextmanager
def failing(cinder: RunningService, *operations: str) -> Iterator[None]:
    """Make the memory backend fail these operations for the duration of the block."""
    driver = cinder.service.managers["testhost@mem"].driver
    added = set(operations) - driver.fail_on
    driver.fail_on |= added
    try:
        yield
    finally:
        driver.fail_on -= added


# --- the quota-sets API ------------------------------------------------------------------------
def test_quota_set_lists_every_key_with_the_configured_defaults(api: Api) -> None:
    mem_type = backend_type(api, "mem")["name"]
    body = quota_set(api)
    assert body["id"] == api.project
    assert set(body) >= BASE_KEYS
    assert {k: body[k] for k in DEFAULTS} == DEFAULTS
    # Per-type keys for every type, unlimited unless set.
    for resource in ("volumes", "snapshots", "gigabytes"):
        assert body[f"{resource}_{mem_type}"] == -1
        assert body[f"{resource}___DEFAULT__"] == -1
    assert all(isinstance(v, int) for k, v in body.items() if k != "id")

    defaults = api.get(f"/os-quota-sets/{api.project}/defaults")
    assert defaults.status_code == 200, defaults.text
    assert defaults.json()["quota_set"] == body


def test_usage_view_gives_limit_in_use_and_reserved_for_every_key(api: Api) -> None:
    mem_type = backend_type(api, "mem")["name"]
    mem_volume(api, size=3)
    body = quota_set(api, usage=True)
    assert body["id"] == api.project
    for key, value in body.items():
        if key != "id":
            assert set(value) == {"limit", "in_use", "reserved"}, (key, value)
    assert body["volumes"] == {"limit": 10, "in_use": 1, "reserved": 0}
    assert body["gigabytes"] == {"limit": 1000, "in_use": 3, "reserved": 0}
    assert body["snapshots"] == {"limit": 10, "in_use": 0, "reserved": 0}
    assert body[f"volumes_{mem_type}"] == {"limit": -1, "in_use": 1, "reserved": 0}
    assert body[f"gigabytes_{mem_type}"] == {"limit": -1, "in_use": 3, "reserved": 0}
    assert body["per_volume_gigabytes"] == {"limit": -1, "in_use": 0, "reserved": 0}
    # usage=false (or anything not true) is the plain view
    assert quota_set(api)["volumes"] == 10
    assert api.get(f"/os-quota-sets/{api.project}?usage=false").json()["quota_set"]["volumes"] == 10


def test_update_sets_limits_and_delete_goes_back_to_the_defaults(api: Api) -> None:
    mem_type = backend_type(api, "mem")["name"]
    body = set_quota(api, volumes=3, gigabytes="7", **{f"volumes_{mem_type}": 2})
    assert "id" not in body
    assert (body["volumes"], body["gigabytes"], body[f"volumes_{mem_type}"]) == (3, 7, 2)
    assert body["snapshots"] == 10
    shown = quota_set(api)
    assert (shown["volumes"], shown["gigabytes"], shown[f"volumes_{mem_type}"]) == (3, 7, 2)
    # Updating again replaces; -1 is unlimited; the id key is ignored.
    body = set_quota(api, volumes=-1, id=api.project)
    assert body["volumes"] == -1 and body["gigabytes"] == 7
    # Other projects are untouched.
    assert quota_set(api, uuid.uuid4().hex)["volumes"] == 10

    resp = api.delete(f"/os-quota-sets/{api.project}")
    assert resp.status_code == 200, resp.text
    assert resp.content == b""
    shown = quota_set(api)
    assert {k: shown[k] for k in DEFAULTS} == DEFAULTS
    assert shown[f"volumes_{mem_type}"] == -1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"quota_set": {"nope": 1}}, "Invalid input received: Bad key(s) in quota set: nope"),
        (
            {"quota_set": {"volumes_no-such-type": 1}},
            "Invalid input received: Bad key(s) in quota set: volumes_no-such-type",
        ),
        ({"quota_set": {"volumes": -2}}, "Invalid input received: volumes must be >= -1"),
        ({"quota_set": {"volumes": "ten"}}, "Invalid input received: volumes must be an integer."),
        ({"quota_set": {"volumes": 1.5}}, "Invalid input received: volumes must be an integer."),
        ({"quota_set": {"volumes": True}}, "Invalid input received: volumes must be an integer."),
        (
            {"quota_set": {"gigabytes": 2**31}},
            "Invalid input received: gigabytes must be <= 2147483647",
        ),
        ({"quota_set": {}}, None),
        ({"quota_set": 5}, None),
        ({"quota": {"volumes": 1}}, None),
        ({"quota_set": {"volumes": 1}, "skip": 1}, None),
    ],
)
def test_update_refuses_bad_bodies(api: Api, body: Any, message: str | None) -> None:
    assert_fault(api.put(f"/os-quota-sets/{api.project}", body), 400, message)
    assert quota_set(api)["volumes"] == 10  # nothing was changed


def test_lowering_a_limit_below_usage_is_refused(api: Api) -> None:
    mem_volume(api, size=2)
    mem_volume(api, size=2)
    resp = api.put(f"/os-quota-sets/{api.project}", {"quota_set": {"volumes": 1, "gigabytes": 8}})
    assert_fault(resp, 400, "Quota volumes limit must be equal or greater than existing resources.")
    assert quota_set(api)["gigabytes"] == 1000  # all or nothing
    resp = api.put(f"/os-quota-sets/{api.project}", {"quota_set": {"gigabytes": 3}})
    assert_fault(
        resp, 400, "Quota gigabytes limit must be equal or greater than existing resources."
    )
    assert set_quota(api, volumes=2, gigabytes=4)["volumes"] == 2  # equal to usage is fine
    assert set_quota(api, volumes=-1)["volumes"] == -1
    # per_volume_gigabytes is a cap on one request, not a usage.
    assert set_quota(api, per_volume_gigabytes=1)["per_volume_gigabytes"] == 1


def test_members_read_their_own_quotas_only_and_change_none(
    api: Api, member_api: Api, cinder: RunningService
) -> None:
    assert quota_set(member_api)["volumes"] == 10
    assert quota_set(member_api, usage=True)["volumes"]["limit"] == 10
    assert member_api.get(f"/os-quota-sets/{member_api.project}/defaults").status_code == 200
    other = uuid.uuid4().hex
    for path in (f"/os-quota-sets/{other}", f"/os-quota-sets/{other}/defaults"):
        assert_fault(
            member_api.get(path),
            403,
            "Policy doesn't allow volume_extension:quotas:show to be performed.",
        )
    assert_fault(
        member_api.put(f"/os-quota-sets/{member_api.project}", {"quota_set": {"volumes": 99}}),
        403,
        "Policy doesn't allow volume_extension:quotas:update to be performed.",
    )
    assert_fault(
        member_api.delete(f"/os-quota-sets/{member_api.project}"),
        403,
        "Policy doesn't allow volume_extension:quotas:delete to be performed.",
    )
    assert quota_set(member_api)["volumes"] == 10
    # An admin reads and sets any project's quotas from its own project.
    admin = Api(cinder.url, uuid.uuid4().hex)
    set_quota(admin, member_api.project, volumes=4)
    assert quota_set(admin, member_api.project)["volumes"] == 4
    assert quota_set(member_api)["volumes"] == 4
    admin.client.close()


# --- /limits -------------------------------------------------------------------------------------
def test_limits_report_the_quotas_and_their_usage(api: Api) -> None:
    set_quota(api, volumes=4, snapshots=3, gigabytes=50, backups=2)
    volume = mem_volume(api, size=5)
    snapshot(api, volume["id"])
    absolute = api.get("/limits").json()["limits"]["absolute"]
    assert absolute == {
        "maxTotalVolumes": 4,
        "maxTotalSnapshots": 3,
        "maxTotalVolumeGigabytes": 50,
        "maxTotalBackups": 2,
        "maxTotalBackupGigabytes": 1000,
        "totalVolumesUsed": 1,
        "totalGigabytesUsed": 10,  # the volume and its snapshot
        "totalSnapshotsUsed": 1,
        "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0,
    }


# --- volumes ------------------------------------------------------------------------------------
def test_create_beyond_the_volume_limit_is_413_and_makes_nothing(api: Api) -> None:
    set_quota(api, volumes=2)
    first = mem_volume(api)
    mem_volume(api)
    resp = api.post("/volumes", {"volume": {"size": 1, "name": "one-too-many"}})
    assert_fault(resp, 413, volumes_over(2))
    assert len(volume_ids(api)) == 2
    assert usage(api, "volumes") == (2, 0)
    # A delete gives the room back (when the row goes).
    delete_volume(api, first["id"])
    assert usage(api, "volumes") == (1, 0)
    mem_volume(api)
    assert usage(api, "volumes") == (2, 0)


def test_create_beyond_the_gigabytes_limit_is_413(api: Api) -> None:
    set_quota(api, gigabytes=5)
    mem_volume(api, size=3)
    assert_fault(api.post("/volumes", {"volume": {"size": 3}}), 413, gigabytes_over(3, 5, 3))
    assert len(volume_ids(api)) == 1
    mem_volume(api, size=2)  # exactly up to the limit
    assert usage(api, "gigabytes") == (5, 0)
    assert_fault(api.post("/volumes", {"volume": {"size": 1}}), 413, gigabytes_over(1, 5, 5))


def test_a_clone_and_a_volume_from_a_snapshot_are_charged_too(api: Api) -> None:
    source = mem_volume(api, size=2)
    snap = snapshot(api, source["id"])
    clone = api.create_volume(source_volid=source["id"], size=None)
    from_snap = api.create_volume(snapshot_id=snap["id"], size=None)
    assert (clone["size"], from_snap["size"]) == (2, 2)
    assert usage(api, "volumes") == (3, 0)
    assert usage(api, "gigabytes") == (8, 0)  # three volumes and the snapshot
    set_quota(api, volumes=3)
    resp = api.post("/volumes", {"volume": {"source_volid": source["id"]}})
    assert_fault(resp, 413, volumes_over(3))


def test_per_volume_gigabytes_caps_one_volume(api: Api) -> None:
    set_quota(api, per_volume_gigabytes=2)
    message = (
        "VolumeSizeExceedsLimit: Requested volume size 3G is larger than maximum allowed limit 2G."
    )
    assert_fault(api.post("/volumes", {"volume": {"size": 3}}), 413, message)
    assert volume_ids(api) == []
    volume = mem_volume(api, size=2)
    resp = api.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 3}})
    assert_fault(resp, 413, message)
    shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert (shown["status"], shown["size"]) == ("available", 2)
    assert usage(api, "gigabytes") == (2, 0)


def test_per_type_limits_count_only_their_type(api: Api) -> None:
    mem_type = backend_type(api, "mem")["name"]
    set_quota(api, **{f"volumes_{mem_type}": 1, f"gigabytes_{mem_type}": 10})
    mem_volume(api, size=4)
    resp = api.post("/volumes", {"volume": {"size": 1, "volume_type": mem_type}})
    assert_fault(resp, 413, volumes_over(1, f"volumes_{mem_type}"))
    file_volume(api, size=1)  # another type is not limited
    assert usage(api, f"volumes_{mem_type}") == (1, 0)
    assert usage(api, "volumes") == (2, 0)
    set_quota(api, **{f"volumes_{mem_type}": -1})
    resp = api.post("/volumes", {"volume": {"size": 7, "volume_type": mem_type}})
    assert_fault(resp, 413, gigabytes_over(7, 10, 4, f"gigabytes_{mem_type}"))


def test_renaming_a_type_carries_its_limits_and_usage(api: Api) -> None:
    old, new = f"qt-{uuid.uuid4().hex[:8]}", f"qt-{uuid.uuid4().hex[:8]}"
    resp = api.post(
        "/types", {"volume_type": {"name": old, "extra_specs": {"volume_backend_name": "mem"}}}
    )
    assert resp.status_code == 200, resp.text
    type_id = resp.json()["volume_type"]["id"]
    volume = api.create_volume(size=2, volume_type=old)
    set_quota(api, **{f"volumes_{old}": 1})
    resp = api.put(f"/types/{type_id}", {"volume_type": {"name": new}})
    assert resp.status_code == 200, resp.text
    body = quota_set(api, usage=True)
    assert f"volumes_{old}" not in body
    assert body[f"volumes_{new}"] == {"limit": 1, "in_use": 1, "reserved": 0}
    assert body[f"gigabytes_{new}"] == {"limit": -1, "in_use": 2, "reserved": 0}
    resp = api.post("/volumes", {"volume": {"size": 1, "volume_type": new}})
    assert_fault(resp, 413, volumes_over(1, f"volumes_{new}"))
    delete_volume(api, volume["id"])
    assert usage(api, f"volumes_{new}") == (0, 0)
    assert usage(api, f"gigabytes_{new}") == (0, 0)


def test_an_error_volume_keeps_its_charge_until_deleted(api: Api) -> None:
    resp = api.post(
        "/types",
        {
            "volume_type": {
                "name": f"nowhere-{uuid.uuid4().hex[:8]}",
                "extra_specs": {"volume_backend_name": "no-such-backend"},
            }
        },
    )
    assert resp.status_code == 200, resp.text
    failed = api.create_volume(size=4, wait=False, volume_type=resp.json()["volume_type"]["name"])
    assert api.wait_volume(failed["id"], statuses=("error",))["status"] == "error"
    assert usage(api, "volumes") == (1, 0)
    assert usage(api, "gigabytes") == (4, 0)
    delete_volume(api, failed["id"])
    assert usage(api, "volumes") == (0, 0)
    assert usage(api, "gigabytes") == (0, 0)


# --- extend -------------------------------------------------------------------------------------
def test_extend_over_quota_is_413_and_changes_nothing(api: Api) -> None:
    set_quota(api, gigabytes=4)
    volume = mem_volume(api, size=2)
    resp = api.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 5}})
    assert_fault(resp, 413, gigabytes_over(3, 4, 2))
    shown = api.get(f"/volumes/{volume['id']}").json()["volume"]
    assert (shown["status"], shown["size"]) == ("available", 2)
    assert usage(api, "gigabytes") == (2, 0)
    resp = api.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 4}})
    assert resp.status_code == 202, resp.text
    assert api.wait_volume(volume["id"])["size"] == 4
    wait_usage(api, "gigabytes", (4, 0))


def test_a_failed_extend_gives_its_reservation_back(api: Api, cinder: RunningService) -> None:
    volume = mem_volume(api, size=2)
    with failing(cinder, "extend_volume"):
        resp = api.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 6}})
        assert resp.status_code == 202, resp.text
        api.wait_volume(volume["id"], statuses=("error_extending",))
    wait_usage(api, "gigabytes", (2, 0))
    # The error volume keeps its (old) size charged until it is deleted.
    delete_volume(api, volume["id"])
    assert usage(api, "gigabytes") == (0, 0)


# --- snapshots ----------------------------------------------------------------------------------
def test_snapshot_limits_and_gigabytes(api: Api) -> None:
    set_quota(api, snapshots=1)
    volume = mem_volume(api, size=2)
    first = snapshot(api, volume["id"])
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    assert_fault(
        resp, 413, "SnapshotLimitExceeded: Maximum number of snapshots allowed (1) exceeded"
    )
    assert len(api.get("/snapshots").json()["snapshots"]) == 1
    assert usage(api, "snapshots") == (1, 0)
    assert usage(api, "gigabytes") == (4, 0)  # the volume's size, once more
    resp = api.delete(f"/snapshots/{first['id']}")
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/snapshots/{first['id']}")
    assert usage(api, "snapshots") == (0, 0)
    assert usage(api, "gigabytes") == (2, 0)

    set_quota(api, snapshots=5, gigabytes=3)
    resp = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    assert_fault(resp, 413, gigabytes_over(2, 3, 2))
    assert api.get("/snapshots").json()["snapshots"] == []


def test_a_cascade_delete_gives_back_the_snapshots_too(api: Api) -> None:
    volume = mem_volume(api, size=3)
    snapshot(api, volume["id"])
    snapshot(api, volume["id"])
    assert usage(api, "gigabytes") == (9, 0)
    resp = api.delete(f"/volumes/{volume['id']}?cascade=true")
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/volumes/{volume['id']}")
    assert quota_set(api, usage=True)["snapshots"]["in_use"] == 0
    assert usage(api, "gigabytes") == (0, 0)
    assert usage(api, "volumes") == (0, 0)


# --- manage / unmanage --------------------------------------------------------------------------
def _foreign_file(cinder: RunningService, size: int) -> str:
    name = f"quota-foreign-{uuid.uuid4().hex[:10]}"
    cinder.volumes_dir.mkdir(parents=True, exist_ok=True)
    with open(cinder.volumes_dir / name, "xb") as f:
        f.truncate(size)
    return name


def _manage(api: Api, name: str) -> httpx.Response:
    body = {
        "volume": {
            "host": FILES_HOST,
            "ref": {"source-name": name},
            "volume_type": backend_type(api, "files")["name"],
        }
    }
    return api.post("/manageable_volumes", body)


def test_a_managed_volume_is_counted_and_unmanage_gives_it_back(
    api: Api, cinder: RunningService
) -> None:
    name = _foreign_file(cinder, GiB + GiB // 2)
    resp = _manage(api, name)
    assert resp.status_code == 202, resp.text
    volume = api.wait_volume(resp.json()["volume"]["id"])
    assert volume["size"] == 2
    assert usage(api, "volumes") == (1, 0)
    assert usage(api, "gigabytes") == (2, 0)
    files_type = backend_type(api, "files")["name"]
    assert usage(api, f"gigabytes_{files_type}") == (2, 0)

    # At the volumes limit the API refuses before anything starts.
    set_quota(api, volumes=1)
    other = _foreign_file(cinder, GiB)
    assert_fault(_manage(api, other), 413, volumes_over(1))
    assert (cinder.volumes_dir / other).is_file()

    resp = api.post(f"/volumes/{volume['id']}/action", {"os-unmanage": {}})
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/volumes/{volume['id']}")
    assert usage(api, "volumes") == (0, 0)
    assert usage(api, "gigabytes") == (0, 0)


def test_managing_more_gigabytes_than_the_quota_allows_fails_with_a_message(
    api: Api, cinder: RunningService
) -> None:
    set_quota(api, gigabytes=2)
    name = _foreign_file(cinder, 3 * GiB)
    resp = _manage(api, name)
    assert resp.status_code == 202, resp.text  # the size is learnt by the volume manager
    volume_id = resp.json()["volume"]["id"]
    volume = api.wait_volume(volume_id, statuses=("error",))
    assert volume["status"] == "error"
    resp = api.get(f"/messages?resource_uuid={volume_id}", version="3.3")
    messages = resp.json()["messages"]
    assert len(messages) == 1, messages
    assert messages[0]["user_message"] == (
        "manage existing volume: Over quota: Requested volume or snapshot exceeds allowed "
        "gigabytes quota. Requested 3G, quota is 2G and 0G has been consumed."
    )
    # The file was not adopted; the error volume counts (volumes, not gigabytes) until
    # it is deleted, which leaves the file alone.
    assert (cinder.volumes_dir / name).is_file()
    assert usage(api, "volumes") == (1, 0)
    assert usage(api, "gigabytes") == (0, 0)
    delete_volume(api, volume_id)
    assert usage(api, "volumes") == (0, 0)
    assert (cinder.volumes_dir / name).is_file()
    # With room it manages.
    set_quota(api, gigabytes=3)
    resp = _manage(api, name)
    assert resp.status_code == 202, resp.text
    assert api.wait_volume(resp.json()["volume"]["id"])["size"] == 3
    assert usage(api, "gigabytes") == (3, 0)


def test_a_managed_snapshot_is_charged_its_real_size(api: Api, cinder: RunningService) -> None:
    volume = file_volume(api, size=3)
    name = f"volume-{volume['id']}@foreign-{uuid.uuid4().hex[:6]}"
    with open(cinder.volumes_dir / name, "xb") as f:
        f.truncate(GiB + GiB // 2)
    body = {"snapshot": {"volume_id": volume["id"], "ref": {"source-name": name}}}
    resp = api.post("/manageable_snapshots", body)
    assert resp.status_code == 202, resp.text
    view = resp.json()["snapshot"]
    assert view["size"] == 3  # the volume's size (and charge) until the driver answers
    assert api.wait_snapshot(view["id"])["size"] == 2
    wait_usage(api, "gigabytes", (5, 0))  # the volume's 3 and the snapshot's 2
    assert usage(api, "snapshots") == (1, 0)

    set_quota(api, snapshots=1)
    other = f"volume-{volume['id']}@foreign-{uuid.uuid4().hex[:6]}"
    with open(cinder.volumes_dir / other, "xb") as f:
        f.truncate(GiB)
    body = {"snapshot": {"volume_id": volume["id"], "ref": {"source-name": other}}}
    assert_fault(
        api.post("/manageable_snapshots", body),
        413,
        "SnapshotLimitExceeded: Maximum number of snapshots allowed (1) exceeded",
    )
    resp = api.post(f"/snapshots/{view['id']}/action", {"os-unmanage": {}})
    assert resp.status_code == 202, resp.text
    api.wait_gone(f"/snapshots/{view['id']}")
    assert usage(api, "snapshots") == (0, 0)
    assert usage(api, "gigabytes") == (3, 0)


# --- races --------------------------------------------------------------------------------------
def _race_creates(api: Api, count: int, size: int) -> list[httpx.Response]:
    """`count` creates released at once, each from its own thread and connection."""
    mem_type = backend_type(api, "mem")["name"]
    clients = [Api(api.base, api.project, user=api.user) for _ in range(count)]
    start = threading.Barrier(count)
    results: list[httpx.Response | None] = [None] * count

    def one(i: int) -> None:
        body = {"volume": {"size": size, "name": f"race-{i}", "volume_type": mem_type}}
        start.wait()
        results[i] = clients[i].post("/volumes", body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for client in clients:
        client.client.close()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _check_race(api: Api, responses: list[httpx.Response], winners: int, message: str) -> None:
    codes = Counter(r.status_code for r in responses)
    assert codes == Counter({202: winners, 413: len(responses) - winners}), (
        codes,
        [r.text for r in responses if r.status_code not in (202, 413)],
    )
    for resp in responses:
        if resp.status_code == 413:
            assert_fault(resp, 413, message)
    made = {r.json()["volume"]["id"] for r in responses if r.status_code == 202}
    assert set(volume_ids(api)) == made
    for volume_id in made:
        api.wait_volume(volume_id)


def test_racing_creates_never_exceed_the_volumes_quota(api: Api) -> None:
    set_quota(api, volumes=5)
    responses = _race_creates(api, 30, size=1)
    _check_race(api, responses, 5, volumes_over(5))
    assert usage(api, "volumes") == (5, 0)
    assert usage(api, "gigabytes") == (5, 0)


def test_racing_creates_never_exceed_the_gigabytes_quota(api: Api) -> None:
    set_quota(api, volumes=-1, gigabytes=10)
    responses = _race_creates(api, 30, size=2)
    _check_race(api, responses, 5, gigabytes_over(2, 10, 10))
    assert usage(api, "gigabytes") == (10, 0)
    assert usage(api, "volumes") == (5, 0)


def test_racing_creates_and_deletes_keep_usage_exact(api: Api) -> None:
    """Deletes give room back while creates race for it: usage always equals the rows."""
    set_quota(api, volumes=3)
    victims = [mem_volume(api)["id"] for _ in range(3)]
    deleters = [Api(api.base, api.project, user=api.user) for _ in victims]
    threads = [
        threading.Thread(target=lambda c=c, v=v: c.delete(f"/volumes/{v}"))
        for c, v in zip(deleters, victims, strict=True)
    ]
    for thread in threads:
        thread.start()
    responses = _race_creates(api, 12, size=1)
    for thread in threads:
        thread.join()
    for volume_id in victims:
        api.wait_gone(f"/volumes/{volume_id}")
    for client in deleters:
        client.client.close()
    made = [r.json()["volume"]["id"] for r in responses if r.status_code == 202]
    # Deletes finish asynchronously: how many creates find room varies, never above 3.
    assert len(made) <= 3, [r.status_code for r in responses]
    assert all(r.status_code in (202, 413) for r in responses)
    assert sorted(volume_ids(api)) == sorted(made)
    assert usage(api, "volumes") == (len(made), 0)


def test_usage_rows_removed_behind_the_services_back_are_made_again(
    api: Api, cinder: RunningService
) -> None:
    """The API remembers which usage rows exist (to charge them with one locking read);
    rows that vanish anyway (an operator's cleanup) are created again, and counted right."""
    mem_volume(api, size=2)
    with cinder.service.db.session() as session:
        session.execute(
            sa.text("DELETE FROM quota_usages WHERE project_id = :p"), {"p": api.project}
        )
    mem_volume(api, size=3)
    assert usage(api, "volumes") == (1, 0)
    assert usage(api, "gigabytes") == (3, 0)
    set_quota(api, gigabytes=4)
    assert_fault(api.post("/volumes", {"volume": {"size": 2}}), 413, gigabytes_over(2, 4, 3))
    mem_volume(api, size=1)
    assert usage(api, "gigabytes") == (4, 0)
