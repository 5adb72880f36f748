"""A real single-node Ceph cluster for the RBD tests (scripts/ceph-cluster.sh).

`ceph_cluster` (session scope) brings the cluster up once per test run and
down at the end; tests that need it skip, saying why, only when Ceph cannot
be installed or started here. Each test isolates itself in a fresh RBD
namespace of the pool (`rbd_namespace`), so tests never see each other's
images.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ceph-cluster.sh"


@dataclass(frozen=True)
class CephCluster:
    dir: Path
    conf: str
    admin_keyring: str
    user: str
    user_keyring: str
    pool: str
    startup_seconds: float

    def driver_options(self, namespace: str) -> dict[str, str]:
        return {
            "rbd_pool": self.pool,
            "rbd_ceph_conf": self.conf,
            "rbd_user": self.user,
            "rbd_keyring": self.user_keyring,
            "rbd_namespace": namespace,
            "rbd_secret_uuid": "457eb676-33da-42ec-9a8c-9293d545c337",
        }

    def rbd(self, *args: str, namespace: str = "", timeout: float = 60) -> str:
        """The `rbd` CLI as the admin, in the pool (and namespace)."""
        cmd = ["rbd", "-c", self.conf, "--id", "admin", "--keyring", self.admin_keyring]
        cmd += ["-p", self.pool]
        if namespace:
            cmd += ["--namespace", namespace]
        proc = subprocess.run(
            [*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"rbd {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    @contextlib.contextmanager
    def admin_ioctx(self, namespace: str = "") -> Iterator[Any]:
        import rados

        client = rados.Rados(
            conffile=self.conf, rados_id="admin", conf={"keyring": self.admin_keyring}
        )
        client.connect(timeout=10)
        try:
            ioctx = client.open_ioctx(self.pool)
            ioctx.set_namespace(namespace)
            try:
                yield ioctx
            finally:
                ioctx.close()
        finally:
            client.shutdown()

    def new_namespace(self) -> str:
        name = f"t{uuid.uuid4().hex[:12]}"
        self.rbd("namespace", "create", "--namespace", name)
        return name


def _why_unavailable() -> str | None:
    for tool in ("ceph-mon", "ceph-osd", "ceph-mgr", "rbd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install ceph-mon ceph-osd ceph-mgr)"
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError as exc:
        return f"rados/rbd bindings not importable ({exc}); run scripts/ceph-bindings.sh"
    return None


# The cluster of this test run: conftests in several directories import the
# fixture (each import is its own session fixture), and all share one cluster.
_RUNNING: list[CephCluster] = []
# CI sets this: there a cluster that cannot start is a failure, not a skip.
REQUIRED = os.environ.get("CINDERBLOCK_REQUIRE_CEPH") == "1"


def _unavailable(message: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{message} (CINDERBLOCK_REQUIRE_CEPH=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ceph_cluster() -> Iterator[CephCluster]:
    if _RUNNING:
        yield _RUNNING[0]
        return
    why = _why_unavailable()
    if why:
        _unavailable(f"no Ceph here: {why}")
    state = Path(tempfile.mkdtemp(prefix="cb-ceph-"))
    started = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT), "up", str(state / "c")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if proc.returncode != 0:
        subprocess.run([str(SCRIPT), "down", str(state / "c")], check=False, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        _unavailable(f"Ceph could not be started: {(proc.stderr or proc.stdout)[-800:]}")
    env = dict(
        line.split("=", 1) for line in (state / "c" / "env").read_text().splitlines() if line
    )
    cluster = CephCluster(
        dir=state / "c",
        conf=env["CEPH_CONF"],
        admin_keyring=env["CEPH_ADMIN_KEYRING"],
        user=env["CEPH_USER"],
        user_keyring=env["CEPH_USER_KEYRING"],
        pool=env["CEPH_POOL"],
        startup_seconds=round(time.monotonic() - started, 1),
    )
    _RUNNING.append(cluster)
    try:
        yield cluster
    finally:
        _RUNNING.clear()
        subprocess.run([str(SCRIPT), "down", str(state / "c")], check=False, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def watching(cluster: CephCluster, namespace: str, image: str) -> Iterator[None]:
    """While in the block, `rbd watch` (another client) watches the image."""
    cmd = ["rbd", "-c", cluster.conf, "--id", "admin", "--keyring", cluster.admin_keyring]
    cmd += ["-p", cluster.pool, "--namespace", namespace, "watch", image]
    # `rbd watch` runs until its stdin gets a line or closes: keep a pipe open.
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while "watcher=" not in cluster.rbd("status", image, namespace=namespace):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"rbd watch {image} did not start")
            time.sleep(0.1)
        yield
    finally:
        # A killed watcher lingers on the OSD for ~30 s; a line makes rbd unwatch and exit.
        try:
            proc.communicate(input=b"\n", timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RbdProbe:
    """Reads and writes images (``image`` or ``image@snap``) as the admin, in one namespace."""

    def __init__(self, cluster: CephCluster, namespace: str) -> None:
        import rados

        self.cluster = cluster
        self.namespace = namespace
        self._client = rados.Rados(
            conffile=cluster.conf, rados_id="admin", conf={"keyring": cluster.admin_keyring}
        )
        self._client.connect(timeout=10)
        self._ioctx = self._client.open_ioctx(cluster.pool)
        self._ioctx.set_namespace(namespace)

    def close(self) -> None:
        self._ioctx.close()
        self._client.shutdown()

    @contextlib.contextmanager
    def _image(self, name: str, *, write: bool = False) -> Iterator[Any]:
        import rbd

        image, _, snap = name.partition("@")
        with rbd.Image(
            self._ioctx, image, snapshot=snap or None, read_only=bool(snap) or not write
        ) as img:
            yield img

    def write(self, name: str, offset: int, data: bytes) -> None:
        with self._image(name, write=True) as img:
            img.write(data, offset)

    def read(self, name: str, offset: int, length: int) -> bytes:
        with self._image(name) as img:
            return bytes(img.read(offset, length))

    def size(self, name: str) -> int:
        with self._image(name) as img:
            return int(img.size())

    def names(self) -> set[str]:
        import rbd

        found: set[str] = set()
        for image in rbd.RBD().list(self._ioctx):
            found.add(image)
            with rbd.Image(self._ioctx, image, read_only=True) as img:
                found |= {
                    f"{image}@{s['name']}"
                    for s in img.list_snaps()
                    if not s["name"].startswith(".")
                }
        return found

    def seed_volume(self, name: str, size_bytes: int, data: bytes = b"", offset: int = 0) -> None:
        import rbd

        rbd.RBD().create(self._ioctx, name, size_bytes)
        if data:
            self.write(name, offset, data)

    def seed_snapshot(self, parent: str, name: str, size_bytes: int) -> str:
        """An RBD snapshot has its image's size at the time; size_bytes is not applied."""
        with self._image(parent, write=True) as img:
            img.create_snap(name)
        return f"{parent}@{name}"

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """An image: another client watches it. A snapshot: a clone depends on it."""
        image, _, snap = name.partition("@")
        if not snap:
            with watching(self.cluster, self.namespace, image):
                yield
            return
        import rbd

        child = f"hold-{uuid.uuid4().hex[:8]}"
        with rbd.Image(self._ioctx, image) as img:
            img.protect_snap(snap)
        rbd.RBD().clone(self._ioctx, image, snap, self._ioctx, child)
        try:
            yield
        finally:
            rbd.RBD().remove(self._ioctx, child)
            with rbd.Image(self._ioctx, image) as img:
                img.unprotect_snap(snap)
