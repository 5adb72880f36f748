"""Settings: read once per process from a cinder.conf-style INI file and passed down.

    [DEFAULT]
    host = node1
    enabled_backends = file-1
    [database]
    connection = sqlite:////var/lib/cinderblock/cinderblock.sqlite
    [file-1]
    volume_driver = file
    volume_backend_name = file-1
    file_volumes_dir = /var/lib/cinderblock/volumes

The database URL may also come from the CINDERBLOCK_DATABASE_URL environment
variable or the --database-url flag (flag > env > file).
"""

from __future__ import annotations

import configparser
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cinderblock.drivers.config import BackendConfig

DATABASE_URL_ENV = "CINDERBLOCK_DATABASE_URL"
CONFIG_ENV = "CINDERBLOCK_CONFIG"


class ConfigError(ValueError):
    """The configuration file is unusable; the message says which key and why."""


@dataclass(frozen=True)
class KeystoneAuthSettings:
    """[keystone_authtoken] (auth_strategy = keystone): where tokens are validated and as
    whom. The whole section also goes to keystonemiddleware (timeouts, TLS, region...)."""

    auth_url: str
    www_authenticate_uri: str
    auth_type: str = "password"
    username: str = ""
    password: str = field(default="", repr=False)
    project_name: str = ""
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    # Seconds a validated (or refused) token is remembered; 0 or -1: ask Keystone each time.
    token_cache_time: int = 300
    token_cache_size: int = 10000
    options: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Settings:
    host: str = field(default_factory=socket.gethostname)
    bind_host: str = "127.0.0.1"
    bind_port: int = 8776
    auth_strategy: str = "noauth"
    # In noauth mode these user names get the admin role; everyone else is a member
    # of the project named in the token.
    noauth_admin_users: tuple[str, ...] = ("admin",)
    keystone: KeystoneAuthSettings | None = None
    storage_availability_zone: str = "nova"
    default_volume_type: str = "__DEFAULT__"
    osapi_max_limit: int = 1000
    max_request_body_size: int = 114688
    # Request handlers one API process runs at once (the rest queue): see concurrency.py.
    api_handler_slots: int = 4
    public_endpoint: str | None = None
    state_path: str = "./var"
    database_url: str = ""
    message_ttl: int = 2592000
    service_down_time: int = 60
    report_interval: int = 10
    # Empty: in-process transport (embedded). rabbit://user:pass@host:5672/vhost: RabbitMQ.
    transport_url: str = ""
    rpc_workers: int = 16
    rpc_call_timeout: float = 60.0
    # Default per-project quotas (Cinder's option names and defaults); -1 is unlimited.
    quota_volumes: int = 10
    quota_snapshots: int = 10
    quota_gigabytes: int = 1000
    quota_backups: int = 10
    quota_backup_gigabytes: int = 1000
    quota_groups: int = 10
    per_volume_size_limit: int = -1
    # [oslo_policy] policy_file, made absolute (relative to the config file's directory, as
    # in Cinder; default policy.yaml there). No file there: the default policy.
    policy_file: str | None = None
    backends: tuple[BackendConfig, ...] = ()

    def backend(self, name: str) -> BackendConfig:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)


def _getlist(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def load_settings(
    path: str | os.PathLike[str] | None = None,
    database_url: str | None = None,
    overrides: dict[str, str] | None = None,
) -> Settings:
    """Build settings from an INI file (optional), environment and explicit overrides."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    path = path or os.environ.get(CONFIG_ENV)
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            parser.read(path)
        except configparser.Error as exc:
            raise ConfigError(f"cannot parse {path}: {exc}") from exc
        _unquote_values(parser)
    default = dict(parser["DEFAULT"]) if parser.has_section("DEFAULT") else {}
    default.update(overrides or {})
    database = dict(parser["database"]) if parser.has_section("database") else {}

    def get_int(key: str, fallback: int) -> int:
        raw = default.get(key)
        if raw is None:
            return fallback
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"[DEFAULT] {key} must be an integer, got {raw!r}") from exc

    state_path = default.get("state_path", "./var")
    url = (
        database_url
        or os.environ.get(DATABASE_URL_ENV)
        or database.get("connection")
        or f"sqlite:///{Path(state_path).absolute() / 'cinderblock.sqlite'}"
    )
    backends = []
    for name in _getlist(default.get("enabled_backends", "")):
        if not parser.has_section(name):
            raise ConfigError(f"enabled_backends names [{name}] but the file has no such section")
        section = dict(parser[name])
        driver = section.get("volume_driver")
        if not driver:
            raise ConfigError(f"[{name}] volume_driver is required")
        backends.append(
            BackendConfig(
                name=name,
                volume_driver=driver,
                volume_backend_name=section.get("volume_backend_name", name),
                options=section,
            )
        )
    auth = default.get("auth_strategy", "noauth")
    if auth not in ("noauth", "keystone"):
        raise ConfigError(f"auth_strategy {auth!r} is not supported (use noauth or keystone)")
    keystone = _keystone_settings(parser) if auth == "keystone" else None
    policy_file = None
    if path:
        raw = parser.get("oslo_policy", "policy_file", fallback="").strip() or "policy.yaml"
        policy_file = str(Path(path).absolute().parent / Path(raw).expanduser())
        _check_policy_file(policy_file)
    transport_url = os.environ.get("CINDERBLOCK_TRANSPORT_URL") or default.get("transport_url", "")
    _mask_secrets_in_logs(url, transport_url, keystone)
    return Settings(
        host=default.get("host") or socket.gethostname(),
        bind_host=default.get("bind_host", "127.0.0.1"),
        bind_port=get_int("bind_port", 8776),
        auth_strategy=auth,
        noauth_admin_users=tuple(_getlist(default.get("noauth_admin_users", "admin"))),
        keystone=keystone,
        storage_availability_zone=default.get("storage_availability_zone", "nova"),
        default_volume_type=default.get("default_volume_type", "__DEFAULT__"),
        osapi_max_limit=get_int("osapi_max_limit", 1000),
        max_request_body_size=get_int("max_request_body_size", 114688),
        api_handler_slots=max(1, get_int("api_handler_slots", 4)),
        public_endpoint=default.get("public_endpoint") or None,
        state_path=state_path,
        database_url=url,
        message_ttl=get_int("message_ttl", 2592000),
        service_down_time=get_int("service_down_time", 60),
        report_interval=get_int("report_interval", 10),
        transport_url=transport_url,
        rpc_workers=get_int("rpc_workers", 16),
        quota_volumes=get_int("quota_volumes", 10),
        quota_snapshots=get_int("quota_snapshots", 10),
        quota_gigabytes=get_int("quota_gigabytes", 1000),
        quota_backups=get_int("quota_backups", 10),
        quota_backup_gigabytes=get_int("quota_backup_gigabytes", 1000),
        quota_groups=get_int("quota_groups", 10),
        per_volume_size_limit=get_int("per_volume_size_limit", -1),
        policy_file=policy_file,
        backends=tuple(backends),
    )


def _mask_secrets_in_logs(
    database_url: str, transport_url: str, keystone: KeystoneAuthSettings | None
) -> None:
    """From here on no log record shows these passwords (see logmask.py)."""
    import contextlib
    from urllib.parse import urlsplit

    from cinderblock import logmask

    logmask.install()
    for url in (database_url, *transport_url.split(",")):
        # (not a URL: the patterns still mask user:password@ in it)
        with contextlib.suppress(ValueError):
            logmask.add_secret(urlsplit(url.strip()).password)
    if keystone is not None:
        logmask.add_secret(keystone.password)


def _check_policy_file(path: str) -> None:
    """A policy file that cannot be used stops the start, before anything runs."""
    from cinderblock.policy import PolicyFileError, load_enforcer

    try:
        load_enforcer(path)
    except PolicyFileError as exc:
        raise ConfigError(str(exc)) from exc


def _unquote_values(parser: configparser.ConfigParser) -> None:
    """Strip one pair of matching quotes around a value, as cinder.conf readers do:
    `filter_function = "volume.size < 5"` is the expression, not a string literal."""
    for section in parser.sections():
        for key, value in parser.items(section):
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                parser.set(section, key, value[1:-1])


def _keystone_settings(parser: configparser.ConfigParser) -> KeystoneAuthSettings:
    name = "keystone_authtoken"
    if not parser.has_section(name):
        raise ConfigError(f"auth_strategy = keystone needs a [{name}] section")
    section = {key: value.strip() for key, value in parser[name].items()}
    auth_url = section.get("auth_url", "")
    public_uri = section.get("www_authenticate_uri") or section.get("auth_uri") or auth_url
    if not auth_url:
        raise ConfigError(f"[{name}] auth_url is required")
    auth_type = section.get("auth_type") or "password"
    if auth_type == "password":
        for key in ("username", "password", "project_name"):
            if not section.get(key):
                raise ConfigError(f"[{name}] {key} is required with auth_type = password")

    def get_int(key: str, fallback: int) -> int:
        raw = section.get(key) or str(fallback)
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"[{name}] {key} must be an integer, got {raw!r}") from exc

    return KeystoneAuthSettings(
        auth_url=auth_url,
        www_authenticate_uri=public_uri,
        auth_type=auth_type,
        username=section.get("username", ""),
        password=section.get("password", ""),
        project_name=section.get("project_name", ""),
        user_domain_name=section.get("user_domain_name") or "Default",
        project_domain_name=section.get("project_domain_name") or "Default",
        token_cache_time=get_int("token_cache_time", 300),
        token_cache_size=max(0, get_int("token_cache_size", 10000)),
        options=section,
    )


def with_default_backend(settings: Settings) -> Settings:
    """Embedded mode without a config file: one file backend under state_path."""
    if settings.backends:
        return settings
    from dataclasses import replace

    volumes = str(Path(settings.state_path).absolute() / "volumes")
    backend = BackendConfig(
        name="file",
        volume_driver="file",
        volume_backend_name="file",
        options={
            "volume_driver": "file",
            "volume_backend_name": "file",
            "file_volumes_dir": volumes,
        },
    )
    return replace(settings, backends=(backend,))
