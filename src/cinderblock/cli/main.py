"""`cinderblock serve | api | scheduler | volume | db upgrade | manage | version`.

`serve` runs everything in one process (embedded mode). `api`, `scheduler` and
`volume` run one role each, for distributed mode: same config file, with
`transport_url = rabbit://...` and a shared `[database] connection`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading

from cinderblock import __version__
from cinderblock.cli import audit as audit_cli
from cinderblock.cli import manage as manage_cli
from cinderblock.config import ConfigError, Settings, load_settings, with_default_backend


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "bind_host", None):
        overrides["bind_host"] = args.bind_host
    if getattr(args, "bind_port", None):
        overrides["bind_port"] = str(args.bind_port)
    if getattr(args, "host", None):
        overrides["host"] = args.host
    return load_settings(args.config, args.database_url, overrides)


def check_noauth_binding(settings: Settings, allow: bool) -> None:
    """noauth trusts whatever token it is sent: only on loopback unless told otherwise."""
    if settings.auth_strategy != "noauth" or _is_loopback(settings.bind_host):
        return
    if not allow:
        raise ConfigError(
            f"auth_strategy = noauth would accept any token on {settings.bind_host}; bind to "
            "127.0.0.1, use auth_strategy = keystone, or pass --allow-insecure-noauth"
        )
    logging.getLogger(__name__).warning(
        "noauth is listening on %s: anyone who can reach it can act as any user, admin included",
        settings.bind_host,
    )


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run_api(service: object, settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    config = uvicorn.Config(
        service.app,  # type: ignore[attr-defined]
        host=settings.bind_host,
        port=settings.bind_port,
        log_level=args.log_level.lower(),
        access_log=args.access_log,
    )
    if not getattr(args, "reuse_port", False):
        uvicorn.Server(config).run()
        return
    # Several `cinderblock api` processes on one address: the kernel spreads new
    # connections over them (one Python process is bound to one core by its GIL).
    family = socket.AF_INET6 if ":" in settings.bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.bind_host, settings.bind_port))
    uvicorn.Server(config).run(sockets=[sock])


def _serve(args: argparse.Namespace) -> int:
    from cinderblock.embedded import build

    settings = _settings(args)
    if not settings.backends:
        settings = with_default_backend(settings)
        volumes_dir = settings.backends[0].options["file_volumes_dir"]
        print(
            f"no enabled_backends configured: using a file backend in {volumes_dir}",
            file=sys.stderr,
        )
    check_noauth_binding(settings, args.allow_insecure_noauth)
    service = build(settings)
    try:
        _run_api(service, settings, args)
    finally:
        service.stop()
    return 0


def _role(role: str):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        from cinderblock.embedded import build

        settings = _settings(args)
        if role != "api" and not settings.transport_url:
            print(
                f"cinderblock {role}: transport_url is not set; a separate {role} process "
                "needs a message broker (transport_url = rabbit://...)",
                file=sys.stderr,
            )
            return 2
        if role == "volume" and not settings.backends:
            print("cinderblock volume: no enabled_backends configured", file=sys.stderr)
            return 2
        if role == "api":
            check_noauth_binding(settings, args.allow_insecure_noauth)
        service = build(settings, roles=(role,), migrate=args.migrate)
        try:
            if role == "api":
                _run_api(service, settings, args)
            else:
                stop = threading.Event()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: stop.set())
                logging.getLogger(__name__).info("cinderblock %s running", role)
                stop.wait()
        finally:
            service.stop()
        return 0

    return run


def _db_upgrade(args: argparse.Namespace) -> int:
    from cinderblock.db.database import Database

    settings = load_settings(args.config, args.database_url)
    db = Database(settings.database_url)
    db.upgrade()
    db.ensure_default_type(settings.default_volume_type)
    db.dispose()
    print("database is at the latest revision")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    parser.add_argument("--database-url", dest="database_url", default=argparse.SUPPRESS)


def _openapi(args: argparse.Namespace) -> int:
    import json

    from cinderblock.api.app import V3_ROUTES
    from cinderblock.api.openapi import build_document

    print(json.dumps(build_document(V3_ROUTES), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cinderblock", description=__doc__)
    parser.add_argument("--config", help="cinder.conf-style file (or $CINDERBLOCK_CONFIG)")
    parser.add_argument("--database-url", help="overrides [database] connection")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run API, scheduler and volume services in one process")
    _common(serve)
    serve.add_argument("--bind-host")
    serve.add_argument("--bind-port", type=int)
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument(
        "--allow-insecure-noauth",
        action="store_true",
        help="let noauth listen on a non-loopback address (logs a warning)",
    )
    serve.set_defaults(func=_serve)
    for role, text in (
        ("api", "run the API (distributed mode)"),
        ("scheduler", "run a scheduler (distributed mode)"),
        ("volume", "run the volume services of this host's backends (distributed mode)"),
    ):
        cmd = sub.add_parser(role, help=text)
        _common(cmd)
        cmd.add_argument("--host", help="overrides [DEFAULT] host (the host part of host@backend)")
        cmd.add_argument(
            "--no-migrate",
            dest="migrate",
            action="store_false",
            help="do not apply database migrations at start-up",
        )
        if role == "api":
            cmd.add_argument("--bind-host")
            cmd.add_argument("--bind-port", type=int)
            cmd.add_argument("--access-log", action="store_true")
            cmd.add_argument(
                "--allow-insecure-noauth",
                action="store_true",
                help="let noauth listen on a non-loopback address",
            )
            cmd.add_argument(
                "--reuse-port",
                action="store_true",
                help="share the address with other `cinderblock api --reuse-port` processes "
                "(SO_REUSEPORT: the kernel balances connections between them)",
            )
        cmd.set_defaults(func=_role(role))
    db = sub.add_parser("db", help="database maintenance")
    _common(db)
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations")
    upgrade.set_defaults(func=_db_upgrade)
    manage_cli.add_parser(sub)
    audit_cli.add_parser(sub)
    openapi = sub.add_parser("openapi", help="print the API's OpenAPI document (JSON)")
    openapi.set_defaults(func=_openapi)
    version = sub.add_parser("version")
    version.set_defaults(func=lambda _args: print(__version__) or 0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(f"cinderblock: configuration error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
