"""iSCSI exports through tgt (the userspace Linux SCSI target), driven by tgtadm.

One iSCSI target per exported object:

* IQN ``<iscsi_target_prefix><name>`` (``iqn.2010-10.org.openstack:volume-<id>``);
* LUN 1 backed by the file (LUN 0 is tgt's own controller), ``--bstype rdwr``;
  read-only exports (snapshots) get ``readonly=1`` before anyone may log in;
* one incoming CHAP account bound to the target. tgt's accounts are global,
  so user names are random per export; provider_auth is ``CHAP <user> <secret>``;
* an initiator-name ACL per connector, added by initialize_connection and
  removed by terminate_connection (which also drops that initiator's sessions).
  tgt lets a login in when its address OR its name is in the ACL, so the
  connector's `ip` is deliberately not bound: it would let any initiator on
  that host in. An empty ACL refuses everyone.

provider_location is Cinder's: ``"<ip>:<port>[;<ip2>:<port>...],<tid> <iqn> <lun>"``.

tgt reads the backing file's size once, when the LUN is created; when the
file has grown since (in-use extend), ensure_export re-creates LUN 1 on the
same target (account, ACL and logged-in sessions stay). A connector with
``enforce_multipath`` is refused unless there are several portals.

tgtd keeps all of this in memory only. After tgtd restarts, ensure_export
rebuilds the target from the names and provider_auth (same IQN, same
credentials; the tid may change). With ``tgt_manage_daemon = true`` a tgtd
that does not answer is started (listening on the configured portals).

Options: iscsi_target_prefix, target_ip_address, target_port,
iscsi_secondary_ip_addresses, tgt_manage_daemon, tgt_control_port,
tgt_state_dir, tgt_backing_store_flags, tgt_target_params (iSCSI login
parameters for new targets, "none" for tgt's defaults), target_command_timeout,
tgt_supervise_interval (seconds between checks of tgtd; see tgtwatch);
parsed in tgtconfig.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import threading
import time
from typing import Any

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.refs import Connector
from cinderblock.exceptions import InvalidConnectorException
from cinderblock.targets import process
from cinderblock.targets.base import (
    Credentials,
    Export,
    ExportRef,
    Target,
    TargetDaemonDown,
    TargetError,
    connector_str,
    new_chap_credentials,
    refuse_single_path,
    stable_digest,
)
from cinderblock.targets.tgtconfig import (
    DEFAULT_PARAMS,
    DEFAULT_PREFIX,
    DEFAULT_TARGET_PARAMS,
    LUN,
    TgtOptions,
    parse_location,
    parse_params,
)
from cinderblock.targets.tgtshow import (
    TargetInfo,
    join_portal,
    parse_portals,
    parse_targets,
    portal_serves,
)
from cinderblock.targets.tgtwatch import Watcher

LOG = logging.getLogger(__name__)
__all__ = [
    "DEFAULT_PARAMS",
    "DEFAULT_PREFIX",
    "DEFAULT_TARGET_PARAMS",
    "LUN",
    "TgtOptions",
    "TgtTarget",
    "parse_location",
    "parse_params",
]

_DAEMON_START_WAIT = 15.0
_ENOTCONN = 107


def _daemon_down(result: process.Result) -> bool:
    return result.returncode == _ENOTCONN or "tgt daemon" in result.message


class TgtTarget(Target):
    protocol = "iscsi"
    driver_volume_type = "iscsi"

    def __init__(self, options: TgtOptions) -> None:
        self.options = options
        self._lock = threading.RLock()
        # Watched whether or not we manage tgtd: a tgtd restarted by systemd loses
        # every target too.
        self.watcher = Watcher(self, options.supervise_interval)

    @classmethod
    def from_config(cls, config: BackendConfig, state_root: str) -> TgtTarget:
        return cls(TgtOptions.from_config(config, state_root))

    @property
    def portals(self) -> list[str]:
        ips = [self.options.ip, *self.options.secondary_ips]
        return [join_portal(ip, self.options.port) for ip in ips]

    def iqn_for(self, name: str) -> str:
        return f"{self.options.prefix}{name}"

    # --- tgtadm ----------------------------------------------------------------
    def _argv(self, args: tuple[str, ...]) -> list[str]:
        tgtadm = process.find_tool("tgtadm", "tgt")
        return [tgtadm, "-C", str(self.options.control_port), "--lld", "iscsi", *args]

    def _adm(self, *args: str, hide: tuple[str, ...] = ()) -> process.Result:
        argv = self._argv(args)
        result = process.run(argv, timeout=self.options.timeout, hide=hide)
        if not result.ok and _daemon_down(result):
            if self.options.manage_daemon:
                self._start_daemon()
                result = process.run(argv, timeout=self.options.timeout, hide=hide)
            if not result.ok and _daemon_down(result):
                raise TargetDaemonDown(self._down_message(result))
        return result

    def _adm_ok(
        self, *args: str, hide: tuple[str, ...] = (), ok_if: tuple[str, ...] = ()
    ) -> process.Result:
        result = self._adm(*args, hide=hide)
        if not result.ok and not any(text in result.message for text in ok_if):
            command = process.masked(self._argv(args), hide)
            raise TargetError(f"{command} failed ({result.returncode}): {result.message}")
        return result

    def _down_message(self, result: process.Result) -> str:
        port = self.options.control_port
        return (
            f"tgtd is not running (tgtadm control port {port}: {result.message}); start it "
            "(systemctl start tgt, or tgtd"
            + (f" -C {port}" if port else "")
            + ") or set tgt_manage_daemon = true"
        )

    def _start_daemon(self) -> None:
        tgtd = process.find_tool("tgtd", "tgt")
        portals = ",".join(f"portal={p}" for p in self.portals)
        argv = [tgtd, "-C", str(self.options.control_port), "--iscsi", portals]
        log_path = os.path.join(self._state_dir(), "tgtd.log")
        LOG.warning("tgtd does not answer; starting %s", " ".join(argv))
        with open(log_path, "ab") as log:
            # tgtd daemonizes itself: the command returns once the daemon has forked.
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                code = child.wait(timeout=self.options.timeout)
            except subprocess.TimeoutExpired as exc:
                child.kill()
                child.wait()
                raise TargetError(f"{' '.join(argv)} did not return; see {log_path}") from exc
        if code != 0:
            raise TargetError(f"{' '.join(argv)} exited with {code}; see {log_path}")
        show = self._argv(("--op", "show", "--mode", "system"))
        deadline = time.monotonic() + _DAEMON_START_WAIT
        while True:
            result = process.run(show, timeout=self.options.timeout)
            if result.ok and "State: ready" in result.stdout:
                return
            if time.monotonic() > deadline:
                raise TargetError(f"tgtd started but does not answer: {result.message}")
            time.sleep(0.1)

    def _targets(self) -> dict[str, TargetInfo]:
        return parse_targets(self._adm_ok("--op", "show", "--mode", "target").stdout)

    def _ensure_portals(self) -> None:
        listening = parse_portals(self._adm_ok("--op", "show", "--mode", "portal").stdout)
        for portal in self.portals:
            if not any(portal_serves(have, portal) for have in listening):
                LOG.warning("tgtd does not listen on %s; adding that portal", portal)
                self._adm_ok("--op", "new", "--mode", "portal", "--param", f"portal={portal}")

    # --- state dir (snapshot credentials, symlinks for awkward paths, daemon log) ---
    def _state_dir(self) -> str:
        if not self.options.state_dir:
            raise TargetError("tgt_state_dir is not set")
        os.makedirs(self.options.state_dir, mode=0o700, exist_ok=True)
        return self.options.state_dir

    def stable_auth(self, name: str) -> str | None:
        digest = stable_digest(self._state_dir(), name)
        return str(Credentials("CHAP", "s" + digest[:19], digest[20:44]))

    def _backing_path(self, ref: ExportRef) -> str:
        path = os.path.realpath(ref.path)
        if not os.path.exists(path):
            raise TargetError(f"cannot export {ref.name}: {ref.path} does not exist")
        if "," not in path:
            return path
        # tgtadm passes the path in a comma separated request: go through a symlink.
        links = os.path.join(self._state_dir(), "links")
        os.makedirs(links, mode=0o700, exist_ok=True)
        link = os.path.join(links, ref.name)
        if os.path.islink(link) and os.path.realpath(link) == path:
            return link
        tmp = f"{link}.{secrets.token_hex(4)}"
        os.symlink(path, tmp)
        os.replace(tmp, link)
        return link

    # --- export ------------------------------------------------------------------
    def check(self) -> None:
        with self._lock:
            self._adm_ok("--op", "show", "--mode", "system")
            self._ensure_portals()

    def create_export(self, ref: ExportRef) -> Export:
        return self.ensure_export(ref)

    def ensure_export(self, ref: ExportRef) -> Export:
        creds = Credentials.parse(ref.provider_auth, "CHAP") or new_chap_credentials()
        with self._lock:
            export, _ = self._export(ref, creds)
            self.watcher.track(ref, creds)
        return export

    def _export(self, ref: ExportRef, creds: Credentials) -> tuple[Export, TargetInfo]:
        backing = self._backing_path(ref)
        self._ensure_portals()
        iqn = self.iqn_for(ref.name)
        info = self._targets().get(iqn)
        if info is None:
            previous = parse_location(ref.provider_location)
            info = self._new_target(iqn, previous[1] if previous else None)
        self._ensure_lun(info, backing, ref.read_only)
        self._ensure_account(info, creds)
        location = f"{';'.join(self.portals)},{info.tid} {iqn} {LUN}"
        return Export(location, str(creds)), info

    def _new_target(self, iqn: str, preferred: int | None) -> TargetInfo:
        for _ in range(20):
            targets = self._targets()
            if iqn in targets:
                return targets[iqn]
            used = {t.tid for t in targets.values()}
            fresh = preferred is not None and preferred not in used
            tid = preferred if fresh and preferred else max(used, default=0) + 1
            result = self._adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn)
            if result.ok:
                for name, value in self.options.target_params:
                    self._adm_ok(
                        "--op",
                        "update",
                        "--mode",
                        "target",
                        "--tid",
                        str(tid),
                        "--name",
                        name,
                        "--value",
                        value,
                    )
                return TargetInfo(tid, iqn)
            if "already exists" not in result.message:
                raise TargetError(f"creating target {iqn} (tid {tid}) failed: {result.message}")
            preferred = None  # someone else took the tid (or the IQN) meanwhile: look again
        raise TargetError(f"could not find a free tid for {iqn}")

    def _ensure_lun(self, info: TargetInfo, backing: str, read_only: bool) -> None:
        tid = str(info.tid)
        lun = info.luns.get(LUN)
        if lun is not None and lun.path and os.path.realpath(lun.path) == os.path.realpath(backing):
            # tgt reads the file's size once, when the LUN is created: once the file
            # grew (in-use extend) the LUN is re-created, on the same target, with
            # the same account and ACL; open sessions stay logged in.
            if lun.size_mb is None or lun.size_mb == os.path.getsize(backing) // 10**6:
                if lun.readonly != read_only:
                    self._set_readonly(tid, read_only)
                return
            LOG.info("target %s: its file grew; re-creating LUN %d", info.iqn, LUN)
        elif lun is not None:
            LOG.warning("target %s LUN %d serves %s; re-pointing it", info.iqn, LUN, lun.path)
        if lun is not None:
            self._adm_ok("--op", "delete", "--mode", "logicalunit", "--tid", tid, "--lun", str(LUN))
        args = ["--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", str(LUN)]
        args += ["--backing-store", backing, "--bstype", "rdwr"]
        if self.options.backing_store_flags:
            args += ["--bsoflags", self.options.backing_store_flags]
        self._adm_ok(*args)
        if read_only:
            try:
                self._set_readonly(tid, True)
            except TargetError:
                # Never leave a writable LUN behind for something meant to be read-only.
                self._adm("--op", "delete", "--mode", "logicalunit", "--tid", tid, "--lun", "1")
                raise

    def _set_readonly(self, tid: str, read_only: bool) -> None:
        self._adm_ok(
            "--op",
            "update",
            "--mode",
            "logicalunit",
            "--tid",
            tid,
            "--lun",
            str(LUN),
            "--params",
            f"readonly={1 if read_only else 0}",
        )

    def _ensure_account(self, info: TargetInfo, creds: Credentials) -> None:
        hide = (creds.secret,)
        for stale in [*info.accounts, *info.outgoing_accounts]:
            if stale != creds.username:
                # Accounts are per export (random names): an old one is ours to delete.
                self._adm("--op", "delete", "--mode", "account", "--user", stale)
        if creds.username in info.accounts:
            return
        new = ("--op", "new", "--mode", "account", "--user", creds.username)
        result = self._adm(*new, "--password", creds.secret, hide=hide)
        if not result.ok and "already exists" in result.message:
            # Left over from before (e.g. a target deleted by hand): reset its secret.
            self._adm_ok("--op", "delete", "--mode", "account", "--user", creds.username)
            result = self._adm(*new, "--password", creds.secret, hide=hide)
        if not result.ok:
            raise TargetError(f"creating the CHAP account for {info.iqn} failed: {result.message}")
        self._adm_ok(
            "--op", "bind", "--mode", "account", "--tid", str(info.tid), "--user", creds.username
        )

    def remove_export(self, ref: ExportRef) -> None:
        with self._lock:
            self.watcher.forget(ref.name)
            try:
                targets = self._targets()
            except TargetDaemonDown as exc:
                LOG.warning("not removing export of %s: %s", ref.name, exc)
                return  # tgtd holds nothing, so there is nothing to remove
            info = targets.get(self.iqn_for(ref.name))
            users: list[str] = []
            if info is not None:
                users = [*info.accounts, *info.outgoing_accounts]
                self._adm_ok(
                    "--op",
                    "delete",
                    "--mode",
                    "target",
                    "--force",
                    "--tid",
                    str(info.tid),
                    ok_if=("can't find the target",),
                )
            creds = Credentials.parse(ref.provider_auth, "CHAP")
            if creds is not None and creds.username not in users:
                users.append(creds.username)
            for user in users:
                self._adm_ok(
                    "--op",
                    "delete",
                    "--mode",
                    "account",
                    "--user",
                    user,
                    ok_if=("can't find the account",),
                )
            link = os.path.join(self.options.state_dir, "links", ref.name)
            if self.options.state_dir and os.path.islink(link):
                os.unlink(link)

    def is_exported(self, ref: ExportRef) -> bool:
        with self._lock:
            try:
                return self.iqn_for(ref.name) in self._targets()
            except TargetDaemonDown:
                return False

    # --- connections -------------------------------------------------------------
    def validate_connector(self, connector: Connector) -> None:
        if connector_str(connector, "initiator") is None:
            raise InvalidConnectorException(missing="initiator")
        refuse_single_path(
            connector, self.portals, "its operator can add portals (iscsi_secondary_ip_addresses)."
        )

    def initialize_connection(self, ref: ExportRef, connector: Connector) -> dict[str, Any]:
        self.validate_connector(connector)
        initiator = connector_str(connector, "initiator")
        assert initiator is not None
        creds = Credentials.parse(ref.provider_auth, "CHAP")
        if creds is None:
            raise TargetError(
                f"{ref.name} has no CHAP credentials: create_export must run, and its "
                "provider_auth be stored, before initialize_connection"
            )
        with self._lock:
            _, info = self._export(ref, creds)  # recreates the target if tgtd lost it
            self._allow(info, initiator)
            self.watcher.track(ref, creds)
            self.watcher.allow(ref.name, initiator)
        return self.connection_info(ref, creds)

    def _allow(self, info: TargetInfo, initiator: str) -> None:
        if initiator not in info.acl_names:
            self._adm_ok(
                "--op",
                "bind",
                "--mode",
                "target",
                "--tid",
                str(info.tid),
                "--initiator-name",
                initiator,
                ok_if=("already exists",),
            )

    def connection_info(self, ref: ExportRef, creds: Credentials) -> dict[str, Any]:
        iqn = self.iqn_for(ref.name)
        portals = self.portals
        data: dict[str, Any] = {
            "target_discovered": False,
            "target_iqn": iqn,
            "target_portal": portals[0],
            "target_lun": LUN,
            "volume_id": ref.object_id,
            "auth_method": creds.method,
            "auth_username": creds.username,
            "auth_password": creds.secret,
            "discard": False,
        }
        if len(portals) > 1:
            data["target_iqns"] = [iqn] * len(portals)
            data["target_portals"] = portals
            data["target_luns"] = [LUN] * len(portals)
        if ref.read_only:
            data["access_mode"] = "ro"
        return {"driver_volume_type": self.driver_volume_type, "data": data}

    def terminate_connection(self, ref: ExportRef, connector: Connector | None) -> None:
        initiator = connector_str(connector, "initiator")
        with self._lock:
            self.watcher.deny(ref.name, initiator)
            try:
                info = self._targets().get(self.iqn_for(ref.name))
            except TargetDaemonDown:
                return
            if info is None:
                return
            tid = str(info.tid)
            names = [initiator] if initiator else list(info.acl_names)
            for name in names:
                self._adm_ok(
                    "--op",
                    "unbind",
                    "--mode",
                    "target",
                    "--tid",
                    tid,
                    "--initiator-name",
                    name,
                    ok_if=("does not exist",),
                )
            if initiator is None:
                for address in info.acl_addresses:
                    self._adm_ok(
                        "--op",
                        "unbind",
                        "--mode",
                        "target",
                        "--tid",
                        tid,
                        "--initiator-address",
                        address,
                        ok_if=("does not exist",),
                    )
            # Without its ACL entry a reconnect is refused; close what is still open.
            for session in info.sessions:
                if initiator is not None and session.initiator != initiator:
                    continue
                for cid in session.connections:
                    result = self._adm(
                        "--op",
                        "delete",
                        "--mode",
                        "conn",
                        "--tid",
                        tid,
                        "--sid",
                        str(session.sid),
                        "--cid",
                        str(cid),
                    )
                    if not result.ok:
                        LOG.warning(
                            "closing session %d of %s on %s: %s",
                            session.sid,
                            session.initiator,
                            info.iqn,
                            result.message,
                        )
