"""Manage existing storage through the real clients, unchanged, against a cinderblock process.

Foreign raw files are written straight into the file backend's directory
(`file_volumes_dir`, see support.write_config), sparse, with a data pattern at a
few offsets. Each client then lists them, adopts them as volumes / snapshots and
gives them back:

* `cinder` shell: `manageable-list` / `snapshot-manageable-list` (3.8+ only: at 3.0
  the shell has no such commands), `manage`, `unmanage`, `snapshot-manage`,
  `snapshot-unmanage`. `manage` always POSTs to the legacy /os-volume-manage
  (cinderclient's manager knows no other path), `snapshot-manage` to
  /os-snapshot-manage.
* cinderclient Python API: `volumes.list_manageable` (/manageable_volumes at 3.8+,
  /os-volume-manage below), `volumes.manage`, `volumes.unmanage`, and the same on
  `volume_snapshots`.
* openstacksdk: `manageable_volumes`, `manageable_snapshots`, `manage_volume`,
  `unmanage_volume`, `manage_snapshot`, `unmanage_snapshot`.
* `openstack`: `block storage volume|snapshot manageable list`,
  `volume create --remote-source ... --host ...`, `volume delete --remote`,
  `volume snapshot create --remote-source ...`, `volume snapshot delete --remote`.

Client quirks found on the way (the same against Cinder, whose schemas and
routes the server follows):

* openstacksdk's ManageableVolume / ManageableSnapshot resources carry no
  microversion, so the sdk sends no OpenStack-API-Version header and the
  3.8 routes answer 404 unless the connection has a default microversion
  (`block_storage_default_microversion`; `openstack --os-volume-api-version 3.8`).
* Those resources have no id: a page that is exactly `limit` long makes the sdk
  ask again with the same (absent) marker and give up with "Endless pagination
  loop detected". `paginated=False` (or no `limit`) avoids it.
* `openstack volume create --remote-source` sends `"bootable": null` unless
  `--bootable` or `--non-bootable` is given, which the manage schema refuses (400).

The listings are capped at osapi_max_limit (5) entries with no "next" link, and
the directory is shared with the other e2e tests, so the tests walk them page by
page with `marker` (the last reference) in reference order.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import openstack
import pytest
from cinderclient import exceptions as cinder_exceptions
from openstack import exceptions as sdk_exceptions

from .support import (
    MAX_LIMIT,
    CinderCLI,
    OpenStackCLI,
    Server,
    make_cinderclient,
    parse_properties,
    unique,
    wait_deleted,
    wait_for,
    wait_resource,
)

# [DEFAULT] host = e2ehost, backend section [files] (support.write_config).
FILE_HOST = "e2ehost@files"
GiB = 1 << 30
BLOCK = 4096
SDK_WAIT = {"interval": 0.2, "wait": 60}

Entry = dict[str, Any]


# ---------------------------------------------------------------------------
# foreign files


def volumes_dir(server: Server) -> Path:
    """The file backend's directory: `file_volumes_dir` as support.write_config sets it."""
    return server.config.parent / "volumes"


@dataclass
class Foreign:
    """A sparse file put into the backend directory by hand, with a known pattern.

    Distinct 4 KiB blocks are written at the start, at 1 GiB (when the file is
    larger) and at the very end; everything else is a hole.
    """

    directory: Path
    name: str
    size: int

    @property
    def offsets(self) -> list[int]:
        return sorted({0, *([GiB] if self.size > GiB + BLOCK else []), self.size - BLOCK})

    def block(self, offset: int) -> bytes:
        digest = hashlib.sha256(f"{self.name}:{offset}".encode()).digest()
        return digest * (BLOCK // len(digest))

    def write(self) -> Foreign:
        with (self.directory / self.name).open("xb") as f:
            f.truncate(self.size)
            for offset in self.offsets:
                f.seek(offset)
                f.write(self.block(offset))
        return self

    def assert_data(self, name: str | None = None, size: int | None = None) -> None:
        """The pattern (and a hole) read back from the file now called `name`."""
        path = self.directory / (name or self.name)
        with path.open("rb") as f:
            for offset in self.offsets:
                f.seek(offset)
                assert f.read(BLOCK) == self.block(offset), f"{path} differs at {offset}"
            f.seek(BLOCK)
            assert f.read(BLOCK) == bytes(BLOCK), f"{path}: the hole at {BLOCK} is not zero"
        if size is not None:
            assert path.stat().st_size == size


@dataclass
class Leftovers:
    """What a test made: volumes deleted and files removed at teardown if still there."""

    directory: Path
    volumes: list[str]
    files: list[str]


@pytest.fixture
def leftovers(e2e_server: Server, project_id: str) -> Iterator[Leftovers]:
    found = Leftovers(volumes_dir(e2e_server), [], [])
    yield found
    cinder = make_cinderclient(e2e_server, project_id)
    for volume_id in found.volumes:
        with contextlib.suppress(Exception):
            cinder.volumes.delete(volume_id, cascade=True)
            wait_deleted(cinder.volumes, volume_id)
    for name in found.files:
        for path in found.directory.glob(f"{glob_escape(name)}*"):
            path.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


@pytest.fixture
def foreign(leftovers: Leftovers) -> Callable[..., Foreign]:
    """foreign(size, name=None) -> a new foreign file (named e2e-foreign-<hex> by default)."""

    def make(size: int, name: str | None = None) -> Foreign:
        name = name or unique("e2e-foreign")
        leftovers.files.append(name)
        return Foreign(leftovers.directory, name, size).write()

    return make


def not_raw(leftovers: Leftovers) -> str:
    """A qcow2-looking file (magic + version 3): listed unsafe, refused by manage."""
    name = unique("e2e-qcow2")
    leftovers.files.append(name)
    path = leftovers.directory / name
    path.write_bytes(b"QFI\xfb\x00\x00\x00\x03")
    os.truncate(path, 1 << 20)
    return name


# ---------------------------------------------------------------------------
# listings: every client's pages, walked the same way


def walk(page: Callable[[dict[str, str] | None], list[Entry]], *wanted: str) -> dict[str, Entry]:
    """Entries by source-name in listing order, page after page (marker = last
    reference), until every wanted name was seen (if any) or a short page ends it."""
    seen: dict[str, Entry] = {}
    marker = None
    while True:
        entries = page(marker)
        assert len(entries) <= MAX_LIMIT
        for entry in entries:
            seen[entry["reference"]["source-name"]] = entry
        if (wanted and set(wanted) <= seen.keys()) or len(entries) < MAX_LIMIT:
            return seen
        marker = entries[-1]["reference"]


def cli_listing(
    cli: CinderCLI, *wanted: str, snapshots: bool = False, detailed: bool = True
) -> dict[str, Entry]:
    command = "snapshot-manageable-list" if snapshots else "manageable-list"

    def page(marker: dict[str, str] | None) -> list[Entry]:
        args = ["--sort", "reference:asc", "--detailed", str(detailed).lower()]
        if marker is not None:
            args += ["--marker", json.dumps(marker)]
        rows = cli.table(command, *args, FILE_HOST, version="3.8")
        for row in rows:
            row["reference"] = ast.literal_eval(row["reference"])
            if "source_reference" in row:
                row["source_reference"] = ast.literal_eval(row["source_reference"])
        return rows

    return walk(page, *wanted)


def api_listing(
    manager: Any, *wanted: str, detailed: bool = True, sort: str = "reference:asc"
) -> dict[str, Entry]:
    def page(marker: dict[str, str] | None) -> list[Entry]:
        return [
            item._info
            for item in manager.list_manageable(
                FILE_HOST,
                detailed=detailed,
                marker=json.dumps(marker) if marker else None,
                sort=sort,
            )
        ]

    return walk(page, *wanted)


def sdk_listing(listing: Callable[..., Any], *wanted: str) -> dict[str, Entry]:
    def page(marker: dict[str, str] | None) -> list[Entry]:
        query = {"marker": json.dumps(marker)} if marker else {}
        return [
            item.to_dict(computed=False)
            for item in listing(details=True, host=FILE_HOST, sort="reference:asc", **query)
        ]

    return walk(page, *wanted)


def osc_listing(osc: OpenStackCLI, *wanted: str, snapshots: bool = False) -> dict[str, Entry]:
    kind = "snapshot" if snapshots else "volume"

    def page(marker: dict[str, str] | None) -> list[Entry]:
        args = ["--sort", "reference:asc"] + (["--marker", json.dumps(marker)] if marker else [])
        return osc.json(
            "block", "storage", kind, "manageable", "list", FILE_HOST, "--long", *args,
            version="3.8",
        )  # fmt: skip

    return walk(page, *wanted)


# ---------------------------------------------------------------------------
# helpers


def cli_requests(debug_stderr: str) -> list[tuple[str, str, str]]:
    """(method, path, OpenStack-API-Version or "none") of the requests in `cinder --debug`."""
    found = []
    for line in debug_stderr.splitlines():
        match = re.match(r"REQ: curl -g -i -X (\w+) \"?http://[^/]+(\S*?)\"? ", line)
        if match:
            version = re.search(r'OpenStack-API-Version: volume ([0-9.]+)"', line)
            found.append((match.group(1), match.group(2), version.group(1) if version else "none"))
    return found


def cli_wait_gone(cli: CinderCLI, show: str, ident: str) -> None:
    """Until `cinder show|snapshot-show ident` says there is no such thing."""
    missing = "No volume with" if show == "show" else "No snapshot with"

    def probe() -> bool:
        result = cli.run(show, ident, check=False)
        return result.returncode == 1 and missing in result.stderr

    wait_for(f"{ident} to be gone", probe, interval=0.3)


def cli_messages(cli: CinderCLI, resource: str) -> list[dict[str, str]]:
    return [
        row for row in cli.table("message-list", version="3.3") if row["Resource UUID"] == resource
    ]


@pytest.fixture
def sdk38(e2e_server: Server, project_id: str) -> Iterator[Any]:
    """support.sdk_connect plus block_storage_default_microversion="3.8" (what OSC's
    --os-volume-api-version sets): the sdk's manageable listings need it."""
    conn = openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": e2e_server.project_endpoint(project_id), "token": f"admin:{project_id}"},
        block_storage_api_version="3",
        block_storage_default_microversion="3.8",
        load_yaml_config=False,
        load_envvars=False,
    )
    yield conn
    conn.close()


def assert_safe(entry: Entry, size: int, *, detailed: bool = True) -> None:
    assert entry["size"] in (size, str(size))
    assert entry["safe_to_manage"] in (True, "True")
    if detailed:
        assert entry["reason_not_safe"] in (None, "-")
        assert entry["cinder_id"] in (None, "-")


def assert_managed_by(entry: Entry, cinder_id: str) -> None:
    assert entry["safe_to_manage"] in (False, "False")
    assert entry["reason_not_safe"] == "already managed"
    assert entry["cinder_id"] == cinder_id


# ---------------------------------------------------------------------------
# cinder shell


def test_cli_manageable_list(
    cinder_cli: CinderCLI, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    big = foreign(GiB + GiB // 2)
    small = foreign(GiB // 2 + 1)
    qcow2 = not_raw(leftovers)
    snapshot_file = foreign(GiB // 4, name=f"{big.name}@old")

    listed = cli_listing(cinder_cli, big.name, small.name, qcow2)
    assert_safe(listed[big.name], 2)  # 1.5 GiB, rounded up
    assert_safe(listed[small.name], 1)
    assert listed[big.name]["extra_info"] == "-"
    assert listed[qcow2]["safe_to_manage"] == "False"
    assert listed[qcow2]["reason_not_safe"] == "file is qcow2, not raw"
    assert ast.literal_eval(listed[qcow2]["extra_info"]) == {"reason_code": "not_raw"}
    # Snapshot files ('@') are not volumes.
    assert snapshot_file.name not in cli_listing(cinder_cli, snapshot_file.name)

    brief = cli_listing(cinder_cli, big.name, detailed=False)
    assert set(brief[big.name]) == {"reference", "size", "safe_to_manage"}
    assert_safe(brief[big.name], 2, detailed=False)

    snapshots = cli_listing(cinder_cli, snapshot_file.name, snapshots=True)
    entry = snapshots[snapshot_file.name]
    assert_safe(entry, 1)
    assert entry["source_reference"] == {"source-name": big.name}

    # --limit below the cap, --offset after the marker, default order (reference:desc).
    rows = cinder_cli.table("manageable-list", "--limit", "3", FILE_HOST, version="3.8")
    names = [ast.literal_eval(row["reference"])["source-name"] for row in rows]
    assert len(names) == 3
    assert names == sorted(names, reverse=True)
    [after] = cinder_cli.table(
        "manageable-list", "--limit", "1", "--offset", "1",
        "--marker", json.dumps({"source-name": names[0]}), FILE_HOST, version="3.8",
    )  # fmt: skip
    assert after == rows[2]  # the one right after the marker skipped

    # Before 3.8 the shell has no listing commands at all.
    result = cinder_cli.run("manageable-list", FILE_HOST, version="3.0", check=False)
    assert result.returncode == 2
    assert "invalid choice: 'manageable-list'" in result.stderr
    # Bad sort keys and unknown hosts are the server's 400 / 404.
    result = cinder_cli.run(
        "manageable-list", "--sort", "created_at", FILE_HOST, version="3.8", check=False
    )
    assert result.returncode == 1
    assert "Invalid sort keys passed: created_at (HTTP 400)" in result.stderr
    result = cinder_cli.run("manageable-list", "e2ehost@nowhere", version="3.8", check=False)
    assert result.returncode == 1
    assert "(HTTP 404)" in result.stderr


def test_cli_manage_and_unmanage_volume(
    cinder_cli: CinderCLI,
    foreign: Callable[..., Foreign],
    leftovers: Leftovers,
    volume_type_factory: Callable[..., Any],
) -> None:
    volume_type = volume_type_factory(backend="files")
    original = foreign(GiB + GiB // 2)
    name = unique("cli-managed")
    shown = cinder_cli.properties(
        "manage", FILE_HOST, original.name, "--id-type", "source-name", "--name", name,
        "--volume-type", volume_type.name, "--description", "adopted", "--metadata", "k=v",
    )  # fmt: skip
    volume_id = shown["id"]
    leftovers.volumes.append(volume_id)
    assert shown["name"] == name
    assert shown["status"] in ("creating", "available")  # "managing" is shown as "creating"

    volume = cinder_cli.wait_volume(volume_id)
    assert volume["size"] == "2"  # 1.5 GiB rounded up
    assert volume["volume_type"] == volume_type.name
    assert volume["description"] == "adopted"
    metadata = {r["Metadata-property"]: r["Value"] for r in cinder_cli.table("metadata-show", name)}
    assert metadata == {"k": "v"}
    assert volume["os-vol-host-attr:host"].startswith(FILE_HOST)
    assert volume["provider_id"] == original.name
    assert cinder_cli.table("list", "--name", name)[0]["Status"] == "available"

    # The file now carries the volume's name, grown to whole GiB, with its data.
    assert not (original.directory / original.name).exists()
    original.assert_data(f"volume-{volume_id}", size=2 * GiB)
    listed = cli_listing(cinder_cli, f"volume-{volume_id}")
    assert_managed_by(listed[f"volume-{volume_id}"], volume_id)
    assert original.name not in listed

    # Managing what already is a volume is refused up front.
    result = cinder_cli.run("manage", FILE_HOST, f"volume-{volume_id}", check=False)
    assert result.returncode == 1
    assert "already managed (HTTP 400)" in result.stderr

    cinder_cli.run("unmanage", name)
    cli_wait_gone(cinder_cli, "show", volume_id)
    original.assert_data(size=2 * GiB)
    assert not (original.directory / f"volume-{volume_id}").exists()
    assert_safe(cli_listing(cinder_cli, original.name)[original.name], 2)


def test_cli_manage_and_unmanage_snapshot(
    cinder_cli: CinderCLI, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    base = foreign(GiB)
    # A snapshot file sits next to its volume file as <volume file>@<name>.
    old = foreign(GiB // 2, name=f"{base.name}@old")

    volume_id = cinder_cli.properties("manage", FILE_HOST, base.name, "--name", unique("cli"))["id"]
    leftovers.volumes.append(volume_id)
    cinder_cli.wait_volume(volume_id)
    # The volume file took its snapshot files along.
    volume_file = f"volume-{volume_id}"
    old.assert_data(f"{volume_file}@old")
    assert not (base.directory / old.name).exists()

    listed = cli_listing(cinder_cli, f"{volume_file}@old", snapshots=True)
    entry = listed[f"{volume_file}@old"]
    assert_safe(entry, 1)
    assert entry["source_reference"] == {"source-name": volume_file}

    snap_name = unique("cli-snap")
    shown = cinder_cli.properties(
        "snapshot-manage", volume_id, f"{volume_file}@old", "--id-type", "source-name",
        "--name", snap_name, "--description", "adopted", "--metadata", "s=1",
    )  # fmt: skip
    snapshot_id = shown["id"]
    assert shown["volume_id"] == volume_id
    assert shown["status"] in ("creating", "available")
    snapshot = cinder_cli.wait_snapshot(snapshot_id)
    assert snapshot["size"] == "1"
    assert snapshot["name"] == snap_name
    assert ast.literal_eval(snapshot["metadata"]) == {"s": "1"}
    managed_file = f"{volume_file}@snapshot-{snapshot_id}"
    old.assert_data(managed_file, size=GiB)
    assert_managed_by(
        cli_listing(cinder_cli, managed_file, snapshots=True)[managed_file], snapshot_id
    )

    # A volume with snapshots cannot be unmanaged.
    result = cinder_cli.run("unmanage", volume_id, check=False)
    assert result.returncode == 1
    assert "(HTTP 400)" in result.stderr

    cinder_cli.run("snapshot-unmanage", snap_name)
    cli_wait_gone(cinder_cli, "snapshot-show", snapshot_id)
    old.assert_data(f"{volume_file}@old", size=GiB)

    cinder_cli.run("unmanage", volume_id)
    cli_wait_gone(cinder_cli, "show", volume_id)
    base.assert_data()
    old.assert_data()  # the snapshot file went back with its volume file


def test_cli_legacy_paths_at_3_0(
    cinder_cli: CinderCLI, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    base = foreign(GiB // 2)
    result = cinder_cli.run("--debug", "manage", FILE_HOST, base.name, version="3.0")
    assert ("POST", "/v3/os-volume-manage", "none") in cli_requests(result.stderr)
    volume_id = parse_properties(result.stdout)["id"]
    leftovers.volumes.append(volume_id)
    assert cinder_cli.wait_volume(volume_id)["size"] == "1"

    snap = foreign(GiB // 2, name=f"volume-{volume_id}@legacy")
    result = cinder_cli.run("--debug", "snapshot-manage", volume_id, snap.name, version="3.0")
    assert ("POST", "/v3/os-snapshot-manage", "none") in cli_requests(result.stderr)
    snapshot_id = parse_properties(result.stdout)["id"]
    cinder_cli.wait_snapshot(snapshot_id)

    cinder_cli.run("snapshot-unmanage", snapshot_id, version="3.0")
    cli_wait_gone(cinder_cli, "snapshot-show", snapshot_id)
    snap.assert_data()
    result = cinder_cli.run("--debug", "unmanage", volume_id, version="3.0")
    assert ("POST", f"/v3/volumes/{volume_id}/action", "none") in cli_requests(result.stderr)
    cli_wait_gone(cinder_cli, "show", volume_id)
    base.assert_data(size=GiB)
    snap.assert_data(f"{base.name}@legacy")


def test_cli_bad_references(
    cinder_cli: CinderCLI, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    missing = unique("e2e-missing")
    volume_id = cinder_cli.properties("manage", FILE_HOST, missing, "--name", "bad")["id"]
    leftovers.volumes.append(volume_id)
    cinder_cli.wait_volume(volume_id, "error")
    [message] = wait_for("a user message", lambda: cli_messages(cinder_cli, volume_id))
    assert message["Resource Type"] == "VOLUME"
    assert message["User Message"] == (
        "manage existing volume: The reference does not name a usable backend object: "
        f"no file named '{missing}' in the volumes directory"
    )

    # Not raw: refused by the volume service; deleting the failed volume keeps the file.
    qcow2 = not_raw(leftovers)
    volume_id = cinder_cli.properties("manage", FILE_HOST, qcow2)["id"]
    leftovers.volumes.append(volume_id)
    cinder_cli.wait_volume(volume_id, "error")
    [message] = wait_for("a user message", lambda: cli_messages(cinder_cli, volume_id))
    assert f"'{qcow2}' is qcow2, not raw" in message["User Message"]
    cinder_cli.run("delete", volume_id)
    cli_wait_gone(cinder_cli, "show", volume_id)
    assert (leftovers.directory / qcow2).read_bytes()[:4] == b"QFI\xfb"

    # Names that leave the directory end the same way, before anything is touched.
    volume_id = cinder_cli.properties("manage", FILE_HOST, "../cinderblock.conf")["id"]
    leftovers.volumes.append(volume_id)
    cinder_cli.wait_volume(volume_id, "error")
    [message] = wait_for("a user message", lambda: cli_messages(cinder_cli, volume_id))
    assert message["User Message"].endswith("'..' is not allowed")

    # Refused synchronously: an unknown host or volume type, a member instead of an admin.
    target = foreign(GiB // 2)
    for args, expected in (
        (["e2ehost@nowhere", target.name], "Host 'e2ehost@nowhere' not found (HTTP 400)"),
        (
            [FILE_HOST, target.name, "--volume-type", "no-such-type"],
            "Cannot find requested 'no-such-type' volume type (HTTP 400)",
        ),
    ):
        result = cinder_cli.run("manage", *args, check=False)
        assert result.returncode == 1
        assert expected in result.stderr
    member = CinderCLI(cinder_cli.endpoint, cinder_cli.project, user="demo")
    result = member.run("manage", FILE_HOST, target.name, check=False)
    assert result.returncode == 1
    assert "Policy doesn't allow volume_extension:volume_manage" in result.stderr
    result = member.run("manageable-list", FILE_HOST, version="3.8", check=False)
    assert result.returncode == 1
    assert "(HTTP 403)" in result.stderr
    target.assert_data()


# ---------------------------------------------------------------------------
# cinderclient Python API


def test_api_list_manageable(
    cinderclient: Any,
    e2e_server: Server,
    project_id: str,
    foreign: Callable[..., Foreign],
) -> None:
    files = [foreign(size) for size in (3 * GiB, GiB + 1, GiB // 2)]
    names = [f.name for f in files]
    listed = api_listing(cinderclient.volumes, *names)
    for f, size in zip(files, (3, 2, 1), strict=True):
        assert_safe(listed[f.name], size)
        assert listed[f.name]["extra_info"] is None

    brief = api_listing(cinderclient.volumes, *names, detailed=False)
    assert set(brief[names[0]]) == {"reference", "size", "safe_to_manage"}

    # Sorted by size (ties by reference), walked page by page with the marker.
    by_size = api_listing(cinderclient.volumes, sort="size:asc,reference:asc")
    sizes = [entry["size"] for entry in by_size.values()]
    assert sizes == sorted(sizes)
    assert [name for name in by_size if name in names] == names[::-1]
    by_size = api_listing(cinderclient.volumes, sort="size:desc")
    assert [name for name in by_size if name in names] == names
    # limit is honoured below the cap and capped above it.
    assert len(cinderclient.volumes.list_manageable(FILE_HOST, limit=2)) == 2
    assert len(cinderclient.volumes.list_manageable(FILE_HOST, limit=100)) <= MAX_LIMIT
    with pytest.raises(cinder_exceptions.BadRequest, match="marker not found"):
        cinderclient.volumes.list_manageable(FILE_HOST, marker='{"source-name": "nope"}')

    # 3.0: the same listing through the legacy /os-volume-manage path.
    legacy = make_cinderclient(e2e_server, project_id, version="3.0")
    legacy_listed = api_listing(legacy.volumes, *names)
    for name in names:
        assert legacy_listed[name] == listed[name]


def test_api_manage_unmanage_volume_and_snapshot(
    cinderclient: Any,
    foreign: Callable[..., Foreign],
    leftovers: Leftovers,
    volume_type_factory: Callable[..., Any],
) -> None:
    volume_type = volume_type_factory(backend="files")
    original = foreign(GiB + GiB // 2)
    created = cinderclient.volumes.manage(
        FILE_HOST,
        {"source-name": original.name},
        name="api-managed",
        description="adopted",
        volume_type=volume_type.name,
        metadata={"k": "v"},
        bootable=True,
    )
    leftovers.volumes.append(created.id)
    assert created.status == "creating"  # the 202 body: "managing" shown as "creating"
    assert created.size == 0
    volume = wait_resource(cinderclient.volumes, created.id)
    assert volume.size == 2
    assert volume.bootable == "true"
    assert volume.volume_type == volume_type.name
    assert volume.metadata == {"k": "v"}
    assert getattr(volume, "os-vol-host-attr:host").startswith(FILE_HOST)
    volume_file = f"volume-{volume.id}"
    original.assert_data(volume_file, size=2 * GiB)

    # A snapshot file written next to the managed volume's file.
    snap = foreign(GiB // 2, name=f"{volume_file}@{uuid.uuid4().hex[:8]}")
    entry = api_listing(cinderclient.volume_snapshots, snap.name)[snap.name]
    assert_safe(entry, 1)
    assert entry["source_reference"] == {"source-name": volume_file}
    snapshot = cinderclient.volume_snapshots.manage(
        volume.id, {"source-name": snap.name}, name="api-snap", metadata={"s": "1"}
    )
    snapshot = wait_resource(cinderclient.volume_snapshots, snapshot.id)
    assert snapshot.size == 1
    assert snapshot.metadata == {"s": "1"}
    managed_file = f"{volume_file}@snapshot-{snapshot.id}"
    snap.assert_data(managed_file, size=GiB)
    assert_managed_by(
        api_listing(cinderclient.volume_snapshots, managed_file)[managed_file], snapshot.id
    )

    cinderclient.volume_snapshots.unmanage(snapshot)
    wait_deleted(cinderclient.volume_snapshots, snapshot.id)
    snap.assert_data()
    cinderclient.volumes.unmanage(volume)
    wait_deleted(cinderclient.volumes, volume.id)
    with pytest.raises(cinder_exceptions.NotFound) as caught:
        cinderclient.volumes.get(volume.id)
    assert caught.value.code == 404
    original.assert_data(size=2 * GiB)
    snap.assert_data(f"{original.name}@{snap.name.split('@')[1]}")

    # Given back, the file can be adopted again; a volume deleted (not unmanaged) takes
    # its file with it. (Without its snapshot file: see the busy test below.)
    (original.directory / f"{original.name}@{snap.name.split('@')[1]}").unlink()
    again = wait_resource(
        cinderclient.volumes,
        cinderclient.volumes.manage(FILE_HOST, {"source-name": original.name}).id,
    )
    leftovers.volumes.append(again.id)
    original.assert_data(f"volume-{again.id}")
    cinderclient.volumes.delete(again, cascade=True)
    wait_deleted(cinderclient.volumes, again.id)
    assert not (original.directory / f"volume-{again.id}").exists()
    assert not (original.directory / original.name).exists()


def test_api_legacy_client_at_3_0(
    e2e_server: Server, project_id: str, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    legacy = make_cinderclient(e2e_server, project_id, version="3.0")
    base = foreign(GiB // 2)
    assert_safe(api_listing(legacy.volumes, base.name)[base.name], 1)
    volume = wait_resource(
        legacy.volumes, legacy.volumes.manage(FILE_HOST, {"source-name": base.name}).id
    )
    leftovers.volumes.append(volume.id)
    snap = foreign(GiB // 2, name=f"volume-{volume.id}@legacy")
    entry = api_listing(legacy.volume_snapshots, snap.name)[snap.name]
    assert entry["source_reference"] == {"source-name": f"volume-{volume.id}"}
    snapshot = legacy.volume_snapshots.manage(volume.id, {"source-name": snap.name})
    wait_resource(legacy.volume_snapshots, snapshot.id)
    legacy.volume_snapshots.unmanage(snapshot)
    wait_deleted(legacy.volume_snapshots, snapshot.id)
    legacy.volumes.unmanage(volume)
    wait_deleted(legacy.volumes, volume.id)
    base.assert_data(size=GiB)
    snap.assert_data(f"{base.name}@legacy")


def test_api_bad_reference(
    cinderclient: Any, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    missing = unique("e2e-missing")
    created = cinderclient.volumes.manage(FILE_HOST, {"source-name": missing})
    leftovers.volumes.append(created.id)
    wait_resource(cinderclient.volumes, created.id, "error")
    [message] = wait_for(
        "a user message",
        lambda: [m for m in cinderclient.messages.list() if m.resource_uuid == created.id],
    )
    assert f"no file named '{missing}'" in message.user_message

    # A snapshot reference that is not a snapshot file of that volume.
    base = foreign(GiB // 2)
    volume = wait_resource(
        cinderclient.volumes,
        cinderclient.volumes.manage(FILE_HOST, {"source-name": base.name}).id,
    )
    leftovers.volumes.append(volume.id)
    other = foreign(GiB // 2, name=f"{unique('e2e-other')}@snap")
    snapshot = cinderclient.volume_snapshots.manage(volume.id, {"source-name": other.name})
    wait_resource(cinderclient.volume_snapshots, snapshot.id, "error")
    [message] = wait_for(
        "a user message",
        lambda: [m for m in cinderclient.messages.list() if m.resource_uuid == snapshot.id],
    )
    assert f"'{other.name}' is not a snapshot file of volume file" in message.user_message
    other.assert_data()

    with pytest.raises(cinder_exceptions.BadRequest, match="already managed"):
        cinderclient.volumes.manage(FILE_HOST, {"source-name": f"volume-{volume.id}"})
    with pytest.raises(cinder_exceptions.BadRequest, match="Cannot find requested 'nope'"):
        cinderclient.volumes.manage(FILE_HOST, {"source-name": missing}, volume_type="nope")


def test_api_delete_refused_for_busy_volume_keeps_it_available(
    cinderclient: Any, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    base = foreign(GiB // 2)
    keep = foreign(GiB // 2, name=f"{base.name}@keep")
    volume = wait_resource(
        cinderclient.volumes,
        cinderclient.volumes.manage(FILE_HOST, {"source-name": base.name}).id,
    )
    leftovers.volumes.append(volume.id)
    volume_file = f"volume-{volume.id}"
    leftovers.files.append(volume_file)
    try:
        cinderclient.volumes.delete(volume)
        # Cinder: VolumeIsBusy -> "Unable to delete busy volume", status back to available.
        settled = wait_for(
            "the delete to settle",
            lambda: (v := cinderclient.volumes.get(volume.id)).status != "deleting" and v,
        )
        assert settled.status == "available"
        base.assert_data(volume_file)
        keep.assert_data(f"{volume_file}@keep")
    finally:
        (leftovers.directory / f"{volume_file}@keep").unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            cinderclient.volumes.reset_state(volume, "available")


# ---------------------------------------------------------------------------
# openstacksdk


def test_sdk_manage_unmanage(
    sdk38: Any, foreign: Callable[..., Foreign], leftovers: Leftovers
) -> None:
    bs = sdk38.block_storage
    original = foreign(GiB + GiB // 2)
    entry = sdk_listing(bs.manageable_volumes, original.name)[original.name]
    assert_safe(entry, 2)

    created = bs.manage_volume(
        host=FILE_HOST, ref={"source-name": original.name}, name="sdk-managed", bootable=False
    )
    leftovers.volumes.append(created.id)
    assert created.status == "creating"
    volume = bs.wait_for_status(created, status="available", failures=["error"], **SDK_WAIT)
    assert volume.size == 2
    assert volume.name == "sdk-managed"
    assert volume.host.startswith(FILE_HOST)
    volume_file = f"volume-{volume.id}"
    original.assert_data(volume_file, size=2 * GiB)
    assert_managed_by(sdk_listing(bs.manageable_volumes, volume_file)[volume_file], volume.id)

    snap = foreign(GiB // 2, name=f"{volume_file}@sdk")
    entry = sdk_listing(bs.manageable_snapshots, snap.name)[snap.name]
    assert_safe(entry, 1)
    assert entry["source_reference"] == {"source-name": volume_file}
    snapshot = bs.manage_snapshot(
        volume_id=volume.id, ref={"source-name": snap.name}, name="sdk-snap"
    )
    snapshot = bs.wait_for_status(snapshot, status="available", failures=["error"], **SDK_WAIT)
    assert snapshot.size == 1
    snap.assert_data(f"{volume_file}@snapshot-{snapshot.id}")

    bs.unmanage_snapshot(snapshot)
    bs.wait_for_delete(snapshot, **SDK_WAIT)
    snap.assert_data()
    bs.unmanage_volume(volume)
    bs.wait_for_delete(volume, **SDK_WAIT)
    with pytest.raises(sdk_exceptions.NotFoundException):
        bs.get_volume(volume.id)
    original.assert_data(size=2 * GiB)
    snap.assert_data(f"{original.name}@sdk")


def test_sdk_manageable_listing_quirks(
    sdk: Any, sdk38: Any, foreign: Callable[..., Foreign]
) -> None:
    for _ in range(2):
        foreign(GiB // 2)
    # No default microversion: the sdk sends no version header, and the 3.8 route
    # does not exist at 3.0 (as in Cinder).
    with pytest.raises(sdk_exceptions.NotFoundException):
        list(sdk.block_storage.manageable_volumes(host=FILE_HOST))

    bs = sdk38.block_storage
    # Entries have no id: a full page makes the sdk ask for the same page again.
    with pytest.raises(sdk_exceptions.SDKException, match="Endless pagination loop"):
        list(bs.manageable_volumes(host=FILE_HOST, limit=2))
    assert len(list(bs.manageable_volumes(host=FILE_HOST, limit=2, paginated=False))) == 2
    assert len(list(islice(bs.manageable_volumes(host=FILE_HOST, limit=2), 2))) == 2


# ---------------------------------------------------------------------------
# openstack (python-openstackclient)


def _osc_wait(osc: OpenStackCLI, kind: list[str], ident: str, status: str = "available") -> Entry:
    def probe() -> Entry | None:
        shown = osc.json(*kind, "show", ident)
        if shown["status"] == "error":
            raise AssertionError(f"{ident} went to error: {shown}")
        return shown if shown["status"] == status else None

    return wait_for(f"{ident} to be {status}", probe, interval=0.3)


def _osc_wait_gone(osc: OpenStackCLI, kind: list[str], ident: str) -> None:
    wait_for(
        f"{ident} to be gone",
        lambda: osc.run(*kind, "show", ident, check=False).returncode == 1,
        interval=0.3,
    )


def test_osc_manage_unmanage(
    osc: OpenStackCLI,
    foreign: Callable[..., Foreign],
    leftovers: Leftovers,
    volume_type_factory: Callable[..., Any],
) -> None:
    volume_type = volume_type_factory(backend="files")
    original = foreign(GiB + GiB // 2)
    entry = osc_listing(osc, original.name)[original.name]
    assert_safe(entry, 2)

    name = unique("osc-managed")
    manage = [
        "volume", "create", "--remote-source", f"source-name={original.name}",
        "--host", FILE_HOST, "--type", volume_type.name, name,
    ]  # fmt: skip
    # Without --bootable/--non-bootable OSC sends "bootable": null, which the schema refuses.
    result = osc.run(*manage, check=False)
    assert result.returncode == 1
    assert "400" in result.stderr
    assert "field/attribute bootable. Value: None" in result.stderr

    created = osc.json(*manage, "--non-bootable")
    leftovers.volumes.append(created["id"])
    assert created["status"] == "creating"
    volume = _osc_wait(osc, ["volume"], name)
    assert volume["size"] == 2
    assert volume["type"] == volume_type.name
    volume_file = f"volume-{volume['id']}"
    original.assert_data(volume_file, size=2 * GiB)
    assert_managed_by(osc_listing(osc, volume_file)[volume_file], volume["id"])

    snap = foreign(GiB // 2, name=f"{volume_file}@osc")
    entry = osc_listing(osc, snap.name, snapshots=True)[snap.name]
    assert_safe(entry, 1)
    assert entry["source_reference"] == {"source-name": volume_file}
    snap_name = unique("osc-snap")
    osc.json(
        "volume", "snapshot", "create", "--volume", name,
        "--remote-source", f"source-name={snap.name}", snap_name,
    )  # fmt: skip
    snapshot = _osc_wait(osc, ["volume", "snapshot"], snap_name)
    assert snapshot["size"] == 1
    snap.assert_data(f"{volume_file}@snapshot-{snapshot['id']}")

    osc.run("volume", "snapshot", "delete", "--remote", snap_name)
    _osc_wait_gone(osc, ["volume", "snapshot"], snapshot["id"])
    snap.assert_data()
    osc.run("volume", "delete", "--remote", name)
    _osc_wait_gone(osc, ["volume"], volume["id"])
    original.assert_data(size=2 * GiB)
    snap.assert_data(f"{original.name}@osc")


def test_osc_manageable_list_needs_an_api_version(osc: OpenStackCLI) -> None:
    # OSC's own 3.8 check passes (the server offers 3.71), but the sdk request then goes
    # out without a version header and the server (like Cinder) answers 404.
    result = osc.run("block", "storage", "volume", "manageable", "list", FILE_HOST, check=False)
    assert result.returncode == 1
    assert "404" in result.stderr
    result = osc.run(
        "block", "storage", "volume", "manageable", "list", FILE_HOST, version="3.0", check=False
    )
    assert result.returncode == 1
    assert "--os-volume-api-version 3.8 or greater is required" in result.stderr
