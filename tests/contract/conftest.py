"""Fixtures for the driver contract suite: one driver per kind, plus a data probe.

A probe reads and writes the bytes of backend objects by their backend name
(a volume's provider_location, a snapshot's provider_location) and seeds
objects the service does not know about, so the same test can check data on
every driver: through the real file for the file driver, through the test
helpers for the memory driver.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from cinderblock.drivers.base import BaseVD
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.file.driver import FileDriver
from cinderblock.drivers.memory.driver import MemoryDriver
from cinderblock.drivers.registry import load_driver
from contract.ceph_cluster import RbdProbe, ceph_cluster  # noqa: F401 - fixture for rbd


class DataProbe(Protocol):
    def write(self, name: str, offset: int, data: bytes) -> None: ...
    def read(self, name: str, offset: int, length: int) -> bytes: ...
    def size(self, name: str) -> int: ...
    def names(self) -> set[str]: ...
    def seed_volume(
        self, name: str, size_bytes: int, data: bytes = b"", offset: int = 0
    ) -> None: ...
    def seed_snapshot(self, parent: str, name: str, size_bytes: int) -> str: ...
    def hold(self, name: str) -> contextlib.AbstractContextManager[None]:
        """While in the block, the object is in use outside the driver."""
        ...


class FileProbe:
    def __init__(self, driver: FileDriver) -> None:
        self.dir = Path(driver.volumes_dir)

    def write(self, name: str, offset: int, data: bytes) -> None:
        fd = os.open(self.dir / name, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def read(self, name: str, offset: int, length: int) -> bytes:
        fd = os.open(self.dir / name, os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def size(self, name: str) -> int:
        return os.lstat(self.dir / name).st_size

    def names(self) -> set[str]:
        return {n for n in os.listdir(self.dir) if not n.startswith(".")}

    def seed_volume(self, name: str, size_bytes: int, data: bytes = b"", offset: int = 0) -> None:
        with open(self.dir / name, "xb") as f:
            f.truncate(size_bytes)
            if data:
                f.seek(offset)
                f.write(data)

    def seed_snapshot(self, parent: str, name: str, size_bytes: int) -> str:
        full = f"{parent}@{name}"
        # cp keeps holes, so seeding from a mostly empty 1 GiB volume is quick.
        subprocess.run(
            ["cp", "--sparse=always", "--no-clobber", str(self.dir / parent), str(self.dir / full)],
            check=True,
        )
        os.truncate(self.dir / full, size_bytes)
        return full

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Another process (sleep) has the file open as its stdin."""
        with open(self.dir / name, "rb") as f:
            proc = subprocess.Popen(["sleep", "300"], stdin=f)
        try:
            yield
        finally:
            proc.kill()
            proc.wait()


class MemoryProbe:
    def __init__(self, driver: MemoryDriver) -> None:
        self.driver = driver

    def write(self, name: str, offset: int, data: bytes) -> None:
        self.driver.write(name, offset, data)

    def read(self, name: str, offset: int, length: int) -> bytes:
        return self.driver.read(name, offset, length)

    def size(self, name: str) -> int:
        return self.driver.object_size(name)

    def names(self) -> set[str]:
        return self.driver.object_names()

    def seed_volume(self, name: str, size_bytes: int, data: bytes = b"", offset: int = 0) -> None:
        self.driver.seed_foreign_volume(name, size_bytes)
        if data:
            self.driver.write(name, offset, data)

    def seed_snapshot(self, parent: str, name: str, size_bytes: int) -> str:
        return self.driver.seed_foreign_snapshot(parent, name, size_bytes)

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        self.driver.set_in_use(name, True)
        try:
            yield
        finally:
            self.driver.set_in_use(name, False)


@dataclass
class Backend:
    kind: str
    driver: Any  # a BaseVD with the capability classes of its kind
    probe: DataProbe
    capabilities: frozenset[str]


_COMMON = frozenset({"snapshot", "clone", "extend", "revert", "manage_volume", "manage_snapshot"})


def make_backend(kind: str, tmp_path: Path, **options: str) -> Backend:
    opts = dict(options)
    if kind == "file":
        opts.setdefault("file_volumes_dir", str(tmp_path / "volumes"))
    config = BackendConfig(
        name=f"{kind}1", volume_driver=kind, volume_backend_name=f"{kind}1", options=opts
    )
    driver: BaseVD = load_driver(config, f"host@{kind}1")
    driver.do_setup()
    driver.check_for_setup_error()
    if isinstance(driver, FileDriver):
        return Backend(
            kind, driver, FileProbe(driver), _COMMON | {"local_path", "export", "migrate"}
        )
    assert isinstance(driver, MemoryDriver)
    return Backend(kind, driver, MemoryProbe(driver), _COMMON | {"export"})


@pytest.fixture(params=["memory", "file", "rbd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "rbd":  # a real Ceph cluster; each test in a fresh RBD namespace
        cluster = request.getfixturevalue("ceph_cluster")
        namespace = cluster.new_namespace()
        config = BackendConfig(
            name="rbd1",
            volume_driver="rbd",
            volume_backend_name="rbd1",
            options=cluster.driver_options(namespace),
        )
        driver = load_driver(config, "host@rbd1")
        driver.do_setup()
        driver.check_for_setup_error()
        probe = RbdProbe(cluster, namespace)
        try:
            yield Backend("rbd", driver, probe, _COMMON | {"export", "migrate"})
        finally:
            probe.close()
            driver.cluster.close()
        return
    yield make_backend(request.param, tmp_path)


@pytest.fixture
def driver(backend: Backend) -> Any:
    return backend.driver


@pytest.fixture
def probe(backend: Backend) -> DataProbe:
    return backend.probe
