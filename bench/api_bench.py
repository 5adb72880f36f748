#!/usr/bin/env python3
"""Benchmark scenarios for any OpenStack Block Storage (Cinder) API v3 endpoint.

Prints latency and throughput figures; it is not a test suite. Usage and the meaning of
every figure are in bench/README.md.

    python bench/api_bench.py --endpoint http://127.0.0.1:8776/v3 --project <project id>

Programmatic use: ``run(endpoint, project, ...)`` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

import httpx

SCENARIOS: tuple[str, ...] = (
    "create_latency",
    "create_throughput",
    "list_detail_1000",
    "list_limit_100",
    "show",
    "delete_throughput",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

_BODY_LIMIT = 4000
_MICROVERSION_RE = re.compile(r"^(\d+\.\d+|latest)$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
# Statuses a volume passes through on its own; cleanup waits for them to settle.
_TRANSITIONAL = frozenset(
    {"creating", "deleting", "extending", "attaching", "detaching", "downloading", "managing"}
)
_CLEANUP_POLL_S = 0.01

T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- errors


class BenchError(Exception):
    """The benchmark cannot go on; the message says why and is shown to the user as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # run() attaches the figures gathered before the failure.
        self.partial: dict[str, Any] | None = None


class Cancelled(BenchError):
    """Another worker failed or the user interrupted; this worker stops waiting."""


class ApiError(BenchError):
    """The endpoint answered with a status the benchmark did not expect."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        shown = body
        if len(shown) > _BODY_LIMIT:
            shown = shown[:_BODY_LIMIT] + f"... [{len(body) - _BODY_LIMIT} more characters]"
        super().__init__(f"{method} {url} -> HTTP {status}\n{shown or '(empty body)'}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class BenchParams:
    """Knobs of the scenarios. The defaults are the reference settings."""

    create_n: int = 50  # create_latency: sequential creates
    throughput_n: int = 200  # create_throughput: creates in total
    concurrency: int = 20  # client threads in every concurrent phase
    list_size: int = 1000  # list_detail_1000: volumes that must exist, and the limit asked
    list_n: int = 20  # list_detail_1000: timed requests
    page_size: int = 100  # list_limit_100: the limit asked
    page_n: int = 50  # list_limit_100: timed requests per URL
    show_n: int = 200  # show: timed requests
    volume_size: int = 1  # GiB, of every volume the bench creates
    poll_sleep_ms: float = 0.0  # pause between two status polls; 0 polls back to back
    wait_timeout: float = 300.0  # s a volume may take to become available / to go away
    http_timeout: float = 60.0  # s, per HTTP request
    keep: bool = False  # leave this run's volumes behind instead of deleting them at the end
    run_id: str = ""  # volumes are named bench-<run_id>-...; random when empty

    def validate(self) -> None:
        for name in ("create_n", "throughput_n", "list_n", "page_n", "show_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("concurrency", "list_size", "page_size", "volume_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0.0 <= self.poll_sleep_ms <= 1.0:
            raise ValueError("poll_sleep_ms must be between 0 and 1 (milliseconds)")
        if self.wait_timeout <= 0 or self.http_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.run_id and not _RUN_ID_RE.match(self.run_id):
            raise ValueError("run_id must be 1-32 letters or digits")


def parse_scenarios(value: str | Iterable[str]) -> tuple[str, ...]:
    """'all' or names (comma-separated string or iterable) -> names in canonical order."""
    names = value.split(",") if isinstance(value, str) else list(value)
    wanted = {n.strip() for n in names if n.strip()}
    if not wanted:
        raise ValueError("no scenario selected")
    if "all" in wanted:
        return SCENARIOS
    unknown = sorted(wanted - set(SCENARIOS))
    if unknown:
        raise ValueError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from all, {', '.join(SCENARIOS)}"
        )
    return tuple(s for s in SCENARIOS if s in wanted)


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """q-th percentile of ascending values, linear between closest ranks (numpy's default)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Latency distribution in milliseconds (None when there are no samples)."""

    n: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    min_ms: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats:
        if not seconds:
            return cls(0, None, None, None, None, None, None)
        ms = sorted(s * 1000.0 for s in seconds)
        return cls(
            n=len(ms),
            mean_ms=sum(ms) / len(ms),
            p50_ms=percentile(ms, 50),
            p95_ms=percentile(ms, 95),
            p99_ms=percentile(ms, 99),
            max_ms=ms[-1],
            min_ms=ms[0],
        )


def sequential_rate(seconds: Sequence[float]) -> float | None:
    """Operations per second of one client doing them back to back (n / sum of latencies)."""
    total = sum(seconds)
    return len(seconds) / total if total > 0 else None


@dataclass
class Row:
    """One printed line: a latency distribution plus an optional rate and wall time."""

    name: str
    stats: Stats
    rate: float | None = None
    rate_unit: str = "ops/s"
    wall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **asdict(self.stats),
            "rate": self.rate,
            "rate_unit": self.rate_unit,
            "wall_s": self.wall_s,
            "extra": dict(self.extra),
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_row(row: Row) -> str:
    s = row.stats
    text = (
        f"{row.name:<24} n={s.n:<5d} mean={_ms(s.mean_ms):>8} p50={_ms(s.p50_ms):>8} "
        f"p95={_ms(s.p95_ms):>8} p99={_ms(s.p99_ms):>8} max={_ms(s.max_ms):>8} ms"
    )
    if row.rate is not None:
        text += f"  {row.rate:9.1f} {row.rate_unit}"
    if row.wall_s is not None:
        text += f"  wall={row.wall_s:.2f}s"
    if row.extra:
        text += "  " + " ".join(f"{k}={_fmt_extra(v)}" for k, v in row.extra.items())
    return text


def _fmt_extra(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def summary_table(rows: Sequence[Row]) -> str:
    header = ("figure", "n", "mean", "p50", "p95", "p99", "max", "rate", "unit", "wall s")
    body = [
        (
            r.name,
            str(r.stats.n),
            _ms(r.stats.mean_ms),
            _ms(r.stats.p50_ms),
            _ms(r.stats.p95_ms),
            _ms(r.stats.p99_ms),
            _ms(r.stats.max_ms),
            "-" if r.rate is None else f"{r.rate:.1f}",
            r.rate_unit if r.rate is not None else "",
            "-" if r.wall_s is None else f"{r.wall_s:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    lines = ["summary (latencies in ms)", rule, fmt(header), rule, *(fmt(b) for b in body), rule]
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class ApiSpec:
    """Where and how to reach the endpoint; connect() opens one keep-alive client."""

    base_url: str  # {endpoint}/{project}
    headers: tuple[tuple[str, str], ...]
    timeout: float

    def connect(self) -> Api:
        return Api(self)


def make_spec(
    endpoint: str, project: str, token: str, microversion: str, admin: bool, timeout: float
) -> ApiSpec:
    headers = [
        ("X-Auth-Token", token),
        ("OpenStack-API-Version", f"volume {microversion}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ]
    if admin:
        # Keystone-style role header; noauth servers that grant roles from it see an admin.
        headers.append(("X-Roles", "admin"))
    return ApiSpec(f"{endpoint.rstrip('/')}/{project}", tuple(headers), timeout)


def _json_object(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError as exc:
        raise BenchError(
            f"{resp.request.method} {resp.request.url} -> HTTP {resp.status_code} "
            f"but the body is not JSON:\n{resp.text[:_BODY_LIMIT]}"
        ) from exc
    if not isinstance(data, dict):
        raise BenchError(f"{resp.request.method} {resp.request.url}: body is not a JSON object")
    return data


def _member(resp: httpx.Response, key: str) -> dict[str, Any]:
    value = _json_object(resp).get(key)
    if not isinstance(value, dict):
        raise BenchError(
            f"{resp.request.method} {resp.request.url}: response has no {key!r} object:\n"
            f"{resp.text[:_BODY_LIMIT]}"
        )
    return value


def _volume_list(resp: httpx.Response) -> list[dict[str, Any]]:
    data = _json_object(resp)
    vols = data.get("volumes")
    if not isinstance(vols, list) or not all(isinstance(v, dict) for v in vols):
        raise BenchError(f"GET {resp.request.url}: response has no 'volumes' list")
    return vols


class Api:
    """One keep-alive HTTP client (used by one thread) and the Cinder calls the bench makes."""

    def __init__(self, spec: ApiSpec) -> None:
        self.spec = spec
        # Set by run_workers: once it is set, status waits give up (raise Cancelled).
        self.cancel: threading.Event | None = None
        self._client = httpx.Client(headers=list(spec.headers), timeout=spec.timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        also_ok: tuple[int, ...] = (),
        body: dict[str, Any] | None = None,
        params: dict[str, str | int] | None = None,
    ) -> httpx.Response:
        """Send one request; any status but 2xx (or one of also_ok) raises ApiError."""
        url = self.spec.base_url + path
        try:
            resp = self._client.request(method, url, json=body, params=params)
        except httpx.HTTPError as exc:
            raise BenchError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if not (200 <= resp.status_code < 300 or resp.status_code in also_ok):
            raise ApiError(method, str(resp.request.url), resp.status_code, resp.text)
        return resp

    def warmup(self) -> None:
        """One cheap untimed request so the timed ones find an open connection."""
        self.request("GET", "/volumes", params={"limit": 1})

    def create_volume(self, name: str, size: int) -> dict[str, Any]:
        resp = self.request("POST", "/volumes", body={"volume": {"size": size, "name": name}})
        vol = _member(resp, "volume")
        if not isinstance(vol.get("id"), str):
            raise BenchError(f"POST {resp.request.url}: created volume has no id:\n{resp.text}")
        return vol

    def show_volume(self, volume_id: str) -> dict[str, Any] | None:
        """The volume, or None once it is gone (404)."""
        resp = self.request("GET", f"/volumes/{volume_id}", also_ok=(404,))
        return None if resp.status_code == 404 else _member(resp, "volume")

    def delete_volume(self, volume_id: str) -> bool:
        """False when the volume was already gone (404)."""
        resp = self.request("DELETE", f"/volumes/{volume_id}", also_ok=(404,))
        return resp.status_code != 404

    def force_delete_volume(self, volume_id: str) -> bool:
        body: dict[str, Any] = {"os-force_delete": {}}
        resp = self.request("POST", f"/volumes/{volume_id}/action", also_ok=(404,), body=body)
        return resp.status_code != 404

    def all_volumes(self, page: int = 1000) -> list[dict[str, Any]]:
        """Every volume of the project (summary view), following markers page by page."""
        found: dict[str, dict[str, Any]] = {}
        marker: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": page}
            if marker:
                params["marker"] = marker
            resp = self.request("GET", "/volumes", params=params)
            vols = _volume_list(resp)
            links = _json_object(resp).get("volumes_links") or []
            has_next = any(isinstance(x, dict) and x.get("rel") == "next" for x in links)
            fresh = [v for v in vols if isinstance(v.get("id"), str) and v["id"] not in found]
            for v in fresh:
                found[v["id"]] = v
            # Stop on an empty page, on a short page without a next link, or when the
            # server keeps sending what we have already seen (it ignores the marker).
            if not fresh or (len(vols) < page and not has_next):
                return list(found.values())
            marker = fresh[-1]["id"]


# --------------------------------------------------------------------------- waiting


def _check_cancel(api: Api) -> None:
    if api.cancel is not None and api.cancel.is_set():
        raise Cancelled("cancelled")


def _pause(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def _describe(vol: dict[str, Any]) -> str:
    return json.dumps(vol, sort_keys=True, default=str)[:_BODY_LIMIT]


def wait_available(api: Api, vol: dict[str, Any], *, timeout: float, poll_sleep: float) -> int:
    """Poll until the volume shows 'available'; returns the number of GETs it took.

    `vol` is the volume as last seen (e.g. the POST response): if that already says
    'available' no GET is made. Any 'error*' status raises.
    """
    volume_id = vol["id"]
    deadline = time.perf_counter() + timeout
    polls = 0
    while (status := vol.get("status")) != "available":
        if isinstance(status, str) and status.startswith("error"):
            raise BenchError(
                f"volume {volume_id} went to status {status!r} instead of 'available':\n"
                f"{_describe(vol)}"
            )
        if time.perf_counter() > deadline:
            raise BenchError(
                f"volume {volume_id} is not available after {timeout:.0f} s "
                f"(last status {status!r})"
            )
        _check_cancel(api)
        _pause(poll_sleep)
        current = api.show_volume(volume_id)
        polls += 1
        if current is None:
            raise BenchError(f"volume {volume_id} vanished (404) before becoming available")
        vol = current
    return polls


def wait_gone(api: Api, volume_id: str, *, timeout: float, poll_sleep: float) -> int:
    """Poll until GET answers 404; returns the number of GETs. 'error*' statuses raise."""
    deadline = time.perf_counter() + timeout
    polls = 0
    while True:
        vol = api.show_volume(volume_id)
        polls += 1
        if vol is None:
            return polls
        status = vol.get("status")
        if isinstance(status, str) and status.startswith("error"):
            raise BenchError(
                f"volume {volume_id} went to status {status!r} while being deleted:\n"
                f"{_describe(vol)}"
            )
        if time.perf_counter() > deadline:
            raise BenchError(
                f"volume {volume_id} still exists {timeout:.0f} s after DELETE (status {status!r})"
            )
        _check_cancel(api)
        _pause(poll_sleep)


# --------------------------------------------------------------------------- concurrency


def run_workers(
    spec: ApiSpec, concurrency: int, items: Sequence[T], fn: Callable[[Api, T], R]
) -> tuple[list[R], float]:
    """Apply fn(api, item) to every item on up to `concurrency` threads.

    Each thread has its own keep-alive client and makes one untimed request before the
    clock starts. Returns the results in item order and the wall time from "every thread
    ready" to "last item done". The first failure stops the other threads (their status
    waits are cancelled) and is raised.
    """
    if not items:
        return [], 0.0
    n_threads = min(concurrency, len(items))
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(items)):
        todo.put(i)
    results: dict[int, R] = {}
    errors: list[Exception] = []
    stop = threading.Event()
    ready = threading.Barrier(n_threads + 1)

    def fail(exc: Exception) -> None:
        errors.append(exc)
        stop.set()
        ready.abort()

    def worker() -> None:
        try:
            api = spec.connect()
        except Exception as exc:
            fail(exc)
            return
        api.cancel = stop
        with api:
            try:
                api.warmup()
            except Exception as exc:
                fail(exc)
                return
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                return
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[i] = fn(api, items[i])
                except Exception as exc:
                    fail(exc)
                    return

    threads = [
        threading.Thread(target=worker, name=f"bench-worker-{k}", daemon=True)
        for k in range(n_threads)
    ]
    for t in threads:
        t.start()
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    except KeyboardInterrupt:
        # Let in-flight requests finish (a created volume gets tracked) before cleanup.
        stop.set()
        ready.abort()
        deadline = time.perf_counter() + 5.0
        for t in threads:
            t.join(max(0.0, deadline - time.perf_counter()))
        raise
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(items))], wall


# --------------------------------------------------------------------------- the bench


@dataclass(frozen=True)
class Created:
    volume_id: str
    latency_s: float  # POST start -> 'available' seen
    post_s: float  # POST round trip alone
    polls: int


@dataclass(frozen=True)
class Deleted:
    volume_id: str
    latency_s: float  # DELETE start -> 404 seen
    delete_s: float  # DELETE round trip alone
    polls: int


def _mean(values: Sequence[int]) -> float:
    return sum(values) / len(values) if values else 0.0


class Bench:
    """State of one run: settings, output and the volumes this run created."""

    def __init__(self, spec: ApiSpec, params: BenchParams, out: TextIO | None, admin: bool):
        self.spec = spec
        self.params = params
        self.out = out
        self.admin = admin
        self.prefix = f"bench-{params.run_id}-"
        self.poll_sleep = params.poll_sleep_ms / 1000.0
        self._lock = threading.Lock()
        self._created: dict[str, str] = {}  # id -> name; created by this run, not yet deleted
        self._seq = itertools.count(1)

    # -- bookkeeping -------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.out is not None:
            print(message, file=self.out, flush=True)

    def emit(self, rows: Sequence[Row]) -> None:
        for row in rows:
            self.say(format_row(row))

    def new_name(self, tag: str) -> str:
        with self._lock:
            return f"{self.prefix}{tag}-{next(self._seq):05d}"

    def track(self, volume_id: str, name: str) -> None:
        with self._lock:
            self._created[volume_id] = name

    def untrack(self, volume_id: str) -> None:
        with self._lock:
            self._created.pop(volume_id, None)

    def tracked(self) -> list[str]:
        with self._lock:
            return list(self._created)

    def run_volumes(self) -> list[str]:
        """Ids of this run's volumes that still exist: the tracked ones plus any volume of
        the project whose name carries this run's prefix (e.g. a create whose response
        was lost). Only these are ever deleted."""
        ids = self.tracked()
        seen = set(ids)
        with self.spec.connect() as api:
            for vol in api.all_volumes():
                name = vol.get("name")
                if isinstance(name, str) and name.startswith(self.prefix) and vol["id"] not in seen:
                    ids.append(vol["id"])
                    seen.add(vol["id"])
        return ids

    # -- single operations (called from worker threads) --------------------------------

    def create_one(self, api: Api, tag: str) -> Created:
        name = self.new_name(tag)
        t0 = time.perf_counter()
        vol = api.create_volume(name, self.params.volume_size)
        t_post = time.perf_counter()
        self.track(vol["id"], name)
        polls = wait_available(
            api, vol, timeout=self.params.wait_timeout, poll_sleep=self.poll_sleep
        )
        t_done = time.perf_counter()
        return Created(vol["id"], t_done - t0, t_post - t0, polls)

    def delete_one(self, api: Api, volume_id: str) -> Deleted:
        t0 = time.perf_counter()
        existed = api.delete_volume(volume_id)
        t_delete = time.perf_counter()
        polls = 0
        if existed:
            polls = wait_gone(
                api, volume_id, timeout=self.params.wait_timeout, poll_sleep=self.poll_sleep
            )
        t_done = time.perf_counter()
        self.untrack(volume_id)
        return Deleted(volume_id, t_done - t0, t_delete - t0, polls)

    def create_many(self, count: int, tag: str) -> tuple[list[Created], float]:
        return run_workers(
            self.spec,
            self.params.concurrency,
            range(count),
            lambda api, _i: self.create_one(api, tag),
        )

    def delete_many(self, volume_ids: Sequence[str]) -> tuple[list[Deleted], float]:
        return run_workers(self.spec, self.params.concurrency, volume_ids, self.delete_one)

    def cleanup_one(self, api: Api, volume_id: str) -> tuple[str, str | None]:
        """Best effort: wait out transitional states, delete (force-delete as admin when a
        plain delete is refused or fails), wait for 404. Returns (id, problem or None)."""
        timeout = self.params.wait_timeout
        try:
            deadline = time.perf_counter() + timeout
            vol = api.show_volume(volume_id)
            while vol is not None and vol.get("status") in _TRANSITIONAL - {"deleting"}:
                if time.perf_counter() > deadline:
                    return volume_id, f"stuck in status {vol.get('status')!r}"
                time.sleep(_CLEANUP_POLL_S)
                vol = api.show_volume(volume_id)
            if vol is not None and vol.get("status") != "deleting":
                try:
                    api.delete_volume(volume_id)
                except ApiError as exc:
                    if not (self.admin and exc.status in (400, 409)):
                        raise
                    api.force_delete_volume(volume_id)
            try:
                wait_gone(api, volume_id, timeout=timeout, poll_sleep=_CLEANUP_POLL_S)
            except BenchError:
                if not self.admin:
                    raise
                api.force_delete_volume(volume_id)
                wait_gone(api, volume_id, timeout=timeout, poll_sleep=_CLEANUP_POLL_S)
        except BenchError as exc:
            return volume_id, str(exc)
        self.untrack(volume_id)
        return volume_id, None

    # -- scenarios ----------------------------------------------------------------

    def create_latency(self) -> list[Row]:
        p = self.params
        created: list[Created] = []
        with self.spec.connect() as api:
            api.warmup()
            for _ in range(p.create_n):
                created.append(self.create_one(api, "lat"))
        latencies = [c.latency_s for c in created]
        posts = [c.post_s for c in created]
        rows = [
            Row(
                "create_latency",
                Stats.of(latencies),
                rate=sequential_rate(latencies),
                rate_unit="vol/s",
                extra={"mean_polls": _mean([c.polls for c in created])},
            ),
            Row("create_latency.post", Stats.of(posts), sequential_rate(posts), "req/s"),
        ]
        self.emit(rows)
        _, wall = self.delete_many([c.volume_id for c in created])
        self.say(f"  (deleted the {len(created)} volumes again, untimed: {wall:.2f}s)")
        return rows

    def create_throughput(self) -> list[Row]:
        p = self.params
        created, wall = self.create_many(p.throughput_n, "tput")
        rows = [
            Row(
                "create_throughput",
                Stats.of([c.latency_s for c in created]),
                rate=len(created) / wall,
                rate_unit="vol/s",
                wall_s=wall,
                extra={
                    "concurrency": min(p.concurrency, p.throughput_n),
                    "mean_polls": _mean([c.polls for c in created]),
                },
            ),
            Row("create_throughput.post", Stats.of([c.post_s for c in created])),
        ]
        self.emit(rows)
        return rows

    def list_detail_1000(self) -> list[Row]:
        p = self.params
        with self.spec.connect() as api:
            existing = len(api.all_volumes())
        missing = max(0, p.list_size - existing)
        self.say(f"  {existing} volumes in the project; creating {missing} more")
        if missing:
            _, fill_wall = self.create_many(missing, "fill")
            self.say(f"  (created {missing} volumes, untimed: {fill_wall:.2f}s)")
        samples: list[float] = []
        with self.spec.connect() as api:
            params: dict[str, str | int] = {"limit": p.list_size}
            last = api.request("GET", "/volumes/detail", params=params)  # untimed warm-up
            for _ in range(p.list_n):
                t0 = time.perf_counter()
                last = api.request("GET", "/volumes/detail", params=params)
                samples.append(time.perf_counter() - t0)
                got = len(_volume_list(last))
                if got != p.list_size:
                    raise BenchError(
                        f"GET {last.request.url} returned {got} volumes, expected "
                        f"{p.list_size} (at least that many exist; does the server cap the "
                        "page size lower?)"
                    )
        rows = [
            Row(
                "list_detail_1000",
                Stats.of(samples),
                rate=sequential_rate(samples),
                rate_unit="req/s",
                extra={
                    "volumes": p.list_size,
                    "body_bytes": len(last.content),
                    "wire_bytes": last.num_bytes_downloaded,
                    "encoding": last.headers.get("content-encoding", "identity"),
                },
            )
        ]
        self.emit(rows)
        return rows

    def list_limit_100(self) -> list[Row]:
        p = self.params
        rows: list[Row] = []
        with self.spec.connect() as api:
            for label, path in (("detail", "/volumes/detail"), ("summary", "/volumes")):
                params: dict[str, str | int] = {"limit": p.page_size}
                last = api.request("GET", path, params=params)  # untimed warm-up
                samples: list[float] = []
                for _ in range(p.page_n):
                    t0 = time.perf_counter()
                    last = api.request("GET", path, params=params)
                    samples.append(time.perf_counter() - t0)
                    got = len(_volume_list(last))
                    if got > p.page_size:
                        raise BenchError(
                            f"GET {last.request.url} returned {got} volumes, more than the "
                            f"limit {p.page_size}"
                        )
                row = Row(
                    f"list_limit_100.{label}",
                    Stats.of(samples),
                    rate=sequential_rate(samples),
                    rate_unit="req/s",
                    extra={"volumes": got, "body_bytes": len(last.content)},
                )
                self.emit([row])
                rows.append(row)
        return rows

    def show(self) -> list[Row]:
        p = self.params
        ids = self.tracked()
        if ids:
            volume_id = ids[0]
        else:
            self.say("  no volume of this run exists yet; creating one (untimed)")
            with self.spec.connect() as api:
                volume_id = self.create_one(api, "show").volume_id
        samples: list[float] = []
        with self.spec.connect() as api:
            path = f"/volumes/{volume_id}"
            last = api.request("GET", path)  # untimed warm-up
            for _ in range(p.show_n):
                t0 = time.perf_counter()
                last = api.request("GET", path)
                samples.append(time.perf_counter() - t0)
            shown = _member(last, "volume").get("id")
            if shown != volume_id:
                raise BenchError(f"GET {last.request.url} returned volume {shown!r}")
        rows = [
            Row(
                "show",
                Stats.of(samples),
                rate=sequential_rate(samples),
                rate_unit="req/s",
                extra={"body_bytes": len(last.content)},
            )
        ]
        self.emit(rows)
        return rows

    def delete_throughput(self) -> list[Row]:
        p = self.params
        ids = self.run_volumes()
        if not ids:
            self.say(f"  this run has no volumes left; creating {p.throughput_n} first (untimed)")
            self.create_many(p.throughput_n, "del")
            ids = self.run_volumes()
        deleted, wall = self.delete_many(ids)
        rows = [
            Row(
                "delete_throughput",
                Stats.of([d.latency_s for d in deleted]),
                rate=len(deleted) / wall,
                rate_unit="vol/s",
                wall_s=wall,
                extra={
                    "concurrency": min(p.concurrency, len(ids)),
                    "mean_polls": _mean([d.polls for d in deleted]),
                },
            ),
            Row("delete_throughput.delete", Stats.of([d.delete_s for d in deleted])),
        ]
        self.emit(rows)
        return rows

    def scenario(self, name: str) -> Callable[[], list[Row]]:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}")
        method: Callable[[], list[Row]] = getattr(self, name)
        return method

    def final_cleanup(self) -> list[str]:
        """Delete whatever this run still has; returns the ids that could not be removed."""
        try:
            ids = self.run_volumes()
        except BenchError as exc:
            reason = str(exc).splitlines()[0]
            self.say(f"  cleanup could not list volumes ({reason}); using the tracked ones")
            ids = self.tracked()
        if not ids:
            return []
        self.say(f"cleanup: deleting {len(ids)} volume(s) named {self.prefix}*")
        try:
            outcomes, wall = run_workers(self.spec, self.params.concurrency, ids, self.cleanup_one)
        except BenchError as exc:
            self.say(f"  cleanup failed: {exc}")
            return ids
        failed = [(vid, problem) for vid, problem in outcomes if problem is not None]
        for vid, problem in failed:
            self.say(f"  cleanup problem: {vid}: {problem}")
        self.say(f"  cleanup done in {wall:.2f}s; {len(failed)} volume(s) left behind")
        return [vid for vid, _ in failed]


# --------------------------------------------------------------------------- entry points


def run(
    endpoint: str,
    project: str,
    *,
    token: str | None = None,
    admin: bool = False,
    microversion: str = "3.0",
    scenarios: str | Iterable[str] = "all",
    params: BenchParams | None = None,
    out: TextIO | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run the selected scenarios against `endpoint` and return the figures.

    `overrides` are BenchParams fields (e.g. create_n=10). Progress and figures are printed
    to `out` when given (pass sys.stdout), silently gathered otherwise. Raises BenchError
    (with `.partial` holding the figures gathered so far) when a scenario fails. This
    run's volumes are deleted at the end, even on failure, unless params.keep is set.
    """
    if not project:
        raise ValueError("project must not be empty")
    if not _MICROVERSION_RE.match(microversion):
        raise ValueError(f"microversion must look like 3.0 or be 'latest', got {microversion!r}")
    params = params or BenchParams()
    known = {f.name for f in fields(BenchParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
    params = replace(params, **overrides)
    if not params.run_id:
        params = replace(params, run_id=uuid.uuid4().hex[:8])
    params.validate()
    selected = parse_scenarios(scenarios)

    spec = make_spec(
        endpoint, project, token or f"admin:{project}", microversion, admin, params.http_timeout
    )
    bench = Bench(spec, params, out, admin)
    all_rows: list[Row] = []
    result: dict[str, Any] = {
        "run_id": params.run_id,
        "name_prefix": bench.prefix,
        "endpoint": endpoint,
        "project": project,
        "microversion": microversion,
        "admin": admin,
        "scenarios_selected": list(selected),
        "params": asdict(params),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenarios": {},
        "rows": [],
    }
    bench.say(
        f"api_bench run {params.run_id}: {spec.base_url} microversion={microversion} "
        f"admin={admin} volumes={bench.prefix}*"
    )
    current = ""
    try:
        for current in selected:
            bench.say(f"== {current}")
            rows = bench.scenario(current)()
            all_rows.extend(rows)
            result["scenarios"][current] = [r.as_dict() for r in rows]
            result["rows"] = [r.as_dict() for r in all_rows]
    except BenchError as exc:
        result["failed_scenario"] = current
        result["error"] = str(exc)
        exc.partial = result
        raise
    finally:
        if params.keep:
            left = bench.tracked()
            if left:
                bench.say(f"keeping {len(left)} volume(s) named {bench.prefix}* (--keep)")
        else:
            left = bench.final_cleanup()
        result["leftover_volumes"] = left
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    bench.say("")
    bench.say(summary_table(all_rows))
    return result


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except empty ones (None, "", False, []) and on required options."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, "", False) or action.default == []:
            return action.help
        return super()._get_help_string(action)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option except --endpoint/--project (shared with bench/embedded.py)."""
    d = BenchParams()
    parser.add_argument("--token", help="X-Auth-Token, user:project (default admin:<project>)")
    parser.add_argument(
        "--admin",
        action="store_true",
        help="credentials are an admin's: also send X-Roles: admin, and let cleanup "
        "force-delete volumes a plain DELETE cannot remove",
    )
    parser.add_argument("--microversion", default="3.0", help="volume API microversion")
    parser.add_argument(
        "--scenarios", default="all", help=f"'all' or a comma list of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures there as JSON")
    g = parser.add_argument_group("scenario settings")
    g.add_argument("--create-n", type=int, default=d.create_n, help="create_latency: creates")
    g.add_argument(
        "--throughput-n", type=int, default=d.throughput_n, help="create_throughput: creates"
    )
    g.add_argument(
        "--concurrency", type=int, default=d.concurrency, help="client threads (concurrent parts)"
    )
    g.add_argument(
        "--list-size", type=int, default=d.list_size, help="list_detail_1000: volumes and limit"
    )
    g.add_argument("--list-n", type=int, default=d.list_n, help="list_detail_1000: requests")
    g.add_argument("--page-size", type=int, default=d.page_size, help="list_limit_100: limit")
    g.add_argument("--page-n", type=int, default=d.page_n, help="list_limit_100: requests per URL")
    g.add_argument("--show-n", type=int, default=d.show_n, help="show: requests")
    g.add_argument("--volume-size", type=int, default=d.volume_size, help="GiB per volume")
    g.add_argument(
        "--poll-sleep-ms",
        type=float,
        default=d.poll_sleep_ms,
        help="pause between status polls, 0..1 ms (0 = back to back)",
    )
    g.add_argument(
        "--wait-timeout",
        type=float,
        default=d.wait_timeout,
        help="seconds a volume may take to become available or to disappear",
    )
    g.add_argument(
        "--http-timeout", type=float, default=d.http_timeout, help="seconds per HTTP request"
    )
    g.add_argument("--run-id", default="", help="name volumes bench-<run-id>-* (default: random)")
    g.add_argument("--keep", action="store_true", help="do not delete this run's volumes at exit")


def params_from_args(args: argparse.Namespace) -> BenchParams:
    params = BenchParams(
        create_n=args.create_n,
        throughput_n=args.throughput_n,
        concurrency=args.concurrency,
        list_size=args.list_size,
        list_n=args.list_n,
        page_size=args.page_size,
        page_n=args.page_n,
        show_n=args.show_n,
        volume_size=args.volume_size,
        poll_sleep_ms=args.poll_sleep_ms,
        wait_timeout=args.wait_timeout,
        http_timeout=args.http_timeout,
        keep=args.keep,
        run_id=args.run_id,
    )
    params.validate()
    parse_scenarios(args.scenarios)
    if not _MICROVERSION_RE.match(args.microversion):
        raise ValueError(f"--microversion must look like 3.0 or be 'latest': {args.microversion}")
    return params


def write_json(path: str, result: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2, sort_keys=False)
        fh.write("\n")


def execute(
    args: argparse.Namespace, endpoint: str, project: str, extra: dict[str, Any] | None = None
) -> int:
    """Run from parsed options: print figures, write --json, return the exit status."""
    params = params_from_args(args)
    token = args.token or f"admin:{project}"
    _user, sep, token_project = token.partition(":")
    if sep and token_project and token_project != project:
        print(
            f"warning: token project {token_project!r} differs from --project {project!r}",
            file=sys.stderr,
        )
    result: dict[str, Any] | None = None
    status = EXIT_OK
    try:
        result = run(
            endpoint,
            project,
            token=token,
            admin=args.admin,
            microversion=args.microversion,
            scenarios=args.scenarios,
            params=params,
            out=sys.stdout,
        )
    except BenchError as exc:
        result = exc.partial
        where = f" during {result['failed_scenario']}" if result else ""
        print(f"\nbench FAILED{where}:\n{exc}", file=sys.stderr)
        status = EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result is not None and args.json:
        if extra:
            result.update(extra)
        write_json(args.json, result)
        print(f"figures written to {args.json}")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark a Cinder (Block Storage v3) compatible endpoint; prints figures.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--endpoint", required=True, help="API root without project, e.g. http://host:8776/v3"
    )
    parser.add_argument("--project", required=True, help="project id; URLs are {endpoint}/{id}/...")
    add_bench_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    return execute(args, args.endpoint, args.project)


if __name__ == "__main__":
    sys.exit(main())
