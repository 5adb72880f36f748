#!/usr/bin/env python3
"""File driver manage benchmark: manageable listing pages and manage latency, on the driver.

Prints figures; it is not a test. For each object count it fills a temporary
backend directory with sparse foreign files and measures, directly on the
FileDriver (no API, no database):

* ``first_page``: get_manageable_volumes(limit=100, sort reference desc), the
  page the API asks for by default, on a quiet directory (unchanged for more
  than 2 s, so the driver reuses the names it read: the usual case);
* ``first_page_cold``: the same, but the names are read from the directory on
  every run (a directory that changed in the last 2 s);
* ``middle_page`` / ``middle_page_cold``: the same with a marker in the middle;
* ``size_page``: first page sorted by size desc (every file must be stat-ed);
* ``manage``: manage_existing_get_size + manage_existing of one file, as the
  volume manager calls them (includes the qemu-img probe when installed);
* ``proc_scan``: one scan of /proc/*/fd (the in-use check), for reference.

    .venv/bin/python bench/manage_bench.py [--counts 1000,10000] [--runs 30] [--json out.json]

See bench/README.md for the meaning of every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cinderblock.drivers.config import BackendConfig  # noqa: E402
from cinderblock.drivers.file import inuse, manage  # noqa: E402
from cinderblock.drivers.file.driver import FileDriver  # noqa: E402
from cinderblock.drivers.refs import GiB, VolumeRef  # noqa: E402

PAGE = 100
SCENARIOS = (
    "first_page",
    "first_page_cold",
    "middle_page",
    "middle_page_cold",
    "size_page",
    "manage",
)


def summarize(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    p95_index = max(0, min(len(ms) - 1, round(0.95 * len(ms)) - 1))  # nearest rank
    return {
        "runs": len(ms),
        "mean_ms": statistics.fmean(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[p95_index],
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


def timed(fn: Callable[[], Any], runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def fill(directory: Path, count: int) -> list[str]:
    """`count` sparse files of 1..4 GiB + 1 byte (so sizes round up); only metadata is written."""
    names = [f"legacy-{i:06d}.img" for i in range(count)]
    base = os.fsencode(directory) + b"/"
    for i, name in enumerate(names):
        fd = os.open(base + name.encode(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
        os.ftruncate(fd, (i % 4) * GiB + 1)
        os.close(fd)
    return names


def make_driver(directory: Path) -> FileDriver:
    config = BackendConfig(
        name="bench",
        volume_driver="file",
        volume_backend_name="bench",
        options={"file_volumes_dir": str(directory)},
    )
    driver = FileDriver(config, "bench@file")
    driver.do_setup()
    driver.check_for_setup_error()
    return driver


def bench_count(base: Path, count: int, runs: int) -> dict[str, Any]:
    directory = base / f"volumes-{count}"
    directory.mkdir()
    start = time.perf_counter()
    names = fill(directory, count)
    fill_s = time.perf_counter() - start
    driver = make_driver(directory)
    ordered = sorted(names, reverse=True)

    def page(marker: dict[str, str] | None, keys: list[str]) -> None:
        entries = driver.get_manageable_volumes(
            cinder_volumes=[],
            marker=marker,
            limit=PAGE,
            offset=0,
            sort_keys=keys,
            sort_dirs=["desc"],
        )
        if len(entries) != PAGE or not all(e["safe_to_manage"] for e in entries):
            raise SystemExit(f"unexpected page: {len(entries)} entries")

    def cold_page(marker: dict[str, str] | None) -> None:
        driver.name_cache = manage.NameCache()  # forget the names: read the directory
        page(marker, ["reference"])

    first = driver.get_manageable_volumes([], None, PAGE, 0, ["reference"], ["desc"])
    if [e["reference"]["source-name"] for e in first] != ordered[:PAGE]:
        raise SystemExit("first page is not the expected one")
    middle = {"source-name": ordered[count // 2]}
    result: dict[str, Any] = {"count": count, "fill_s": round(fill_s, 3)}
    result["first_page_cold"] = summarize(timed(lambda: cold_page(None), runs))
    result["middle_page_cold"] = summarize(timed(lambda: cold_page(middle), runs))
    # A quiet directory: its last change is more than NameCache.MIN_AGE_NS old.
    quiet_at = os.stat(directory).st_mtime_ns + manage.NameCache.MIN_AGE_NS + 10**8
    time.sleep(max(0.0, (quiet_at - time.time_ns()) / 1e9))
    reads = driver.name_cache.reads
    result["first_page"] = summarize(timed(lambda: page(None, ["reference"]), runs))
    result["middle_page"] = summarize(timed(lambda: page(middle, ["reference"]), runs))
    result["size_page"] = summarize(timed(lambda: page(None, ["size"]), runs))
    result["directory_reads_when_quiet"] = driver.name_cache.reads - reads

    # manage: each run adopts another file (the manager calls get_size, then manage).
    victims = iter(names[: runs + 3])
    counter = iter(range(10**9))

    def manage_one() -> None:
        name = next(victims)
        vol = VolumeRef(id=f"bench-{next(counter)}", size=1)
        ref = {"source-name": name}
        size = driver.manage_existing_get_size(vol, ref)
        vol = VolumeRef(id=vol.id, size=size)
        driver.manage_existing(vol, ref)

    result["manage"] = summarize(timed(manage_one, runs))
    shutil.rmtree(directory)
    return result


def proc_figures(runs: int) -> dict[str, Any]:
    pids = [p for p in os.listdir(inuse.PROC) if p.isdigit()] if os.path.isdir(inuse.PROC) else []
    fds = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"{inuse.PROC}/{pid}/fd"))
    return {
        "processes": len(pids),
        "fds": fds,
        "scan": summarize(timed(inuse.open_file_ids, runs)),
    }


def print_report(results: list[dict[str, Any]], proc: dict[str, Any], runs: int) -> None:
    print(f"file driver manage benchmark ({runs} runs each, page of {PAGE}, times in ms)")
    print(
        f"qemu-img: {'yes' if shutil.which('qemu-img') else 'no'}; /proc: "
        f"{proc['processes']} processes, {proc['fds']} open fds visible"
    )
    header = f"{'scenario':<18}{'objects':>8}{'mean':>9}{'p50':>9}{'p95':>9}{'min':>9}{'max':>9}"
    print(header)
    print("-" * len(header))
    for res in results:
        for scenario in SCENARIOS:
            f = res[scenario]
            print(
                f"{scenario:<18}{res['count']:>8}{f['mean_ms']:>9.2f}{f['p50_ms']:>9.2f}"
                f"{f['p95_ms']:>9.2f}{f['min_ms']:>9.2f}{f['max_ms']:>9.2f}"
            )
    f = proc["scan"]
    print(
        f"{'proc_scan':<18}{'-':>8}{f['mean_ms']:>9.2f}{f['p50_ms']:>9.2f}"
        f"{f['p95_ms']:>9.2f}{f['min_ms']:>9.2f}{f['max_ms']:>9.2f}"
    )
    for res in results:
        print(
            f"({res['count']} objects: filling took {res['fill_s']:.2f} s; directory reads "
            f"during the quiet runs: {res['directory_reads_when_quiet']})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,10000", help="object counts, comma separated")
    parser.add_argument("--runs", type=int, default=30, help="measured runs per figure")
    parser.add_argument("--dir", default=None, help="where to create the temp backend dirs")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    if any(c < 2 * PAGE for c in counts) or args.runs < 1:
        parser.error(f"counts must be at least {2 * PAGE} and runs at least 1")
    with tempfile.TemporaryDirectory(prefix="manage-bench-", dir=args.dir) as tmp:
        results = [bench_count(Path(tmp), count, args.runs) for count in counts]
    proc = proc_figures(args.runs)
    print_report(results, proc, args.runs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"runs": args.runs, "page": PAGE, "results": results, "proc": proc}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
