"""`cinderblock manage`: list and bulk-adopt existing storage through the API.

    cinderblock manage list  --host node1@file-1 [--snapshots]
    cinderblock manage adopt --host node1@file-1 (--all-safe | --pattern 'legacy-*' |
                             --from-file names.txt) [--type T] [--yes] [--dry-run]

`adopt` shows its plan first, then adopts one object at a time with a progress
line and a result per object. Running it again after a partial failure carries
on: adopted objects are no longer offered (they were renamed, or are reported
as already managed), so only what is left is tried.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx

DEFAULT_ENDPOINT = "http://127.0.0.1:8776/v3"
MICROVERSION = "3.8"


class ApiError(Exception):
    pass


class Client:
    def __init__(self, endpoint: str, project: str, user: str, timeout: float = 60) -> None:
        self.base = f"{endpoint.rstrip('/')}/{project}"
        self.http = httpx.Client(
            timeout=timeout,
            headers={
                "X-Auth-Token": f"{user}:{project}",
                "OpenStack-API-Version": f"volume {MICROVERSION}",
                "Accept": "application/json",
            },
        )

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                fault = next(iter(resp.json().values()))
                message = fault.get("message", resp.text)
            except Exception:
                message = resp.text
            raise ApiError(f"{resp.status_code}: {message}")
        return resp.json() if resp.content else None

    def manageable(self, host: str, snapshots: bool) -> Iterator[dict[str, Any]]:
        """Every manageable entry of a host, page by page (ordered by reference)."""
        kind = "snapshots" if snapshots else "volumes"
        marker = None
        while True:
            params: dict[str, Any] = {"host": host, "limit": 500, "sort": "reference:asc"}
            if marker is not None:
                params["marker"] = json.dumps(marker)
            body = self._check(
                self.http.get(f"{self.base}/manageable_{kind}/detail", params=params)
            )
            page = body[f"manageable-{kind}"]
            yield from page
            if len(page) < 500:
                return
            marker = page[-1]["reference"]

    def manage_volume(self, host: str, name: str, volume_type: str | None) -> str:
        body: dict[str, Any] = {"host": host, "ref": {"source-name": name}, "name": name}
        if volume_type:
            body["volume_type"] = volume_type
        return self._check(
            self.http.post(f"{self.base}/manageable_volumes", json={"volume": body})
        )["volume"]["id"]

    def wait(self, volume_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = self._check(self.http.get(f"{self.base}/volumes/{volume_id}"))["volume"][
                "status"
            ]
            if status in ("available", "error"):
                return status
            if time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    def why_failed(self, volume_id: str) -> str:
        resp = self.http.get(
            f"{self.base}/messages",
            params={"resource_uuid": volume_id},
            headers={"OpenStack-API-Version": "volume 3.3"},
        )
        messages = self._check(resp).get("messages") or []
        return messages[0]["user_message"] if messages else "no reason recorded"


def _name(entry: dict[str, Any]) -> str:
    ref = entry.get("reference") or {}
    return str(ref.get("source-name", ref.get("source-id", "?")))


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def cmd_list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    rows = [("REFERENCE", "SIZE_GB", "SAFE", "REASON", "CINDER_ID")]
    for entry in client.manageable(args.host, args.snapshots):
        rows.append(
            (
                _name(entry),
                str(entry.get("size")),
                "yes" if entry.get("safe_to_manage") else "no",
                entry.get("reason_not_safe") or "",
                entry.get("cinder_id") or "",
            )
        )
    _table(rows, out)
    out.write(f"{len(rows) - 1} object(s) on {args.host}\n")
    return 0


def _select(entries: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    safe = [e for e in entries if e.get("safe_to_manage")]
    if args.all_safe:
        return safe
    if args.pattern:
        return [e for e in safe if fnmatch.fnmatchcase(_name(e), args.pattern)]
    wanted = [
        line.strip()
        for line in Path(args.from_file).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    by_name = {_name(e): e for e in safe}
    return [by_name[n] for n in wanted if n in by_name]


def _progress(done: int, total: int, out: TextIO) -> None:
    width = 30
    filled = width * done // max(total, 1)
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    out.flush()


def cmd_adopt(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    entries = list(client.manageable(args.host, snapshots=False))
    chosen = _select(entries, args)
    skipped = [e for e in entries if not e.get("safe_to_manage")]
    out.write(
        f"plan for {args.host}: adopt {len(chosen)} object(s)"
        f" ({len(skipped)} not safe to manage, left alone)\n"
    )
    if chosen:
        _table(
            [("REFERENCE", "SIZE_GB", "ACTION")]
            + [(_name(e), str(e.get("size")), "adopt") for e in chosen],
            out,
        )
    if not chosen or args.dry_run:
        return 0
    if not args.yes:
        out.write("proceed? [y/N] ")
        out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            out.write("nothing done\n")
            return 1
    results: list[tuple[str, str, str]] = []
    for index, entry in enumerate(chosen):
        _progress(index, len(chosen), out)
        name = _name(entry)
        try:
            volume_id = client.manage_volume(args.host, name, args.type)
            status = client.wait(volume_id, args.timeout)
            detail = volume_id if status == "available" else client.why_failed(volume_id)
            results.append((name, "adopted" if status == "available" else status, detail))
        except ApiError as err:
            results.append((name, "refused", str(err)))
    _progress(len(chosen), len(chosen), out)
    out.write("\n")
    _table([("REFERENCE", "RESULT", "DETAIL"), *results], out)
    failed = sum(1 for _, result, _ in results if result != "adopted")
    out.write(f"{len(results) - failed} adopted, {failed} failed\n")
    return 1 if failed else 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("manage", help="list and adopt existing storage on a backend")
    parser.add_argument(
        "--endpoint", default=os.environ.get("CINDERBLOCK_ENDPOINT", DEFAULT_ENDPOINT)
    )
    parser.add_argument("--project", default=os.environ.get("OS_PROJECT_ID"))
    parser.add_argument("--user", default=os.environ.get("OS_USER_ID", "admin"))
    manage_sub = parser.add_subparsers(dest="manage_command", required=True)
    listing = manage_sub.add_parser("list", help="table of manageable objects")
    listing.add_argument("--host", required=True, help="host@backend")
    listing.add_argument("--snapshots", action="store_true")
    listing.set_defaults(func=run, action=cmd_list)
    adopt = manage_sub.add_parser("adopt", help="adopt many objects, plan first")
    adopt.add_argument("--host", required=True, help="host@backend")
    which = adopt.add_mutually_exclusive_group(required=True)
    which.add_argument("--all-safe", action="store_true", help="every object safe to manage")
    which.add_argument("--pattern", help="shell pattern on the object name")
    which.add_argument("--from-file", help="file with one object name per line")
    adopt.add_argument("--type", help="volume type for the adopted volumes")
    adopt.add_argument("--yes", action="store_true", help="do not ask before adopting")
    adopt.add_argument("--dry-run", action="store_true", help="show the plan only")
    adopt.add_argument("--timeout", type=float, default=300.0, help="seconds per object")
    adopt.set_defaults(func=run, action=cmd_adopt)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    if not args.project:
        print("cinderblock manage: --project (or OS_PROJECT_ID) is required", file=sys.stderr)
        return 2
    client = Client(args.endpoint, args.project, args.user)
    try:
        return int(args.action(client, args, out or sys.stdout))
    except (ApiError, httpx.HTTPError, OSError) as err:
        print(f"cinderblock manage: {err}", file=sys.stderr)
        return 1
