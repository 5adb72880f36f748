"""`cinderblock serve | db upgrade | version`."""

from __future__ import annotations

import argparse
import logging
import sys

from cinderblock import __version__
from cinderblock.cli import manage as manage_cli
from cinderblock.config import ConfigError, load_settings, with_default_backend


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cinderblock.embedded import build

    overrides = {}
    if args.bind_host:
        overrides["bind_host"] = args.bind_host
    if args.bind_port:
        overrides["bind_port"] = str(args.bind_port)
    settings = load_settings(args.config, args.database_url, overrides)
    if not settings.backends:
        settings = with_default_backend(settings)
        volumes_dir = settings.backends[0].options["file_volumes_dir"]
        print(
            f"no enabled_backends configured: using a file backend in {volumes_dir}",
            file=sys.stderr,
        )
    service = build(settings)
    try:
        uvicorn.run(
            service.app,  # type: ignore[arg-type]
            host=settings.bind_host,
            port=settings.bind_port,
            log_level=args.log_level.lower(),
            access_log=args.access_log,
        )
    finally:
        service.stop()
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from cinderblock.db.database import Database

    settings = load_settings(args.config, args.database_url)
    db = Database(settings.database_url)
    db.upgrade()
    db.ensure_default_type(settings.default_volume_type)
    db.dispose()
    print("database is at the latest revision")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cinderblock", description=__doc__)
    parser.add_argument("--config", help="cinder.conf-style file (or $CINDERBLOCK_CONFIG)")
    parser.add_argument("--database-url", help="overrides [database] connection")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run API, scheduler and volume services in one process")
    serve.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    serve.add_argument("--database-url", dest="database_url", default=argparse.SUPPRESS)
    serve.add_argument("--bind-host")
    serve.add_argument("--bind-port", type=int)
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(func=_serve)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations")
    upgrade.set_defaults(func=_db_upgrade)
    manage_cli.add_parser(sub)
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
