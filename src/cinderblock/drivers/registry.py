"""Maps `volume_driver` config values to driver classes."""

from __future__ import annotations

import importlib

from cinderblock.drivers.base import BaseVD
from cinderblock.drivers.config import BackendConfig

# Short names accepted in `volume_driver`; a dotted path to a class works too.
_SHORT_NAMES = {
    "file": "cinderblock.drivers.file.driver:FileDriver",
    "memory": "cinderblock.drivers.memory.driver:MemoryDriver",
    "rbd": "cinderblock.drivers.rbd.driver:RbdDriver",
}


def driver_class(name: str) -> type[BaseVD]:
    target = _SHORT_NAMES.get(name, name)
    if ":" in target:
        module_name, _, attr = target.partition(":")
    else:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"unknown volume_driver {name!r}")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"unknown volume_driver {name!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseVD)):
        raise ValueError(f"volume_driver {name!r} is not a BaseVD subclass")
    return cls


def load_driver(config: BackendConfig, host: str) -> BaseVD:
    return driver_class(config.volume_driver)(config, host)
