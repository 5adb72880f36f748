"""Capabilities come from a driver's base classes; the API side refuses what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock import exceptions as exc
from cinderblock.drivers.base import BaseVD, ExtendVD, capabilities_of
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.memory.driver import MemoryDriver
from cinderblock.drivers.refs import ModelUpdate, VolumeRef
from cinderblock.services.common import ServiceDeps, require_capability


class CreateOnlyDriver(BaseVD):
    """The smallest driver: required operations only."""

    def create_volume(self, volume: VolumeRef) -> ModelUpdate | None:
        return None

    def delete_volume(self, volume: VolumeRef) -> None:
        return None

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        return {"pools": []}

    def volume_exists(self, volume: VolumeRef) -> bool:
        return False


class ExtendingDriver(CreateOnlyDriver, ExtendVD):
    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        return None


def _config() -> BackendConfig:
    return BackendConfig(name="b", volume_driver="x", volume_backend_name="b")


def test_capabilities_follow_the_base_classes() -> None:
    assert capabilities_of(CreateOnlyDriver(_config(), "h@b")) == frozenset()
    assert capabilities_of(ExtendingDriver(_config(), "h@b")) == {"extend"}
    memory = capabilities_of(MemoryDriver(_config(), "h@b"))
    assert {"snapshot", "clone", "extend", "revert", "manage_volume"} <= memory


def test_api_side_refuses_a_missing_capability() -> None:
    caps = {"h@b": capabilities_of(CreateOnlyDriver(_config(), "h@b"))}
    deps = ServiceDeps(
        settings=None,
        db=None,
        transport=None,
        messages=None,  # type: ignore[arg-type]
        capabilities_of=caps.get,
    )
    with pytest.raises(exc.InvalidVolume, match="does not support extending"):
        require_capability(deps, "h@b#pool", "extend", "extending volumes")
    # Unknown backends (not reported yet) are not refused here; the manager decides.
    require_capability(deps, "other@b#pool", "extend", "extending volumes")
