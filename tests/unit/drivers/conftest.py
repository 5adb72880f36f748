"""Fixtures for file-driver tests: a driver factory on a given directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.file.driver import FileDriver

MakeFileDriver = Callable[..., FileDriver]


def build_file_driver(volumes_dir: Path, *, setup: bool = True, **options: str) -> FileDriver:
    config = BackendConfig(
        name="file1",
        volume_driver="file",
        volume_backend_name="file1",
        options={"file_volumes_dir": str(volumes_dir), **options},
    )
    driver = FileDriver(config, "host@file1")
    if setup:
        driver.do_setup()
        driver.check_for_setup_error()
    return driver


@pytest.fixture
def volumes_dir(tmp_path: Path) -> Path:
    return tmp_path / "volumes"


@pytest.fixture
def make_file_driver(volumes_dir: Path) -> MakeFileDriver:
    def make(directory: Path | None = None, *, setup: bool = True, **options: str) -> FileDriver:
        return build_file_driver(directory or volumes_dir, setup=setup, **options)

    return make


@pytest.fixture
def file_driver(make_file_driver: MakeFileDriver) -> FileDriver:
    return make_file_driver()
