#!/usr/bin/env python3
"""Run bench/api_bench.py against a distributed cinderblock started just for the run.

Creates a fresh PostgreSQL database and a fresh RabbitMQ virtual host, runs
``cinderblock db upgrade``, then starts separate ``cinderblock volume``,
``cinderblock scheduler`` and ``cinderblock api`` processes (one each;
``--scheduler-processes`` for more schedulers, ``--api-processes`` for more API
processes sharing one port with ``--reuse-port``) sharing them, waits until the
API answers and the scheduler reports the pool, runs the benchmark, stops everything
and drops the database and the vhost.

    python bench/distributed_bench.py --scenarios create_latency,create_throughput
    python bench/distributed_bench.py --driver file --json dist.json
    # where the CPU goes, per created volume (no cleanup: --keep)
    python bench/distributed_bench.py --scenarios create_throughput --keep

Needs PostgreSQL (``--pg``, default postgresql+psycopg://postgres@127.0.0.1:5432/test,
a user allowed to create databases) and RabbitMQ on this machine (``rabbitmqctl`` on
PATH; guest/guest on 127.0.0.1:5672). Every api_bench option except --endpoint is
accepted (see --help).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import sqlalchemy as sa

import api_bench
from embedded import (
    BACKEND,
    DRIVERS,
    EXIT_SERVER_FAILED,
    Server,
    free_port,
    render_config,
    server_command,
)

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def private_vhost(tag: str) -> Iterator[str]:
    vhost = f"cb-bench-{tag}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        with contextlib.suppress(Exception):
            _rabbitmqctl("delete_vhost", vhost)


@contextlib.contextmanager
def private_database(admin_url: str, tag: str) -> Iterator[str]:
    name = f"cb_bench_{tag}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _named(names: tuple[str, ...]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in names:
                    pids.append(int(entry.name))
    return pids


def cpu_snapshot(servers: list[tuple[str, Server]]) -> dict[str, float]:
    """CPU seconds so far by role: cinderblock processes, this benchmark client, and the
    PostgreSQL and RabbitMQ servers (all of their processes: run on a quiet machine)."""
    out: dict[str, float] = {}
    for role, server in servers:
        out[role] = out.get(role, 0.0) + _cpu_seconds(server.proc.pid)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["client"] = usage.ru_utime + usage.ru_stime
    out["postgresql"] = sum(_cpu_seconds(pid) for pid in _named(("postgres",)))
    out["rabbitmq"] = sum(_cpu_seconds(pid) for pid in _named(("beam.smp",)))
    return out


def print_cpu(before: dict[str, float], after: dict[str, float], volumes: int | None) -> None:
    heading = "\nCPU seconds during the benchmark"
    print(heading + (f" (and per volume, {volumes} volumes)" if volumes else ""))
    total = 0.0
    for role in after:
        used = after[role] - before.get(role, 0.0)
        total += used
        per = f"  {used / volumes * 1000:8.2f} ms/volume" if volumes else ""
        print(f"  {role:<12}{used:8.2f} s{per}")
    per = f"  {total / volumes * 1000:8.2f} ms/volume" if volumes else ""
    print(f"  {'total':<12}{total:8.2f} s{per}")


def wait_pool(base: str, project: str, pool: str, timeout: float) -> bool:
    """Until GET /scheduler-stats/get_pools lists `pool` (the scheduler has its stats)."""
    deadline = time.monotonic() + timeout
    headers = {"X-Auth-Token": f"admin:{project}"}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            resp = httpx.get(
                f"{base}/v3/{project}/scheduler-stats/get_pools", headers=headers, timeout=2
            )
            if pool in {p["name"] for p in resp.json().get("pools", [])}:
                return True
        time.sleep(0.2)
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Start a throwaway distributed cinderblock (PostgreSQL + RabbitMQ, "
        "separate api/scheduler/volume processes) and run api_bench against it.",
        formatter_class=api_bench.HelpFormatter,
    )
    parser.add_argument("--driver", choices=DRIVERS, default="memory", help="volume_driver")
    parser.add_argument("--project", help="project id to use (default: a random hex id)")
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL admin URL")
    parser.add_argument(
        "--scheduler-processes", type=int, default=1, help="cinderblock scheduler count"
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="cinderblock api count; more than one share the port (--reuse-port)",
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=60.0, help="seconds to wait for readiness"
    )
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep the temporary directory (config, logs)"
    )
    parser.add_argument(
        "--server-command",
        help="command that runs the cinderblock CLI, e.g. 'python -m cinderblock.cli.main' "
        "(default: the cinderblock console script); to compare two checkouts",
    )
    api_bench.add_bench_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        api_bench.params_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    project = args.project or uuid.uuid4().hex
    tag = uuid.uuid4().hex[:10]
    workdir = Path(tempfile.mkdtemp(prefix="cinderblock-dist-bench-"))
    (workdir / "volumes").mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prefix, env = server_command(args.server_command)
    status = api_bench.EXIT_FAILED
    servers: list[Server] = []
    with (
        private_vhost(tag) as transport_url,
        private_database(args.pg, tag) as db_url,
    ):
        config = workdir / "cinderblock.conf"
        config.write_text(
            render_config(
                workdir,
                port,
                args.driver,
                [("DEFAULT", "transport_url", transport_url), ("database", "connection", db_url)],
            ),
            encoding="utf-8",
        )
        subprocess.run(
            [*prefix, "--config", str(config), "db", "upgrade"],
            check=True,
            capture_output=True,
            env=env or None,
            timeout=120,
        )
        roles = [
            "volume",
            *["scheduler"] * args.scheduler_processes,
            *["api"] * args.api_processes,
        ]
        try:
            for i, role in enumerate(roles):
                argv_role = [*prefix, role, "--config", str(config), "--no-migrate"]
                if role == "api" and args.api_processes > 1:
                    argv_role.append("--reuse-port")
                print(f"starting: {shlex.join(argv_role)}")
                logdir = workdir / f"{i}-{role}"
                logdir.mkdir()
                servers.append(Server(argv_role, env, logdir))
            started = time.perf_counter()
            problem = None
            for server in servers[-args.api_processes :]:  # each answers, or exits
                problem = problem or server.wait_ready(f"{base}/", args.startup_timeout)
            pool = f"bench-host@{BACKEND}#{BACKEND}"
            if problem is None and not wait_pool(base, project, pool, args.startup_timeout):
                problem = f"the scheduler never reported {pool}"
            if problem is not None:
                for server in servers:
                    server.print_logs(f"distributed cinderblock failed to start: {problem}")
                status = EXIT_SERVER_FAILED
                return status
            print(f"ready on {base} after {time.perf_counter() - started:.2f}s")
            extra = {
                "distributed": {
                    "driver": args.driver,
                    "roles": roles,
                    "config": config.read_text(encoding="utf-8"),
                }
            }
            roles_running = list(zip(roles, servers, strict=True))
            before = cpu_snapshot(roles_running)
            status = api_bench.execute(args, f"{base}/v3", project, extra=extra)
            # Per volume only when the run made exactly that many volumes and nothing else.
            only_creates = args.keep and args.scenarios == "create_throughput"
            volumes = args.throughput_n if only_creates else None
            print_cpu(before, cpu_snapshot(roles_running), volumes)
            if status != api_bench.EXIT_OK:
                for server in servers:
                    server.print_logs(f"benchmark status {status}; log tail")
            return status
        finally:
            for server in reversed(servers):
                server.stop()
            if args.keep_tmp or status != api_bench.EXIT_OK:
                print(f"kept {workdir} (config, logs)")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
