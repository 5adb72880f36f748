"""Parsing `tgtadm --lld iscsi --op show --mode target` (and `--mode portal`).

tgtadm has no machine-readable output; its text is stable across the 1.0.x
releases we know (Debian 12 ships 1.0.85). The layout, indented by 4 spaces
per level::

    Target 1: iqn.2010-10.org.openstack:volume-<id>
        System information: ...
        I_T nexus information:
            I_T nexus: 3
                Initiator: iqn.1994-05.com.example:host alias: none
                Connection: 0
                    IP Address: 127.0.0.1
        LUN information:
            LUN: 1
                Readonly: No
                Backing store path: /path/to/file
        Account information:
            user1
            user2 (outgoing)
        ACL information:
            10.0.0.1
            iqn.1994-05.com.example:host
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

_TARGET = re.compile(r"^Target (\d+): (\S+)\s*$")
_NEXUS = re.compile(r"^I_T nexus: (\d+)$")
_INITIATOR = re.compile(r"^Initiator: (\S+)")
_CONNECTION = re.compile(r"^Connection: (\d+)$")
_IP = re.compile(r"^IP Address: (\S+)$")
_LUN = re.compile(r"^LUN: (\d+)$")
_PORTAL = re.compile(r"^Portal: (\S+),\d+\s*$")
_SIZE = re.compile(r"^Size: (\d+) MB\b")  # decimal megabytes, rounded down


@dataclass
class Lun:
    lun: int
    path: str | None = None
    readonly: bool = False
    size_mb: int | None = None  # the size tgt serves (fixed when the LUN was created)


@dataclass
class Session:
    sid: int
    initiator: str = ""
    connections: dict[int, str] = field(default_factory=dict)  # cid -> initiator IP


@dataclass
class TargetInfo:
    tid: int
    iqn: str
    luns: dict[int, Lun] = field(default_factory=dict)
    accounts: list[str] = field(default_factory=list)  # incoming CHAP users
    outgoing_accounts: list[str] = field(default_factory=list)
    acl_addresses: list[str] = field(default_factory=list)
    acl_names: list[str] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)


def is_address_rule(rule: str) -> bool:
    """Whether an ACL line is an initiator address rule (IP, network or ALL), not a name."""
    if rule == "ALL":
        return True
    try:
        ipaddress.ip_network(rule.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


def parse_targets(text: str) -> dict[str, TargetInfo]:
    """Targets by IQN."""
    targets: dict[str, TargetInfo] = {}
    current: TargetInfo | None = None
    section = ""
    lun: Lun | None = None
    session: Session | None = None
    cid: int | None = None
    for raw in text.splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if indent == 0:
            match = _TARGET.match(line)
            current = TargetInfo(int(match.group(1)), match.group(2)) if match else None
            if current is not None:
                targets[current.iqn] = current
            section = ""
            continue
        if current is None:
            continue
        if indent == 4:
            section = line.rstrip(":")
            lun, session, cid = None, None, None
            continue
        if section == "LUN information":
            if (m := _LUN.match(line)) is not None:
                lun = current.luns.setdefault(int(m.group(1)), Lun(int(m.group(1))))
            elif lun is not None and line.startswith("Backing store path:"):
                path = line.partition(":")[2].strip()
                lun.path = None if path in ("", "None") else path
            elif lun is not None and line.startswith("Readonly:"):
                lun.readonly = line.partition(":")[2].strip().lower() == "yes"
            elif lun is not None and (m := _SIZE.match(line)) is not None:
                lun.size_mb = int(m.group(1))
        elif section == "I_T nexus information":
            if (m := _NEXUS.match(line)) is not None:
                session = Session(int(m.group(1)))
                current.sessions.append(session)
                cid = None
            elif session is not None and (m := _INITIATOR.match(line)) is not None:
                session.initiator = m.group(1)
            elif session is not None and (m := _CONNECTION.match(line)) is not None:
                cid = int(m.group(1))
                session.connections[cid] = ""
            elif session is not None and cid is not None and (m := _IP.match(line)):
                session.connections[cid] = m.group(1)
        elif section == "Account information":
            if line.endswith("(outgoing)"):
                current.outgoing_accounts.append(line.removesuffix("(outgoing)").strip())
            else:
                current.accounts.append(line)
        elif section == "ACL information":
            if is_address_rule(line):
                current.acl_addresses.append(line)
            else:
                current.acl_names.append(line)
    return targets


def parse_portals(text: str) -> list[str]:
    """`Portal: 127.0.0.1:3260,1` lines -> ["127.0.0.1:3260"]."""
    return [m.group(1) for line in text.splitlines() if (m := _PORTAL.match(line.strip()))]


def split_portal(portal: str) -> tuple[str, int]:
    """ "1.2.3.4:3260" / "[::1]:3260" -> (host, port); the host without brackets."""
    host, _, port = portal.rpartition(":")
    return host.strip("[]"), int(port)


def join_portal(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def portal_serves(listening: str, wanted: str) -> bool:
    """Whether a listening portal (maybe a wildcard address) accepts connections for wanted."""
    lhost, lport = split_portal(listening)
    whost, wport = split_portal(wanted)
    if lport != wport:
        return False
    if lhost == whost:
        return True
    try:
        laddr, waddr = ipaddress.ip_address(lhost), ipaddress.ip_address(whost)
    except ValueError:
        return False
    if not laddr.is_unspecified:
        return False
    # [::] serves IPv4 too on a dual-stack host; 0.0.0.0 serves only IPv4.
    return laddr.version == 6 or waddr.version == 4
