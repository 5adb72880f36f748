"""NBD exports through qemu-nbd: one qemu-nbd process per exported object.

Each export is ``qemu-nbd --fork --persistent --shared=N -f raw --export-name
<name> --bind <ip> --port <port> <file>`` (``--read-only`` for snapshots,
``--object tls-creds-psk`` + ``--tls-creds`` with ``nbd_tls = psk``). The
port comes from ``nbd_port_range`` (default 10809-10909). `--fork` returns
once the server listens, so a successful start is a serving export.

The state directory (``nbd_state_dir``, default ``<volumes dir>/.nbd``) holds
per export ``<name>.json`` (file, host, port, read-only), ``<name>.pid``
(written by qemu-nbd) and, with TLS, ``<name>.psk/keys.psk``. A recorded
port is kept across restarts, so ensure_export after a crash or reboot
serves the export at the same address. The pid is only trusted when
/proc/<pid>/cmdline is a qemu-nbd serving that name.

qemu-nbd serves the size the file had when it started: after the file grew
(in-use extend) ensure_export restarts it on the same port (connected clients
must reconnect). NBD has one path, so ``enforce_multipath`` is refused.

NBD has no initiator access control: anyone who reaches host:port (and, with
TLS, holds the PSK) may connect while the export exists, so
terminate_connection changes nothing; remove_export stops the server.
provider_location is ``nbd://<host>:<port>/<name>``; provider_auth is
``PSK <identity> <hex key>`` with TLS, else None.

Options: target_ip_address, nbd_port_range, nbd_state_dir, nbd_shared_clients,
nbd_tls (none|psk), nbd_cache, target_command_timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.refs import Connector
from cinderblock.targets import process
from cinderblock.targets.base import (
    Credentials,
    Export,
    ExportRef,
    Target,
    TargetError,
    random_token,
    refuse_single_path,
    stable_digest,
)
from cinderblock.targets.tgtshow import join_portal

LOG = logging.getLogger(__name__)

TLS_MODES = ("none", "psk")
CACHE_MODES = ("", "none", "writeback", "writethrough", "directsync", "unsafe")
_PORT_TAKEN = ("Address already in use", "Failed to find an available port")


@dataclass(frozen=True, slots=True)
class NbdOptions:
    state_dir: str
    host: str = "127.0.0.1"
    port_min: int = 10809
    port_max: int = 10909
    shared: int = 8
    tls: str = "none"
    cache: str = ""
    timeout: float = process.DEFAULT_TIMEOUT

    @classmethod
    def from_config(cls, config: BackendConfig, state_root: str) -> NbdOptions:
        state_dir = config.get_str("nbd_state_dir", "").strip()
        if not state_dir and state_root:
            state_dir = os.path.join(state_root, ".nbd")
        raw_range = config.get_str("nbd_port_range", "10809-10909").strip()
        low, sep, high = raw_range.partition("-")
        try:
            port_min, port_max = int(low), int(high if sep else low)
        except ValueError as exc:
            raise ValueError(
                f"[{config.name}] nbd_port_range must be like 10809-10909, got {raw_range!r}"
            ) from exc
        if not 0 < port_min <= port_max < 65536:
            raise ValueError(f"[{config.name}] nbd_port_range {raw_range!r} is not a port range")
        options = cls(
            state_dir=state_dir,
            host=config.get_str("target_ip_address", "127.0.0.1").strip(),
            port_min=port_min,
            port_max=port_max,
            shared=config.get_int("nbd_shared_clients", 8),
            tls=config.get_str("nbd_tls", "none").strip().lower(),
            cache=config.get_str("nbd_cache", "").strip().lower(),
            timeout=config.get_float("target_command_timeout", process.DEFAULT_TIMEOUT),
        )
        if options.tls not in TLS_MODES:
            raise ValueError(f"[{config.name}] nbd_tls must be one of {', '.join(TLS_MODES)}")
        if options.cache not in CACHE_MODES:
            raise ValueError(
                f"[{config.name}] nbd_cache must be one of {', '.join(CACHE_MODES[1:])}"
            )
        if options.shared < 1:
            raise ValueError(f"[{config.name}] nbd_shared_clients must be at least 1")
        return options


@dataclass(frozen=True, slots=True)
class _Record:
    """What <name>.json says about a started export."""

    name: str
    path: str
    host: str
    port: int
    read_only: bool
    tls_identity: str | None = None
    # The file's size when qemu-nbd started: it serves that size until restarted,
    # so a grown file (in-use extend) means a restart on the same port.
    size: int = 0


def location_of(host: str, port: int, name: str) -> str:
    return f"nbd://{join_portal(host, port)}/{name}"


def port_of(location: str | None) -> int | None:
    if not location or not location.startswith("nbd://"):
        return None
    try:
        return urlsplit(location).port
    except ValueError:
        return None


def _size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _qemu_opt(value: str) -> str:
    """Escape a value for qemu's comma-separated option syntax."""
    return value.replace(",", ",,")


class NbdTarget(Target):
    protocol = "nbd"
    driver_volume_type = "nbd"

    def __init__(self, options: NbdOptions) -> None:
        self.options = options
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, config: BackendConfig, state_root: str) -> NbdTarget:
        return cls(NbdOptions.from_config(config, state_root))

    # --- state files -----------------------------------------------------------
    def _state_dir(self) -> str:
        if not self.options.state_dir:
            raise TargetError("nbd_state_dir is not set")
        os.makedirs(self.options.state_dir, mode=0o700, exist_ok=True)
        return self.options.state_dir

    def _file(self, name: str, suffix: str) -> str:
        return os.path.join(self._state_dir(), name + suffix)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Threads of this process and other processes sharing the state dir."""
        with self._lock:
            fd = os.open(os.path.join(self._state_dir(), ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _load(self, name: str) -> _Record | None:
        try:
            with open(self._file(name, ".json"), encoding="utf-8") as f:
                return _Record(**json.load(f))
        except (FileNotFoundError, TypeError, ValueError):
            return None

    def _save(self, record: _Record) -> None:
        path = self._file(record.name, ".json")
        tmp = f"{path}.{secrets.token_hex(4)}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(record), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _claimed_ports(self, except_name: str) -> set[int]:
        ports: set[int] = set()
        for entry in os.listdir(self._state_dir()):
            if entry.endswith(".json") and entry[:-5] != except_name:
                record = self._load(entry[:-5])
                if record is not None:
                    ports.add(record.port)
        return ports

    def _markers(self, name: str) -> tuple[bytes, ...]:
        return (b"qemu-nbd", b"\0" + name.encode() + b"\0")

    def _pid(self, name: str) -> int | None:
        pid = process.read_pid(self._file(name, ".pid"))
        if pid is not None and process.pid_alive(pid, must_contain=self._markers(name)):
            return pid
        return None

    # --- credentials -------------------------------------------------------------
    def _credentials(self, ref: ExportRef) -> Credentials | None:
        if self.options.tls != "psk":
            return None
        return Credentials.parse(ref.provider_auth, "PSK") or Credentials(
            "PSK", random_token(20), secrets.token_hex(32)
        )

    def stable_auth(self, name: str) -> str | None:
        if self.options.tls != "psk":
            return None
        digest = stable_digest(self._state_dir(), name)
        return str(Credentials("PSK", "s" + digest[:19], digest))

    def _write_psk(self, name: str, creds: Credentials) -> str:
        directory = self._file(name, ".psk")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, "keys.psk")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{creds.username}:{creds.secret}\n")
        return directory

    # --- export --------------------------------------------------------------------
    def check(self) -> None:
        process.find_tool("qemu-nbd", "qemu-utils")
        self._state_dir()

    def create_export(self, ref: ExportRef) -> Export:
        return self.ensure_export(ref)

    def ensure_export(self, ref: ExportRef) -> Export:
        creds = self._credentials(ref)
        path = self._source(ref)
        with self._locked():
            record = self._load(ref.name)
            pid = self._pid(ref.name)
            wanted = _Record(
                name=ref.name,
                path=path,
                host=self.options.host,
                port=record.port if record else 0,
                read_only=ref.read_only,
                tls_identity=creds.username if creds else None,
                size=self._source_size(path),
            )
            if pid is not None and record == wanted:
                return self._export_of(record, creds)
            if pid is not None:
                LOG.info("restarting the NBD export of %s: its settings changed", ref.name)
                process.stop_pid(pid, must_contain=self._markers(ref.name))
            preferred = record.port if record else port_of(ref.provider_location)
            record = self._start(ref, path, creds, preferred)
            self._save(record)
            return self._export_of(record, creds)

    def _source(self, ref: ExportRef) -> str:
        """What qemu-nbd opens: the file's real path (subclasses export other sources)."""
        return os.path.realpath(ref.path)

    def _source_exists(self, source: str) -> bool:
        return os.path.exists(source)

    def _source_size(self, source: str) -> int:
        """The source's size now; a change (in-use extend) restarts qemu-nbd."""
        return _size_of(source)

    def _export_of(self, record: _Record, creds: Credentials | None) -> Export:
        location = location_of(record.host, record.port, record.name)
        return Export(location, str(creds) if creds else None)

    def _start(
        self, ref: ExportRef, path: str, creds: Credentials | None, preferred: int | None
    ) -> _Record:
        if not self._source_exists(path):
            raise TargetError(f"cannot export {ref.name}: {ref.path} does not exist")
        size = self._source_size(path)  # before qemu-nbd reads it: a later growth shows as a change
        qemu_nbd = process.find_tool("qemu-nbd", "qemu-utils")
        pid_file = self._file(ref.name, ".pid")
        process.wait_exiting(process.read_pid(pid_file))  # a killed server frees its port
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)
        base = [qemu_nbd, "--fork", "--persistent", f"--shared={self.options.shared}"]
        base += ["-f", "raw", "--export-name", ref.name, "--bind", self.options.host]
        base += ["--pid-file", pid_file]
        if self.options.cache:
            base.append(f"--cache={self.options.cache}")
        if ref.read_only:
            base.append("--read-only")
        if creds is not None:
            psk_dir = self._write_psk(ref.name, creds)
            base += ["--object", f"tls-creds-psk,id=tls0,endpoint=server,dir={_qemu_opt(psk_dir)}"]
            base += ["--tls-creds", "tls0"]
        low, high = self.options.port_min, self.options.port_max
        claimed = self._claimed_ports(ref.name)
        candidates = [p for p in range(low, high + 1) if p not in claimed]
        if preferred is not None and low <= preferred <= high:
            candidates = [preferred, *(p for p in candidates if p != preferred)]
        for port in candidates:
            result = process.run(
                [*base, "--port", str(port), path],
                timeout=self.options.timeout,
                hide=(creds.secret,) if creds else (),
            )
            if result.ok:
                LOG.info("NBD export %s of %s on %s:%d", ref.name, path, self.options.host, port)
                return _Record(
                    name=ref.name,
                    path=path,
                    host=self.options.host,
                    port=port,
                    read_only=ref.read_only,
                    tls_identity=creds.username if creds else None,
                    size=size,
                )
            if not any(text in result.message for text in _PORT_TAKEN):
                raise TargetError(f"qemu-nbd could not export {ref.name}: {result.message}")
        raise TargetError(
            f"no free port in nbd_port_range {low}-{high} for {ref.name} "
            f"({len(claimed)} ports held by other exports)"
        )

    def remove_export(self, ref: ExportRef) -> None:
        with self._locked():
            pid = self._pid(ref.name)
            if pid is not None:
                process.stop_pid(pid, must_contain=self._markers(ref.name))
            for suffix in (".json", ".pid"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file(ref.name, suffix))
            shutil.rmtree(self._file(ref.name, ".psk"), ignore_errors=True)

    def is_exported(self, ref: ExportRef) -> bool:
        with self._locked():
            return self._pid(ref.name) is not None

    def serving_pid(self, ref: ExportRef) -> int | None:
        """The qemu-nbd process serving ref, if any (for operators and tests)."""
        with self._locked():
            return self._pid(ref.name)

    # --- connections -----------------------------------------------------------------
    def validate_connector(self, connector: Connector) -> None:
        """NBD needs nothing from the connector: the client only needs to reach host:port.

        NBD has one path per export, so a connector enforcing multipath is refused.
        """
        refuse_single_path(connector, [self.options.host], "NBD exports have no multipath.")

    def initialize_connection(self, ref: ExportRef, connector: Connector) -> dict[str, Any]:
        self.validate_connector(connector)
        if self.options.tls == "psk" and Credentials.parse(ref.provider_auth, "PSK") is None:
            raise TargetError(
                f"{ref.name} has no TLS PSK: create_export must run, and its provider_auth "
                "be stored, before initialize_connection"
            )
        export = self.ensure_export(ref)  # restarts qemu-nbd if it died
        port = port_of(export.provider_location)
        data: dict[str, Any] = {
            "host": self.options.host,
            "port": port,
            "export_name": ref.name,
            "volume_id": ref.object_id,
        }
        creds = Credentials.parse(export.provider_auth, "PSK")
        if creds is not None:
            data.update(
                auth_method="TLS-PSK", auth_username=creds.username, auth_password=creds.secret
            )
        if ref.read_only:
            data["access_mode"] = "ro"
        return {"driver_volume_type": self.driver_volume_type, "data": data}

    def terminate_connection(self, ref: ExportRef, connector: Connector | None) -> None:
        """Nothing to revoke: NBD has no per-client access list (remove_export stops it)."""
