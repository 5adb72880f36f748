"""auth_strategy = keystone against a REAL Keystone (tests/e2e/keystone_support.py).

Keystone 30 from PyPI in its own cached virtualenv, SQLite, fernet tokens, on
loopback; `cinderblock serve` in its own process validates tokens through
keystonemiddleware with a service user that has only the `service` role.

Users: alice (member of project alpha), bob (member of beta), rita (reader of
alpha), admin (admin of project admin), cinderblock (service user).

The first run installs Keystone (tens of seconds to a few minutes); later runs
reuse the virtualenv. When the install fails (no package index) the Keystone
tests are skipped with the reason, unless CINDERBLOCK_REQUIRE_KEYSTONE=1.
The tests at the top need no Keystone: configuration and the token cache.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cinderblock.api.auth import KeystoneAuth, TokenCache
from cinderblock.config import ConfigError, KeystoneAuthSettings, load_settings

from .keystone_support import KeystoneServer, KeystoneUnavailable, ensure_keystone
from .support import BIN, WAIT, Server, client_env, free_port, server_answers, server_command

# The first Keystone test may install Keystone (bounded by keystone_support.INSTALL_DEADLINE).
pytestmark = pytest.mark.timeout(1500)
# Seconds cinderblock remembers a validated token in these tests.
CACHE_TIME = 4
JSON = {"Content-Type": "application/json"}


# ---------------------------------------------------------------------------
# No Keystone needed: configuration and the cache


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.conf"
    path.write_text(text)
    return path


def test_config_keystone_section_is_read(tmp_path: Path) -> None:
    settings = load_settings(
        _write(
            tmp_path,
            """[DEFAULT]
auth_strategy = keystone
[keystone_authtoken]
www_authenticate_uri = http://public:5000/v3
auth_url = http://internal:5000/v3
username = cinderblock
password = s3cret
project_name = service
token_cache_time = 60
""",
        )
    )
    ks = settings.keystone
    assert settings.auth_strategy == "keystone" and ks is not None
    assert ks.www_authenticate_uri == "http://public:5000/v3"
    assert ks.auth_url == "http://internal:5000/v3"
    assert (ks.username, ks.password, ks.project_name) == ("cinderblock", "s3cret", "service")
    assert (ks.user_domain_name, ks.project_domain_name) == ("Default", "Default")
    assert (ks.token_cache_time, ks.token_cache_size) == (60, 10000)
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("", r"needs a \[keystone_authtoken\] section"),
        ("[keystone_authtoken]\nusername = u\npassword = p\nproject_name = s\n", "auth_url"),
        ("[keystone_authtoken]\nauth_url = http://k/v3\nusername = u\npassword = p\n", "project"),
        (
            "[keystone_authtoken]\nauth_url = http://k/v3\nusername = u\npassword = p\n"
            "project_name = s\ntoken_cache_time = soon\n",
            "token_cache_time must be an integer",
        ),
    ],
)
def test_config_keystone_errors(tmp_path: Path, section: str, message: str) -> None:
    path = _write(tmp_path, f"[DEFAULT]\nauth_strategy = keystone\n{section}")
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_config_unknown_strategy(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="noauth or keystone"):
        load_settings(_write(tmp_path, "[DEFAULT]\nauth_strategy = ldap\n"))


def test_token_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache = TokenCache(max_entries=3, clock=lambda: now[0])
    keys = [TokenCache.key(f"token-{i}") for i in range(5)]
    for key in keys:
        cache.put(key, "refused", ttl=10)
    assert len(cache) == 3
    assert cache.get(keys[0]) is None and cache.get(keys[1]) is None  # least recent went
    assert cache.get(keys[4]) == "refused"
    now[0] = 10.0
    assert cache.get(keys[4]) is None
    cache.put(keys[0], "refused", ttl=0)  # no caching at all
    assert cache.get(keys[0]) is None


def test_cache_time_is_cut_to_the_tokens_life() -> None:
    pytest.importorskip("keystonemiddleware")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    auth = KeystoneAuth(
        KeystoneAuthSettings(
            auth_url="http://127.0.0.1:9/v3",
            www_authenticate_uri="http://127.0.0.1:9/v3",
            username="u",
            password="p",
            project_name="service",
            token_cache_time=300,
        ),
        wall_clock=lambda: now,
    )
    soon = (now + timedelta(seconds=30)).isoformat()
    later = (now + timedelta(hours=1)).isoformat()
    assert auth._ttl({"token": {"expires_at": soon}}) == 30
    assert auth._ttl({"token": {"expires_at": later}}) == 300
    restricted = {"expires_at": later, "application_credential": {"access_rules": []}}
    assert auth._ttl({"token": restricted}) == 0


# ---------------------------------------------------------------------------
# A real Keystone and a cinderblock that trusts it


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    try:
        venv = ensure_keystone()
    except KeystoneUnavailable as err:
        if os.environ.get("CINDERBLOCK_REQUIRE_KEYSTONE") == "1":
            raise
        pytest.skip(f"Keystone could not be installed: {err}")
    server = KeystoneServer(venv=venv, directory=tmp_path_factory.mktemp("keystone"))
    server.setup()
    server.start()
    try:
        server.seed()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cinderblock(
    keystone: KeystoneServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("cinderblock-keystone")
    port = free_port()
    config = directory / "cinderblock.conf"
    config.write_text(
        f"""[DEFAULT]
host = kshost
enabled_backends = mem
bind_host = 127.0.0.1
bind_port = {port}
state_path = {directory}
report_interval = 2
auth_strategy = keystone

[database]
connection = sqlite:///{directory / "cinderblock.sqlite"}

[mem]
volume_driver = memory
volume_backend_name = mem

[keystone_authtoken]
www_authenticate_uri = {keystone.url}
auth_url = {keystone.url}
auth_type = password
username = cinderblock
password = cinderblock-secret
project_name = service
user_domain_name = Default
project_domain_name = Default
token_cache_time = {CACHE_TIME}
http_connect_timeout = 5
http_request_max_retries = 0
"""
    )
    log = directory / "server.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            server_command(config),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=client_env(),
        )
        try:
            deadline = time.monotonic() + WAIT
            while not server_answers(url):
                if process.poll() is not None:
                    raise RuntimeError(f"cinderblock exited:\n{log.read_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cinderblock did not answer:\n{log.read_text()}")
                time.sleep(0.1)
            yield Server(url=url, log=log, config=config)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def call(
    server: Server, method: str, path: str, token: str | None, body: Any = None
) -> httpx.Response:
    headers = dict(JSON)
    if token is not None:
        headers["X-Auth-Token"] = token
    return httpx.request(method, f"{server.url}{path}", headers=headers, json=body, timeout=60)


def create_volume(server: Server, project: str, token: str, name: str) -> str:
    response = call(
        server, "POST", f"/v3/{project}/volumes", token, {"volume": {"size": 1, "name": name}}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["volume"]["id"])


def listed(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {volume["id"] for volume in response.json()["volumes"]}


def assert_401(response: httpx.Response, keystone: KeystoneServer) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {
        "unauthorized": {
            "code": 401,
            "message": "The request you have made requires authentication.",
        }
    }
    assert response.headers["www-authenticate"] == f'Keystone uri="{keystone.url}"'
    assert response.headers["x-openstack-request-id"].startswith("req-")


def test_version_documents_need_no_token(cinderblock: Server) -> None:
    assert call(cinderblock, "GET", "/", None).status_code == 300
    response = call(cinderblock, "GET", "/v3/", None)
    assert response.status_code == 200
    assert response.json()["versions"]


def test_member_creates_and_lists_in_its_project(
    keystone: KeystoneServer, cinderblock: Server
) -> None:
    alice, bob = keystone.accounts["alice"], keystone.accounts["bob"]
    token = keystone.token("alice")
    volume = create_volume(cinderblock, alice.project_id, token, "alpha-vol")
    assert volume in listed(call(cinderblock, "GET", f"/v3/{alice.project_id}/volumes", token))
    # The short URL (no project in it): the project comes from the token.
    assert volume in listed(call(cinderblock, "GET", "/v3/volumes", token))
    # It belongs to the token's project, as the admin sees.
    shown = call(
        cinderblock,
        "GET",
        f"/v3/{keystone.accounts['admin'].project_id}/volumes/{volume}",
        keystone.token("admin"),
    )
    assert shown.json()["volume"]["os-vol-tenant-attr:tenant_id"] == alice.project_id
    assert shown.json()["volume"]["user_id"] == alice.user_id
    # Another project's member does not see it.
    bob_token = keystone.token("bob")
    assert volume not in listed(
        call(cinderblock, "GET", f"/v3/{bob.project_id}/volumes", bob_token)
    )
    assert (
        call(cinderblock, "GET", f"/v3/{bob.project_id}/volumes/{volume}", bob_token).status_code
        == 404
    )
    # A reader of the project lists it too.
    rita_token = keystone.token("rita")
    assert volume in listed(call(cinderblock, "GET", f"/v3/{alice.project_id}/volumes", rita_token))
    # ... but may not change anything.
    denied = call(cinderblock, "DELETE", f"/v3/{alice.project_id}/volumes/{volume}", rita_token)
    assert denied.status_code == 403
    assert "forbidden" in denied.json()


def test_token_on_another_projects_url_is_refused(
    keystone: KeystoneServer, cinderblock: Server
) -> None:
    bob = keystone.accounts["bob"]
    token = keystone.token("alice")
    for method, body in (("GET", None), ("POST", {"volume": {"size": 1}})):
        response = call(cinderblock, method, f"/v3/{bob.project_id}/volumes", token, body)
        assert response.status_code in (400, 403), response.text
        assert set(response.json()) <= {"badRequest", "forbidden"}
    assert (
        listed(call(cinderblock, "GET", f"/v3/{bob.project_id}/volumes", keystone.token("bob")))
        == set()
    )


def test_reset_status_needs_the_admin_role(keystone: KeystoneServer, cinderblock: Server) -> None:
    alice, admin = keystone.accounts["alice"], keystone.accounts["admin"]
    token = keystone.token("alice")
    volume = create_volume(cinderblock, alice.project_id, token, "reset-me")
    action = {"os-reset_status": {"status": "error"}}
    path = f"/v3/{alice.project_id}/volumes/{volume}/action"
    refused = call(cinderblock, "POST", path, token, action)
    assert refused.status_code == 403, refused.text
    assert refused.json()["forbidden"]["code"] == 403
    admin_path = f"/v3/{admin.project_id}/volumes/{volume}/action"
    done = call(cinderblock, "POST", admin_path, keystone.token("admin"), action)
    assert done.status_code == 202, done.text
    shown = call(cinderblock, "GET", f"/v3/{alice.project_id}/volumes/{volume}", token)
    assert shown.json()["volume"]["status"] == "error"


def test_garbage_and_missing_tokens_are_401(keystone: KeystoneServer, cinderblock: Server) -> None:
    project = keystone.accounts["alice"].project_id
    for token in (uuid.uuid4().hex, "gAAAAA" + "x" * 180, "not a token at all"):
        assert_401(call(cinderblock, "GET", f"/v3/{project}/volumes", token), keystone)
    assert_401(call(cinderblock, "GET", f"/v3/{project}/volumes", None), keystone)
    assert_401(call(cinderblock, "GET", "/v3/volumes", ""), keystone)
    assert_401(call(cinderblock, "GET", "/v3/volumes", "x" * 9000), keystone)


def test_revoked_token_is_refused_once_the_cache_expires(
    keystone: KeystoneServer, cinderblock: Server
) -> None:
    project = keystone.accounts["alice"].project_id
    token = keystone.token("alice")
    assert call(cinderblock, "GET", f"/v3/{project}/volumes", token).status_code == 200
    cached_at = time.monotonic()
    keystone.revoke(token)
    check = httpx.get(
        f"{keystone.url}/auth/tokens",
        headers={"X-Auth-Token": keystone.admin_token(), "X-Subject-Token": token},
        timeout=30,
    )
    assert check.status_code == 404  # Keystone itself refuses it now
    response = call(cinderblock, "GET", f"/v3/{project}/volumes", token)
    if time.monotonic() - cached_at < CACHE_TIME - 1:
        assert response.status_code == 200, "the validation should still be cached"
    deadline = cached_at + CACHE_TIME + 15
    while response.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        response = call(cinderblock, "GET", f"/v3/{project}/volumes", token)
    assert_401(response, keystone)
    assert time.monotonic() - cached_at >= CACHE_TIME - 0.5


def test_cinder_cli_with_password_auth_and_the_catalog(
    keystone: KeystoneServer, cinderblock: Server
) -> None:
    """python-cinderclient as users run it: a password, Keystone's catalog, no endpoint."""
    keystone.register_block_storage(f"{cinderblock.url}/v3/$(project_id)s")
    alice = keystone.accounts["alice"]
    env = client_env()
    env.update(
        OS_AUTH_URL=keystone.url,
        OS_USERNAME=alice.name,
        OS_PASSWORD=alice.password,
        OS_PROJECT_NAME=alice.project_name,
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_REGION_NAME="RegionOne",
        OS_VOLUME_API_VERSION="3.50",
    )
    name = f"cli-{uuid.uuid4().hex[:8]}"

    def cinder(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "cinder"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"cinder {args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    cinder("create", "--name", name, "1")
    assert name in cinder("list")
    response = call(
        cinderblock, "GET", f"/v3/{alice.project_id}/volumes/detail", keystone.token("alice")
    )
    assert name in {volume["name"] for volume in response.json()["volumes"]}


def test_keystone_down_is_503_for_tokens_not_cached(
    keystone: KeystoneServer, cinderblock: Server
) -> None:
    alice, bob = keystone.accounts["alice"], keystone.accounts["bob"]
    cached = keystone.token("alice")
    assert call(cinderblock, "GET", f"/v3/{alice.project_id}/volumes", cached).status_code == 200
    cached_at = time.monotonic()
    fresh = keystone.token("bob")  # never shown to cinderblock
    keystone.stop()
    try:
        response = call(cinderblock, "GET", f"/v3/{bob.project_id}/volumes", fresh)
        assert response.status_code == 503, response.text
        assert response.json()["serviceUnavailable"]["code"] == 503
        response = call(cinderblock, "GET", f"/v3/{alice.project_id}/volumes", cached)
        if time.monotonic() - cached_at < CACHE_TIME - 1:
            assert response.status_code == 200, "a cached validation needs no Keystone"
        # The unversioned documents do not need Keystone either.
        assert call(cinderblock, "GET", "/", None).status_code == 300
    finally:
        keystone.start()
    # Keystone is back: the same token works (the 503 was not remembered).
    assert call(cinderblock, "GET", f"/v3/{bob.project_id}/volumes", fresh).status_code == 200


def test_the_server_log_holds_no_token(keystone: KeystoneServer, cinderblock: Server) -> None:
    token = keystone.token("alice")
    call(cinderblock, "GET", "/v3/volumes", token)
    assert token not in cinderblock.log.read_text()
