"""Crash safety: `kill -9` a busy `cinderblock serve` again and again, then check the result.

One `cinderblock serve` (file backend in a temporary directory, SQLite) runs as a
subprocess. Several client threads, each in a project of its own, drive a mixed
workload through the HTTP API: create, snapshot, volume from snapshot, clone of
a volume, extend, manage of pre-seeded foreign files (some with foreign snapshot
files beside them), manage of those snapshot files, unmanage of both, delete.
The main thread kills the service with SIGKILL at random moments and restarts
it; the clients notice, wait until it answers and carry on from what the API
then shows. The last kill comes with the stop signal, so the final start-up
has interrupted work to recover too.

Every random choice (kill delays, operations, their targets) comes from RNGs
seeded with CINDERBLOCK_CRASH_SEED, so a failing run can be replayed (the
timing of the kills relative to the work still varies from machine to machine).

After the final restart and a settle time, the checks are:
- no volume or snapshot row in a transitional status, no manage claim left;
- no file in the backend directory that no row knows, other than the seeded
  foreign files still unmanaged (and their foreign snapshot files), no temp file;
- no row whose file is missing (volumes available/in-use/error_extending,
  snapshots available), no volume file smaller than its recorded size;
- data: each volume got a known pattern written into its file when it became
  available; every such volume still has it, every snapshot holds what its
  volume held when it was taken, volumes made from a snapshot or another
  volume held their source's data, each seeded file's data is where the
  database says (or its deletion was asked for);
- `cinderblock audit` run against the same config reports only the foreign files.

The harness lives beside this file: crash_support.py (settings, statuses, data marks, the
killable service), crash_worker.py (the client threads and their workload) and
crash_checks.py (the final checks).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from .crash_checks import (
    check_final_state,
    run_audit,
    settle_database,
)
from .crash_support import (
    CYCLES,
    KILL_AFTER,
    SEED,
    SETTLE,
    WORKERS,
    Service,
)
from .crash_worker import (
    Worker,
)


def test_kill_9_under_load_leaves_a_consistent_service(tmp_path: Path) -> None:
    began = time.monotonic()
    service = Service(tmp_path)
    service.volumes_dir.mkdir()
    failures: list[str] = []
    stop = threading.Event()
    workers = [Worker(i, service, stop, failures) for i in range(WORKERS)]
    for worker in workers:
        worker.seed_files()
    kills = random.Random(SEED)
    threads = [
        threading.Thread(target=w.run, name=f"crash-worker-{w.index}", daemon=True) for w in workers
    ]
    service.start()
    try:
        for thread in threads:
            thread.start()
        delays = []
        for cycle in range(CYCLES):
            delay = kills.uniform(*KILL_AFTER)
            delays.append(delay)
            time.sleep(delay)
            if cycle == CYCLES - 1:
                stop.set()  # the last kill cuts work that only the final start-up recovers
            service.kill()
            service.start()
        for thread in threads:
            thread.join(timeout=SETTLE + 30)
            assert not thread.is_alive(), f"{thread.name} did not stop"
        settle_time = settle_database(service, failures)
        checked = check_final_state(service, workers, failures)
        expected_foreign = set()
        files = set(os.listdir(service.volumes_dir))
        for worker in workers:
            for seed in worker.seeds:
                if seed in files:
                    expected_foreign.add(seed)
            for name in files:
                if "@seedsnap-" in name:
                    expected_foreign.add(name)
        audit_output = run_audit(service, expected_foreign, failures)
    finally:
        stop.set()
        service.stop()

    ops: Counter[str] = Counter()
    interrupted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    run_checks: Counter[str] = Counter()
    for worker in workers:
        ops.update(worker.ops)
        interrupted.update(worker.interrupted)
        refused.update(worker.refused)
        run_checks.update(worker.checks)
    elapsed = time.monotonic() - began
    out = sys.stdout
    out.write(
        f"\ncrash harness: seed {SEED}, {WORKERS} workers, {CYCLES} kill -9/restart cycles "
        f"in {elapsed:.1f}s (kills after {', '.join(f'{d:.1f}' for d in delays)}s of work)\n"
    )
    out.write("  start-up times: " + ", ".join(f"{t:.2f}s" for t in service.start_times) + "\n")
    out.write(f"  final settle: {settle_time:.1f}s\n")
    out.write(f"  operations completed ({sum(ops.values())}):\n")
    for name, count in sorted(ops.items()):
        out.write(f"    {name}: {count}\n")
    out.write(f"  operations cut by a kill ({sum(interrupted.values())}):\n")
    for name, count in sorted(interrupted.items()):
        out.write(f"    {name.removeprefix('op_')}: {count}\n")
    if refused:
        out.write(f"  refused by the API: {dict(refused)}\n")
        samples: dict[str, str] = {}
        for worker in workers:
            for op, text in worker.refusal_samples.items():
                samples.setdefault(op, text)
        for op, text in sorted(samples.items()):
            out.write(f"    e.g. {op}: {text}\n")
    out.write("  checked while running:\n")
    for name, count in sorted(run_checks.items()):
        out.write(f"    {name}: {count}\n")
    out.write("  checked after the final restart:\n")
    for name, count in sorted(checked.items()):
        out.write(f"    {name}: {count}\n")
    out.write(f"  audit output:\n{audit_output}\n")
    if failures:
        out.write(f"  FAILURES ({len(failures)}):\n")
        for text in failures:
            out.write(f"    - {text}\n")
        out.write(f"  server log: {service.log}\n")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    assert not failures, "\n".join(failures[:50])
