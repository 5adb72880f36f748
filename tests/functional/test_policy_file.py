"""A policy file overrides single rules of the default policy; project isolation holds
whatever it says; an unusable file stops the service at start-up."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cbhelpers import assert_fault, backend_type

from conftest import Api, RunningService, start_service

# policy.yaml beside the config file is read without any [oslo_policy] option (Cinder's
# default name), so the harness's own config file is used as is.
POLICY = """\
# members may reset the status of their own volumes
"volume_extension:volume_admin_actions:reset_status": "rule:admin_or_member"
# only admins, and the user "builder", create volumes
"volume:create": "rule:admin_api or user_id:builder"
# nobody deletes volumes, not even admins
"volume:delete": "!"
# anyone may look at a volume: project isolation still holds below the policy
"volume:get": ""
# messages are for admins only
"message:get_all": "not role:member or rule:admin_api"
# not even admins list every project's resources at once
"volume:get_all_tenants": "!"
"""


@pytest.fixture(scope="module")
def policed(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[RunningService]:
    directory = tmp_path_factory.mktemp("policed")
    (directory / "policy.yaml").write_text(POLICY)
    running = start_service(directory, database_url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def clients(policed: RunningService) -> Iterator[dict[str, Api]]:
    project = uuid.uuid4().hex
    made = {
        "builder": Api(policed.url, project, user="builder"),
        "demo": Api(policed.url, project, user="demo"),
        "other": Api(policed.url, uuid.uuid4().hex, user="demo"),
        "admin": Api(policed.url, uuid.uuid4().hex),
    }
    yield made
    for client in made.values():
        client.client.close()


def _create(api: Api) -> httpx.Response:
    mem = backend_type(api, "mem")["name"]
    return api.post("/volumes", {"volume": {"size": 1, "volume_type": mem}})


def test_create_is_for_admins_and_builder_only(clients: dict[str, Api]) -> None:
    message = "Policy doesn't allow volume:create to be performed."
    assert_fault(_create(clients["demo"]), 403, message)
    assert_fault(_create(clients["other"]), 403, message)
    assert clients["demo"].get("/volumes").json()["volumes"] == []  # nothing was made
    for who in ("builder", "admin"):
        resp = _create(clients[who])
        assert resp.status_code == 202, resp.text
        clients[who].wait_volume(resp.json()["volume"]["id"])


def test_members_reset_their_own_volumes(clients: dict[str, Api]) -> None:
    resp = _create(clients["builder"])
    assert resp.status_code == 202, resp.text
    vid = clients["builder"].wait_volume(resp.json()["volume"]["id"])["id"]
    body = {"os-reset_status": {"status": "error"}}
    # another project's member: cannot even see it (the policy's rule names the owner's
    # project, and lookups are scoped to the caller's project anyway)
    assert_fault(clients["other"].post(f"/volumes/{vid}/action", body), 404)
    assert_fault(clients["other"].get(f"/volumes/{vid}"), 404)  # "volume:get": "" or not
    assert clients["builder"].get(f"/volumes/{vid}").json()["volume"]["status"] == "available"
    # a member of the owning project (not the creator) may, under this policy
    resp = clients["demo"].post(f"/volumes/{vid}/action", body)
    assert resp.status_code == 202, resp.text
    assert clients["demo"].get(f"/volumes/{vid}").json()["volume"]["status"] == "error"
    # other admin actions keep their default
    assert_fault(
        clients["demo"].post(f"/volumes/{vid}/action", {"os-force_delete": {}}),
        403,
        "Policy doesn't allow volume_extension:volume_admin_actions:force_delete to be performed.",
    )


def test_nobody_deletes(clients: dict[str, Api]) -> None:
    resp = _create(clients["builder"])
    vid = clients["builder"].wait_volume(resp.json()["volume"]["id"])["id"]
    message = "Policy doesn't allow volume:delete to be performed."
    assert_fault(clients["builder"].delete(f"/volumes/{vid}"), 403, message)
    assert_fault(clients["admin"].delete(f"/volumes/{vid}"), 403, message)
    assert_fault(clients["other"].delete(f"/volumes/{vid}"), 404)
    assert clients["builder"].get(f"/volumes/{vid}").json()["volume"]["status"] == "available"


def test_not_and_or_rules(clients: dict[str, Api]) -> None:
    assert_fault(
        clients["demo"].get("/messages"),
        403,
        "Policy doesn't allow message:get_all to be performed.",
    )
    assert clients["admin"].get("/messages").status_code == 200


def test_all_tenants_can_be_taken_from_admins(clients: dict[str, Api]) -> None:
    resp = _create(clients["builder"])
    vid = clients["builder"].wait_volume(resp.json()["volume"]["id"])["id"]
    listed = clients["admin"].get("/volumes/detail?all_tenants=1").json()["volumes"]
    assert vid not in {v["id"] for v in listed}  # the admin's own project only
    assert clients["admin"].get(f"/volumes/{vid}").status_code == 200  # lookups still work
    attachments = clients["admin"].get("/attachments?all_tenants=1").json()["attachments"]
    assert all(a["volume_id"] != vid for a in attachments)


def test_the_default_policy_is_unchanged_elsewhere(cinder: RunningService) -> None:
    """Services in one process keep their own policies: the shared one has the defaults."""
    member = Api(cinder.url, uuid.uuid4().hex, user="demo")
    try:
        resp = _create(member)
        assert resp.status_code == 202, resp.text
        vid = member.wait_volume(resp.json()["volume"]["id"])["id"]
        assert_fault(
            member.post(f"/volumes/{vid}/action", {"os-reset_status": {"status": "error"}}), 403
        )
        admin = Api(cinder.url, uuid.uuid4().hex)
        listed = admin.get("/volumes/detail?all_tenants=1").json()["volumes"]
        assert vid in {v["id"] for v in listed}
        admin.client.close()
        assert member.delete(f"/volumes/{vid}").status_code == 202
    finally:
        member.client.close()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ('"volume:create": "role:member and"\n', "volume:create"),
        ('"volume:create": [unclosed\n', "not valid YAML"),
        ('"volume:create": "rule:nowhere"\n', "rule:nowhere"),
    ],
)
def test_an_unusable_policy_file_stops_the_start(
    tmp_path: Path, policy: str, expected: str
) -> None:
    (tmp_path / "rules.yaml").write_text(policy)
    config = tmp_path / "cinderblock.conf"
    config.write_text(
        f"[DEFAULT]\nstate_path = {tmp_path}\n[database]\n"
        f"connection = sqlite:///{tmp_path / 'db.sqlite'}\n"
        "[oslo_policy]\npolicy_file = rules.yaml\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "cinderblock.cli.main", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert str(tmp_path / "rules.yaml") in result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "db.sqlite").exists()  # stopped before anything started
