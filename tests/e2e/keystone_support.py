"""A real Keystone for the end-to-end tests: installed once, run on loopback with SQLite.

Keystone comes from PyPI into its OWN virtualenv (its pins may clash with ours),
cached at $CINDERBLOCK_KEYSTONE_VENV (default ~/.cache/cinderblock/keystone-pyX.Y):
the install is skipped when that venv already holds the pinned version, is done
under a file lock, and is bounded (pip --timeout per request, a deadline overall).

`KeystoneServer` lays out a state directory (keystone.conf, SQLite database, fernet
and credential keys), runs `keystone-manage db_sync` and `bootstrap` (admin user and
project, the admin/manager/member/reader/service roles, an identity endpoint), then
serves keystone.wsgi.api:application from that venv on 127.0.0.1 (a threaded
wsgiref server: nothing else to install).
`seed()` adds what the tests need through the REST API.

Run by hand (prints the URL and the credentials, serves until Ctrl-C):

    .venv/bin/python -m tests.e2e.keystone_support [--port 5000] [--dir DIR]
    (or scripts/keystone-test-server.sh)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# The version the tests are known to pass with; change it here and the cache re-installs.
KEYSTONE_REQUIREMENTS = ("keystone==30.0.0",)
INSTALL_DEADLINE = 900.0  # seconds for the whole install
PIP_TIMEOUT = "30"  # seconds per network request
START_WAIT = 90.0
ADMIN_PASSWORD = "admin-secret"
REGION = "RegionOne"


# Keystone's WSGI app in a threaded wsgiref server, on 127.0.0.1:<argv[1]>.
LAUNCHER = """\
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Handler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


port = int(sys.argv[1])
sys.argv = sys.argv[:1]  # oslo.config in Keystone parses the command line
from keystone.wsgi.api import application  # noqa: E402

make_server("127.0.0.1", port, application, Server, Handler).serve_forever()
"""


class KeystoneUnavailable(RuntimeError):
    """Keystone could not be installed or started; the message says why."""


def default_venv() -> Path:
    env = os.environ.get("CINDERBLOCK_KEYSTONE_VENV")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cinderblock" / f"keystone-py{sys.version_info[0]}.{sys.version_info[1]}"


def _log(message: str) -> None:
    print(f"[keystone] {message}", file=sys.stderr, flush=True)


def ensure_keystone(venv: Path | None = None) -> Path:
    """The virtualenv holding Keystone; installs it when missing or stale."""
    venv = venv or default_venv()
    marker = venv / ".cinderblock-installed"
    wanted = "\n".join(KEYSTONE_REQUIREMENTS)

    def ready() -> bool:
        return (
            marker.is_file()
            and marker.read_text() == wanted
            and (venv / "bin" / "keystone-manage").exists()
        )

    if ready():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing it
        if ready():
            return venv
        started = time.monotonic()
        _log(f"installing {' '.join(KEYSTONE_REQUIREMENTS)} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        deadline = started + INSTALL_DEADLINE
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--timeout",
                PIP_TIMEOUT,
                "--retries",
                "2",
                *KEYSTONE_REQUIREMENTS,
            ],
        ]
        for command in steps:
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                    stdin=subprocess.DEVNULL,
                    env=_clean_env(),
                )
            except subprocess.TimeoutExpired as err:
                shutil.rmtree(venv, ignore_errors=True)
                raise KeystoneUnavailable(
                    f"installing Keystone took more than {INSTALL_DEADLINE:.0f} s"
                ) from err
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                tail = "\n".join(
                    line
                    for line in (done.stdout + done.stderr).splitlines()
                    if not line.startswith("WARNING: Location")
                )[-2000:]
                raise KeystoneUnavailable(f"{' '.join(command[:4])} ... failed:\n{tail}")
        marker.write_text(wanted)
        _log(f"installed in {time.monotonic() - started:.0f} s")
    return venv


def _clean_env() -> dict[str, str]:
    """Our environment minus our venv and anything that would steer an OpenStack tool."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        and not key.upper().startswith(("OS_", "OPENSTACK"))
    }
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Account:
    """A user with a password, and the project its tokens are scoped to."""

    name: str
    password: str
    project_name: str
    user_id: str = ""
    project_id: str = ""


@dataclass
class KeystoneServer:
    venv: Path
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    accounts: dict[str, Account] = field(default_factory=dict)
    _admin_token: str = ""
    _ids: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def config(self) -> Path:
        return self.directory / "keystone.conf"

    @property
    def log(self) -> Path:
        return self.directory / "keystone.log"

    # ---- lifecycle ------------------------------------------------------------------

    def setup(self) -> None:
        """keystone.conf, keys, database schema and the bootstrap admin."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"""[DEFAULT]
log_file = {self.log}
debug = false

[database]
connection = sqlite:///{self.directory / "keystone.sqlite"}

[token]
provider = fernet
expiration = 3600

[fernet_tokens]
key_repository = {self.directory / "fernet-keys"}

[fernet_receipts]
# As in a stock Keystone: receipts share the tokens' keys.
key_repository = {self.directory / "fernet-keys"}

[credential]
key_repository = {self.directory / "credential-keys"}

[cache]
# Keystone answers from its database: a revoked token is refused at once.
enabled = false

[identity]
# The cheapest bcrypt: every token request checks a password.
password_hash_rounds = 4
"""
        )
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        owner = ["--keystone-user", user, "--keystone-group", group]
        # Each keystone-manage takes seconds to start: the independent ones run together.
        self._run_manage_together(
            ("fernet_setup", *owner), ("credential_setup", *owner), ("db_sync",)
        )
        self._manage(
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-admin-url",
            self.url + "/",
            "--bootstrap-internal-url",
            self.url + "/",
            "--bootstrap-public-url",
            self.url + "/",
            "--bootstrap-region-id",
            REGION,
        )
        self.accounts["admin"] = Account("admin", ADMIN_PASSWORD, "admin")

    def _manage(self, *args: str) -> None:
        self._run_manage_together(args)

    def _run_manage_together(self, *commands: tuple[str, ...]) -> None:
        manage = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.config)]
        running = [
            (
                args,
                subprocess.Popen(
                    [*manage, *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=_clean_env(),
                ),
            )
            for args in commands
        ]
        failures = []
        for args, process in running:
            try:
                output, _ = process.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            if process.returncode != 0:
                text = output.decode(errors="replace")[-2000:]
                failures.append(f"keystone-manage {args[0]} failed ({process.returncode}):\n{text}")
        if failures:
            raise KeystoneUnavailable("\n".join(failures))

    def start(self) -> None:
        env = _clean_env()
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self.config)
        launcher = self.directory / "serve_keystone.py"
        launcher.write_text(LAUNCHER)
        command = [str(self.venv / "bin" / "python"), str(launcher), str(self.port)]
        with (self.directory / "server.log").open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.directory,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_WAIT
        while not self.answers():
            if self.process.poll() is not None:
                raise KeystoneUnavailable(
                    f"Keystone exited with {self.process.returncode}:\n{self.logs()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise KeystoneUnavailable(f"Keystone did not answer:\n{self.logs()}")
            time.sleep(0.2)

    def answers(self) -> bool:
        try:
            return httpx.get(self.url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def logs(self) -> str:
        parts = []
        for path in (self.directory / "server.log", self.log):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text()[-4000:]}")
        return "\n".join(parts)

    # ---- REST helpers -----------------------------------------------------------------

    def token(self, account: str | Account) -> str:
        """A fresh token of `account`, scoped to its project."""
        return self.auth(account)[0]

    def auth(self, account: str | Account) -> tuple[str, dict[str, Any]]:
        acc = self.accounts[account] if isinstance(account, str) else account
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": acc.name,
                            "domain": {"id": "default"},
                            "password": acc.password,
                        }
                    },
                },
                "scope": {"project": {"name": acc.project_name, "domain": {"id": "default"}}},
            }
        }
        response = httpx.post(f"{self.url}/auth/tokens", json=body, timeout=30)
        response.raise_for_status()
        return response.headers["X-Subject-Token"], response.json()["token"]

    def admin_token(self) -> str:
        if not self._admin_token:
            self._admin_token = self.token("admin")
        return self._admin_token

    def revoke(self, token: str) -> None:
        response = httpx.delete(
            f"{self.url}/auth/tokens",
            headers={"X-Auth-Token": self.admin_token(), "X-Subject-Token": token},
            timeout=30,
        )
        assert response.status_code == 204, response.text

    def admin_call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = httpx.request(
            method,
            f"{self.url}{path}",
            headers={"X-Auth-Token": self.admin_token()},
            timeout=30,
            **kwargs,
        )
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else {}

    def find(self, collection: str, name: str) -> str:
        """Id of the project, user or role `name` (remembered)."""
        if (collection, name) not in self._ids:
            items = self.admin_call("GET", f"/{collection}", params={"name": name})[collection]
            if not items:
                raise AssertionError(f"no {collection} named {name}")
            self._ids[collection, name] = str(items[0]["id"])
        return self._ids[collection, name]

    def add_project(self, name: str) -> str:
        body = {"project": {"name": name, "domain_id": "default"}}
        project_id = str(self.admin_call("POST", "/projects", json=body)["project"]["id"])
        self._ids["projects", name] = project_id
        return project_id

    def add_user(self, name: str, password: str, project: str, *roles: str) -> Account:
        project_id = self.find("projects", project)
        body = {
            "user": {
                "name": name,
                "password": password,
                "domain_id": "default",
                "default_project_id": project_id,
            }
        }
        user_id = str(self.admin_call("POST", "/users", json=body)["user"]["id"])
        for role in roles:
            role_id = self.find("roles", role)
            self.admin_call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")
        account = Account(name, password, project, user_id, project_id)
        self.accounts[name] = account
        return account

    def seed(self) -> None:
        """Projects alpha and beta with a member each, and cinderblock's service user."""
        admin = self.accounts["admin"]
        admin.project_id = self.find("projects", "admin")
        admin.user_id = self.find("users", "admin")
        for role in self.admin_call("GET", "/roles")["roles"]:
            self._ids["roles", role["name"]] = role["id"]
        for project in ("alpha", "beta", "service"):
            self.add_project(project)
        self.add_user("alice", "alice-secret", "alpha", "member")
        self.add_user("bob", "bob-secret", "beta", "member")
        self.add_user("rita", "rita-secret", "alpha", "reader")
        # Least privilege for a service validating tokens: the service role.
        self.add_user("cinderblock", "cinderblock-secret", "service", "service")

    def register_block_storage(self, endpoint: str) -> None:
        """Put `endpoint` (e.g. http://127.0.0.1:PORT/v3/$(project_id)s) in the catalog."""
        body = {"service": {"type": "block-storage", "name": "cinderv3", "enabled": True}}
        service_id = self.admin_call("POST", "/services", json=body)["service"]["id"]
        for interface in ("public", "internal", "admin"):
            body = {
                "endpoint": {
                    "service_id": service_id,
                    "interface": interface,
                    "url": endpoint,
                    "region_id": REGION,
                }
            }
            self.admin_call("POST", "/endpoints", json=body)


@contextlib.contextmanager
def running_keystone(directory: Path, port: int | None = None) -> Iterator[KeystoneServer]:
    """Install (if needed), set up, start and seed a Keystone; stop it on exit."""
    server = KeystoneServer(venv=ensure_keystone(), directory=directory)
    if port:
        server.port = port
    server.setup()
    server.start()
    try:
        server.seed()
        yield server
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--install-only", action="store_true")
    args = parser.parse_args()
    if args.install_only:
        print(ensure_keystone())
        return 0
    import tempfile

    directory = args.dir or Path(tempfile.mkdtemp(prefix="keystone-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop Keystone on the way out
    with running_keystone(directory, args.port or None) as keystone:
        print(f"Keystone {keystone.url} (state in {directory})")
        for account in keystone.accounts.values():
            print(f"  {account.name} / {account.password}  project {account.project_name}")
        print("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while keystone.process and keystone.process.poll() is None:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
