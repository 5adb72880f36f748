"""Data-path exports: iSCSI via tgt (CHAP), NBD via qemu-nbd.

Drivers hold a `Target` (has-a, as the seeds describe) and delegate their
export/connection methods to it; `make_target` picks one from the backend
option ``target_protocol = iscsi|nbd`` (default iscsi).
"""

from __future__ import annotations

from cinderblock.drivers.config import BackendConfig
from cinderblock.targets.base import Export, ExportRef, Target, TargetDaemonDown, TargetError
from cinderblock.targets.nbd import NbdTarget
from cinderblock.targets.tgt import TgtTarget

PROTOCOLS: dict[str, type[TgtTarget] | type[NbdTarget]] = {"iscsi": TgtTarget, "nbd": NbdTarget}

__all__ = [
    "PROTOCOLS",
    "Export",
    "ExportRef",
    "NbdTarget",
    "Target",
    "TargetDaemonDown",
    "TargetError",
    "TgtTarget",
    "make_target",
]


def make_target(config: BackendConfig, state_root: str) -> Target:
    """The target configured for a backend; state_root is where state dirs default to."""
    protocol = config.get_str("target_protocol", "iscsi").strip().lower()
    cls = PROTOCOLS.get(protocol)
    if cls is None:
        raise ValueError(
            f"[{config.name}] target_protocol must be one of {', '.join(PROTOCOLS)}, "
            f"got {protocol!r}"
        )
    return cls.from_config(config, state_root)
