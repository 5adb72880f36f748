"""tgt target options (backend config) and Cinder's tgt provider_location format."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cinderblock.drivers.config import BackendConfig
from cinderblock.targets import process

DEFAULT_PREFIX = "iqn.2010-10.org.openstack:"
LUN = 1  # LUN 0 is tgt's controller
# iSCSI login parameters set on every new target. tgt's own defaults (8 KiB data
# segments, 256 KiB bursts, InitialR2T=Yes) halve sequential write throughput
# over a fast network (bench/datapath_bench.py); the initiator still negotiates.
DEFAULT_TARGET_PARAMS = (
    "MaxRecvDataSegmentLength=262144,MaxXmitDataSegmentLength=262144,"
    "FirstBurstLength=262144,MaxBurstLength=1048576,InitialR2T=No"
)


def parse_params(section: str, text: str) -> tuple[tuple[str, str], ...]:
    """``"Name=value,Name2=value2"`` -> pairs; "" or "none" -> no parameters."""
    if text.strip().lower() in ("", "none"):
        return ()
    pairs = []
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"[{section}] tgt_target_params must be Name=value,...; got {item!r}")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


DEFAULT_PARAMS = parse_params("", DEFAULT_TARGET_PARAMS)


@dataclass(frozen=True, slots=True)
class TgtOptions:
    state_dir: str
    prefix: str = DEFAULT_PREFIX
    ip: str = "127.0.0.1"
    port: int = 3260
    secondary_ips: tuple[str, ...] = ()
    manage_daemon: bool = False
    control_port: int = 0
    backing_store_flags: str = ""
    target_params: tuple[tuple[str, str], ...] = DEFAULT_PARAMS
    timeout: float = process.DEFAULT_TIMEOUT
    supervise_interval: float = 10.0  # 0: no supervision

    @classmethod
    def from_config(cls, config: BackendConfig, state_root: str) -> TgtOptions:
        secondary = config.get_str("iscsi_secondary_ip_addresses", "")
        state_dir = config.get_str("tgt_state_dir", "").strip()
        if not state_dir and state_root:
            state_dir = os.path.join(state_root, ".tgt")
        options = cls(
            state_dir=state_dir,
            prefix=config.get_str("iscsi_target_prefix", DEFAULT_PREFIX).strip(),
            ip=config.get_str("target_ip_address", "127.0.0.1").strip(),
            port=config.get_int("target_port", 3260),
            secondary_ips=tuple(s.strip() for s in secondary.split(",") if s.strip()),
            manage_daemon=config.get_bool("tgt_manage_daemon", False),
            control_port=config.get_int("tgt_control_port", 0),
            backing_store_flags=config.get_str("tgt_backing_store_flags", "").strip(),
            target_params=parse_params(
                config.name, config.get_str("tgt_target_params", DEFAULT_TARGET_PARAMS)
            ),
            timeout=config.get_float("target_command_timeout", process.DEFAULT_TIMEOUT),
            supervise_interval=config.get_float("tgt_supervise_interval", 10.0),
        )
        if not options.supervise_interval >= 0:
            raise ValueError(f"[{config.name}] tgt_supervise_interval must be 0 or more seconds")
        if not options.prefix or any(c.isspace() for c in options.prefix):
            raise ValueError(f"[{config.name}] iscsi_target_prefix must be a non-empty IQN prefix")
        if not 0 < options.port < 65536:
            raise ValueError(f"[{config.name}] target_port must be a TCP port, got {options.port}")
        if not 0 <= options.control_port <= 32767:  # tgtd refuses larger values
            raise ValueError(f"[{config.name}] tgt_control_port must be 0-32767")
        if options.backing_store_flags not in ("", "sync", "direct", "sync:direct"):
            raise ValueError(
                f"[{config.name}] tgt_backing_store_flags must be sync, direct or sync:direct"
            )
        return options


def parse_location(location: str | None) -> tuple[list[str], int | None, str, int] | None:
    """``"<portal>[;<portal>],<tid> <iqn> <lun>"`` -> (portals, tid, iqn, lun), None if not one."""
    if not location:
        return None
    parts = location.split()
    if len(parts) < 2:
        return None
    portals_part, _, tid_part = parts[0].rpartition(",")
    if not portals_part:
        portals_part, tid_part = parts[0], ""
    try:
        tid = int(tid_part) if tid_part else None
        lun = int(parts[2]) if len(parts) > 2 else LUN
    except ValueError:
        return None
    return [p for p in portals_part.split(";") if p], tid, parts[1], lun
