"""Fixtures for the RBD driver's own tests: the real cluster and drivers in fresh namespaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.registry import load_driver
from contract.ceph_cluster import CephCluster, RbdProbe, ceph_cluster  # noqa: F401


@pytest.fixture
def namespace(ceph_cluster: CephCluster) -> str:  # noqa: F811
    return ceph_cluster.new_namespace()


@pytest.fixture
def make_driver(
    ceph_cluster: CephCluster,  # noqa: F811
    namespace: str,
) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(**options: str) -> Any:
        config = BackendConfig(
            name="rbd1",
            volume_driver="rbd",
            volume_backend_name="rbd1",
            options={**ceph_cluster.driver_options(namespace), **options},
        )
        driver = load_driver(config, "host@rbd1")
        driver.do_setup()
        driver.check_for_setup_error()
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.cluster.close()


@pytest.fixture
def driver(make_driver: Callable[..., Any]) -> Any:
    return make_driver()


@pytest.fixture
def probe(ceph_cluster: CephCluster, namespace: str) -> Iterator[RbdProbe]:  # noqa: F811
    p = RbdProbe(ceph_cluster, namespace)
    yield p
    p.close()
