#!/usr/bin/env python3
"""Run bench/api_bench.py against a cinderblock server started just for the run.

Starts ``cinderblock serve --config <tmp>/cinderblock.conf`` in a subprocess on a free
127.0.0.1 port (sqlite database and volume files in a temporary directory, noauth), waits
until it answers ``GET /``, runs the benchmark, then stops the server.

    python bench/embedded.py --driver memory
    python bench/embedded.py --driver file --scenarios create_latency,show --json out.json

Every api_bench option except --endpoint is accepted (see --help).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

import api_bench

REPO = Path(__file__).resolve().parent.parent
BACKEND = "b1"
DRIVERS = ("memory", "file")
EXIT_SERVER_FAILED = 3
_LOG_TAIL_LINES = 200


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_config(
    workdir: Path, port: int, driver: str, overrides: Sequence[tuple[str, str, str]] = ()
) -> str:
    """The cinder.conf-style INI text; overrides are (section, key, value) set or added."""
    sections: dict[str, dict[str, str]] = {
        "DEFAULT": {
            "host": "bench-host",
            "enabled_backends": BACKEND,
            "bind_host": "127.0.0.1",
            "bind_port": str(port),
            "auth_strategy": "noauth",
            # The scenarios make 1,000+ volumes in one project; quotas are not measured.
            "quota_volumes": "-1",
            "quota_snapshots": "-1",
            "quota_gigabytes": "-1",
        },
        "database": {"connection": f"sqlite:///{workdir / 'cinderblock.sqlite'}"},
        BACKEND: {
            "volume_driver": driver,
            "volume_backend_name": BACKEND,
            "file_volumes_dir": str(workdir / "volumes"),
        },
    }
    for section, key, value in overrides:
        sections.setdefault(section, {})[key] = value
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
        lines.append("")
    return "\n".join(lines)


def server_command(override: str | None) -> tuple[list[str], dict[str, str]]:
    """argv prefix that runs the cinderblock CLI (``serve --config ...`` is appended) and
    extra environment for it.

    Order: --server-command; the ``cinderblock`` console script next to this Python (same
    virtualenv); the repository's .venv; ``cinderblock`` on PATH; else
    ``python -m cinderblock.cli.main`` with the repository's src/ on PYTHONPATH.
    """
    if override:
        return shlex.split(override), {}
    candidates = [
        Path(sys.executable).parent / "cinderblock",
        REPO / ".venv" / "bin" / "cinderblock",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)], {}
    found = shutil.which("cinderblock")
    if found:
        return [found], {}
    pythonpath = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    return [sys.executable, "-m", "cinderblock.cli.main"], {"PYTHONPATH": pythonpath}


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


class Server:
    """The cinderblock subprocess: its own session, output to files in the work dir."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.argv = argv
        self.stdout_path = workdir / "server.stdout.log"
        self.stderr_path = workdir / "server.stderr.log"
        self._stdout = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            start_new_session=True,  # our own process group: stop() reaches any workers too
        )

    def wait_ready(self, url: str, timeout: float) -> str | None:
        """Poll GET url until any answer below 500; returns None, or why it never came."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            code = self.proc.poll()
            if code is not None:
                return f"server exited with status {code} before answering GET {url}"
            try:
                resp = httpx.get(url, timeout=1.0)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 500:
                    return None
                last = f"HTTP {resp.status_code}"
            if time.monotonic() >= deadline:
                return f"server did not answer GET {url} within {timeout:.0f} s (last: {last})"
            time.sleep(0.1)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM the server's process group, SIGKILL after `grace` s; returns its status."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"server ignored SIGTERM for {grace:.0f} s; killing it", file=sys.stderr)
                self._signal(signal.SIGKILL)
                self.proc.wait()
        else:
            # The leader is gone; make sure nothing it started lingers in its group.
            self._signal(signal.SIGTERM)
        self._stdout.close()
        self._stderr.close()
        return self.proc.returncode

    def _signal(self, sig: signal.Signals) -> None:
        # The group id is the server's pid (start_new_session), i.e. only what we started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def print_logs(self, header: str) -> None:
        print(f"\n{header}", file=sys.stderr)
        print(f"--- server command: {shlex.join(self.argv)}", file=sys.stderr)
        print(f"--- server stderr ({self.stderr_path}):", file=sys.stderr)
        print(_tail(self.stderr_path), file=sys.stderr)
        out = _tail(self.stdout_path)
        if out != "(empty)":
            print(f"--- server stdout ({self.stdout_path}):", file=sys.stderr)
            print(out, file=sys.stderr)
        print("---", file=sys.stderr)


def _parse_set(values: Sequence[str]) -> list[tuple[str, str, str]]:
    result = []
    for item in values:
        target, sep, value = item.partition("=")
        section, dot, key = target.rpartition(".")
        if not sep or not dot or not section or not key:
            raise ValueError(f"--set wants SECTION.KEY=VALUE, got {item!r}")
        result.append((section, key, value))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Start a throwaway cinderblock server and run api_bench against it.",
        formatter_class=api_bench.HelpFormatter,
    )
    parser.add_argument("--driver", choices=DRIVERS, required=True, help="volume_driver of b1")
    parser.add_argument("--project", help="project id to use (default: a random hex id)")
    parser.add_argument(
        "--server-command",
        help="command that runs the cinderblock CLI, e.g. 'python -m cinderblock.cli.main' "
        "('serve --config PATH' is appended; default: the cinderblock console script)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra config option (repeatable), e.g. --set DEFAULT.debug=true",
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=30.0, help="seconds to wait for GET /"
    )
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep the temporary directory (config, db, logs)"
    )
    api_bench.add_bench_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        api_bench.params_from_args(args)
        overrides = _parse_set(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    project = args.project or uuid.uuid4().hex

    workdir = Path(tempfile.mkdtemp(prefix="cinderblock-bench-"))
    (workdir / "volumes").mkdir()
    port = free_port()
    config_path = workdir / "cinderblock.conf"
    config_path.write_text(render_config(workdir, port, args.driver, overrides), encoding="utf-8")
    prefix, env = server_command(args.server_command)
    argv_server = [*prefix, "serve", "--config", str(config_path)]
    base = f"http://127.0.0.1:{port}"
    print(f"starting: {shlex.join(argv_server)}  (driver={args.driver}, work dir {workdir})")

    status = api_bench.EXIT_FAILED
    server: Server | None = None
    try:
        try:
            server = Server(argv_server, env, workdir)
        except OSError as exc:
            print(f"cannot start the server ({shlex.join(argv_server)}): {exc}", file=sys.stderr)
            return EXIT_SERVER_FAILED
        started = time.perf_counter()
        problem = server.wait_ready(f"{base}/", args.startup_timeout)
        if problem is not None:
            server.stop()
            server.print_logs(f"cinderblock failed to start: {problem}")
            status = EXIT_SERVER_FAILED
            return status
        print(f"server ready on {base} after {time.perf_counter() - started:.2f}s")
        extra = {
            "embedded": {
                "driver": args.driver,
                "server_command": argv_server,
                "config": config_path.read_text(encoding="utf-8"),
            }
        }
        status = api_bench.execute(args, f"{base}/v3", project, extra=extra)
        if status != api_bench.EXIT_OK and server.proc.poll() is not None:
            server.print_logs(f"the server died during the run (status {server.proc.returncode})")
        elif status == api_bench.EXIT_FAILED:
            server.print_logs("benchmark failed; server log tail")
        return status
    finally:
        if server is not None:
            code = server.stop()
            if code not in (0, -signal.SIGTERM, None) and status == api_bench.EXIT_OK:
                print(f"note: server exited with status {code}", file=sys.stderr)
        if args.keep_tmp or status != api_bench.EXIT_OK:
            print(f"kept {workdir} (config, database, server logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
