"""The target interface: how a driver exports a backing file on the data path.

A driver *has* a target (the seeds' has-a relationship): the driver knows
where a volume's bytes live (a file path), the target knows how to hand them
to an initiator (iSCSI through tgt, NBD through qemu-nbd). Targets see only
an `ExportRef` and the connector; they never touch the database.

What a target returns is Cinder-shaped:

* `Export.provider_location`: where the export is, e.g. tgt's
  ``"<ip>:<port>,<tid> <iqn> <lun>"``;
* `Export.provider_auth`: ``"<method> <user> <secret>"`` (``"CHAP u s"``), or None;
* `initialize_connection`: ``{"driver_volume_type": ..., "data": {...}}``.

The credentials in provider_auth are the only state that cannot be rebuilt
from the names: the caller persists them and hands them back (on the
ExportRef) to ensure_export after a daemon or host restart.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import hmac
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cinderblock.drivers.refs import Connector, ModelUpdate
from cinderblock.exceptions import InvalidConnectorException, VolumeBackendAPIException

# Letters and digits only: safe in tgtadm arguments, URLs and provider_auth (space separated).
_ALPHABET = string.ascii_letters + string.digits
CHAP_USER_LENGTH = 20
CHAP_SECRET_LENGTH = 24  # tgt accepts up to 255; RFC 3720 wants >= 12 bytes, Windows >= 12.


class TargetError(VolumeBackendAPIException):
    """A target operation failed; the message says what to do about it."""

    def __init__(self, message: str) -> None:
        super().__init__(data=message)


class TargetDaemonDown(TargetError):
    """The target daemon (tgtd) does not answer, so it serves no export at all."""


@dataclass(frozen=True, slots=True)
class ExportRef:
    """What to export: one backing file under one name.

    `name` is the backend object name (``volume-<id>`` or ``snapshot-<id>``):
    it becomes the IQN suffix or the NBD export name. `object_id` is reported
    as ``data["volume_id"]`` in connection_info. `provider_location` and
    `provider_auth` are what an earlier export returned (None if never
    exported); a target reuses those credentials instead of inventing new ones.
    """

    object_id: str
    name: str
    path: str
    read_only: bool = False
    provider_location: str | None = None
    provider_auth: str | None = None


@dataclass(frozen=True, slots=True)
class Export:
    """Where an export lives and how to log in to it."""

    provider_location: str
    provider_auth: str | None = None

    def as_update(self) -> ModelUpdate:
        return {"provider_location": self.provider_location, "provider_auth": self.provider_auth}


@dataclass(frozen=True, slots=True)
class Credentials:
    """``<method> <user> <secret>``, the provider_auth format of Cinder's ISCSIDriver."""

    method: str
    username: str
    secret: str

    def __str__(self) -> str:
        return f"{self.method} {self.username} {self.secret}"

    def __repr__(self) -> str:  # never print a secret in a log line or traceback
        return f"Credentials(method={self.method!r}, username={self.username!r}, secret=***)"

    @classmethod
    def parse(cls, provider_auth: str | None, method: str) -> Credentials | None:
        """The credentials in provider_auth if they are of `method`, else None."""
        if not provider_auth:
            return None
        parts = provider_auth.split()
        if len(parts) != 3 or parts[0].upper() != method.upper():
            return None
        if not all(c in _ALPHABET for c in parts[1] + parts[2]):
            return None
        return cls(method.upper(), parts[1], parts[2])


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_chap_credentials() -> Credentials:
    return Credentials("CHAP", random_token(CHAP_USER_LENGTH), random_token(CHAP_SECRET_LENGTH))


class Target(abc.ABC):
    """One data-path protocol. Every method is safe to call again (idempotent)."""

    protocol: ClassVar[str]  # option value: "iscsi", "nbd"
    driver_volume_type: ClassVar[str]  # connection_info["driver_volume_type"]

    @abc.abstractmethod
    def check(self) -> None:
        """Raise TargetError naming what is missing (tools, daemon) for exports to work."""

    @abc.abstractmethod
    def create_export(self, ref: ExportRef) -> Export:
        """Export ref.path under ref.name; reuses ref.provider_auth credentials when valid."""

    @abc.abstractmethod
    def ensure_export(self, ref: ExportRef) -> Export:
        """Recreate the export if it is gone (daemon restart), with the same credentials."""

    @abc.abstractmethod
    def remove_export(self, ref: ExportRef) -> None:
        """Take the export down; no error when there is none."""

    @abc.abstractmethod
    def is_exported(self, ref: ExportRef) -> bool:
        """Whether the export currently exists (the daemon serves it)."""

    @abc.abstractmethod
    def validate_connector(self, connector: Connector) -> None:
        """Raise InvalidConnectorException when the connector lacks what this protocol needs."""

    @abc.abstractmethod
    def initialize_connection(self, ref: ExportRef, connector: Connector) -> dict[str, Any]:
        """Let the connector in and return connection_info (the export is ensured first)."""

    @abc.abstractmethod
    def terminate_connection(self, ref: ExportRef, connector: Connector | None) -> None:
        """Shut the connector out again (None: every connector)."""

    def stable_auth(self, name: str) -> str | None:
        """provider_auth for an object that has nowhere to persist it (snapshots).

        Must return the same value for the same name across restarts. Targets
        without authentication return None.
        """
        return None


def stable_digest(state_dir: str, name: str) -> str:
    """A hex HMAC-SHA256 of name under a random key kept in state_dir (created on first use).

    For credentials of objects with no provider_auth column (snapshots): the
    same name gives the same value across restarts, and nobody without the
    key file can guess it.
    """
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, "auth.key")
    key = b""
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        key = f.read()
    if len(key) < 32:
        tmp = f"{path}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # the first writer wins; everyone then reads its key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        with open(path, "rb") as f:
            key = f.read()
    return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()


def connector_str(connector: Mapping[str, Any] | None, key: str) -> str | None:
    """A non-empty string value of the connector, or None."""
    if not connector:
        return None
    value = connector.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def multipath_enforced(connector: Mapping[str, Any] | None) -> bool:
    """Whether the connector insists on multipath (os-brick's ``enforce_multipath``)."""
    value = connector.get("enforce_multipath") if connector else None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return value is True or (type(value) is int and value == 1)


def refuse_single_path(connector: Mapping[str, Any] | None, paths: list[str], hint: str) -> None:
    """InvalidConnectorException (400) when multipath is enforced and there is one path."""
    if multipath_enforced(connector) and len(paths) < 2:
        where = f" ({paths[0]})" if paths else ""
        raise InvalidConnectorException(
            "The connector enforces multipath (enforce_multipath), but this backend "
            f"exports through a single path{where}; {hint}"
        )
