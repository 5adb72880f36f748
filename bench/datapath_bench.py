#!/usr/bin/env python3
"""Data-path benchmark: sequential throughput through the iSCSI and NBD exports vs the file.

Prints figures; it is not a test. One file-driver volume of --size bytes
(default 1 GiB) is filled from a file of random bytes and read back, with
``qemu-img convert`` (``-S 0``: no zero detection, so every byte travels):

* ``file``:  straight to and from the volume file (the baseline);
* ``iscsi``: through the volume's tgt export, libiscsi initiator in qemu-img,
  CHAP and an initiator-name ACL exactly as the driver sets them up;
* ``nbd``:   through the volume's qemu-nbd export, qemu's NBD client.

Writes end with qemu-img's flush (SYNCHRONIZE CACHE / NBD_CMD_FLUSH /
fsync), so the write figures include getting the data to the file system.
Reads go to qemu's ``null-co`` driver, so they measure only the read side.
By default the page cache is warm for reads (the figures show protocol cost,
not the disk); ``--drop-caches`` drops it before every read (root; slows down
everything else on the machine for a moment).

Needs root, tgt (tgtd/tgtadm), qemu-utils and qemu-block-extra. A private
tgtd is started on a free control port and TCP port by the target itself
(``tgt_manage_daemon = true``) and stopped at the end.

    .venv/bin/python bench/datapath_bench.py [--size 1G] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cinderblock.drivers.config import BackendConfig  # noqa: E402
from cinderblock.drivers.file.driver import FileDriver  # noqa: E402
from cinderblock.drivers.refs import GiB, VolumeRef  # noqa: E402

MB = 1000**2
CHUNK = 64 * 1024**2
INITIATOR = "iqn.2024-01.org.cinderblock:bench"


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_control_port() -> int:
    for _ in range(100):
        port = 1000 + int.from_bytes(os.urandom(2), "big") % 31000
        show = ["tgtadm", "-C", str(port), "--op", "show", "--mode", "system"]
        if subprocess.run(show, capture_output=True, check=False).returncode != 0:
            return port
    raise RuntimeError("no free tgtd control port")


def shutdown_tgtd(control_port: int) -> None:
    """Stop our private tgtd: it ignores SIGTERM and refuses to stop while it has targets."""
    base = ["tgtadm", "-C", str(control_port)]
    show = [*base, "--lld", "iscsi", "--op", "show", "--mode", "target"]
    out = subprocess.run(show, capture_output=True, text=True, check=False).stdout
    for tid in re.findall(r"^Target (\d+):", out, re.MULTILINE):
        delete = ["--lld", "iscsi", "--op", "delete", "--mode", "target", "--force", "--tid", tid]
        subprocess.run([*base, *delete], capture_output=True, check=False)
    subprocess.run([*base, "--op", "delete", "--mode", "system"], capture_output=True, check=False)


def free_nbd_range() -> str:
    port = free_port()
    return f"{port}-{port}"


def random_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def convert(source: list[str], target: list[str]) -> float:
    """qemu-img convert source -> target (both as argv pieces); returns the seconds taken."""
    # -t writeback: qemu-img convert's default target cache mode is "unsafe", which
    # never flushes; writeback ends with a flush (fsync / SYNCHRONIZE CACHE / NBD flush).
    argv = ["qemu-img", "convert", "-S", "0", "-n", "-t", "writeback", *source, *target]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return elapsed


def sized(size: int, **protocol: Any) -> str:
    """--image-opts for the first `size` bytes of a protocol node, as raw."""
    return ",".join([f"driver=raw,size={size}", *(f"file.{k}={v}" for k, v in protocol.items())])


def file_opts(size: int, path: Path) -> str:
    return sized(size, driver="file", filename=path)


def iscsi_opts(size: int, data: dict[str, Any]) -> str:
    return sized(
        size,
        driver="iscsi",
        transport="tcp",
        portal=data["target_portal"],
        target=data["target_iqn"],
        lun=data["target_lun"],
        user=data["auth_username"],
        password=data["auth_password"],
        **{"initiator-name": INITIATOR},
    )


def nbd_opts(size: int, data: dict[str, Any]) -> str:
    return sized(
        size,
        driver="nbd",
        **{"server.type": "inet", "server.host": data["host"], "server.port": data["port"]},
        export=data["export_name"],
    )


def make_driver(volumes_dir: Path, **options: str) -> FileDriver:
    config = BackendConfig(
        "bench", "file", "bench", {"file_volumes_dir": str(volumes_dir), **options}
    )
    driver = FileDriver(config, "bench@bench")
    driver.do_setup()
    return driver


def exported(driver: FileDriver, volume: VolumeRef, connector: dict[str, Any]) -> dict[str, Any]:
    update = driver.create_export(volume, connector) or {}
    stored = VolumeRef(
        id=volume.id,
        size=volume.size,
        provider_location=volume.provider_location,
        provider_auth=update.get("provider_auth", volume.provider_auth),
    )
    data: dict[str, Any] = driver.initialize_connection(stored, connector)["data"]
    return data


def measure(
    name: str,
    runs: int,
    size: int,
    write: Callable[[], float],
    read: Callable[[], float],
    check: Callable[[], None],
    drop: bool,
) -> dict[str, Any]:
    writes, reads = [], []
    for _ in range(runs):
        writes.append(write())
        if drop:
            drop_caches()
        reads.append(read())
    check()
    row = {
        "path": name,
        "write_MBps": size / statistics.median(writes) / MB,
        "read_MBps": size / statistics.median(reads) / MB,
        "write_best_MBps": size / min(writes) / MB,
        "read_best_MBps": size / min(reads) / MB,
        "write_s": writes,
        "read_s": reads,
    }
    print(
        f"  {name:<6} write {row['write_MBps']:8.1f} MB/s (best {row['write_best_MBps']:.1f})"
        f"   read {row['read_MBps']:8.1f} MB/s (best {row['read_best_MBps']:.1f})",
        flush=True,
    )
    return row


def same_bytes(a: Path, b: Path, size: int) -> None:
    with a.open("rb") as fa, b.open("rb") as fb:
        left = size
        while left:
            n = min(CHUNK, left)
            if fa.read(n) != fb.read(n):
                raise RuntimeError(f"{b} differs from {a}")
            left -= n


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    size = args.size
    gib = -(-size // GiB)
    work = Path(tempfile.mkdtemp(prefix="cb-datapath-", dir=args.dir))
    control = free_control_port()
    rows: list[dict[str, Any]] = []
    try:
        volumes = work / "volumes"
        source = work / "source.raw"
        print(f"{size / GiB:g} GiB of random bytes in {source} ...", flush=True)
        random_file(source, size)
        src = ["--image-opts", file_opts(size, source)]
        null = ["--target-image-opts", f"driver=null-co,size={size}"]
        connector = {"initiator": INITIATOR, "ip": "127.0.0.1", "host": "bench"}

        iscsi = make_driver(
            volumes,
            target_protocol="iscsi",
            tgt_manage_daemon="true",
            tgt_control_port=str(control),
            target_port=str(free_port()),
        )
        nbd = make_driver(volumes, target_protocol="nbd", nbd_port_range=free_nbd_range())
        vol = VolumeRef(id=str(uuid.uuid4()), size=gib)
        vol = VolumeRef(
            id=vol.id,
            size=gib,
            provider_location=(iscsi.create_volume(vol) or {}).get("provider_location"),
        )
        path = Path(iscsi.local_path(vol))
        print(f"runs: {args.runs}, reads with {'cold' if args.drop_caches else 'warm'} cache")

        def check() -> None:
            same_bytes(source, path, size)

        file_target = ["--target-image-opts", file_opts(size, path)]
        file_image = ["--image-opts", file_opts(size, path)]
        rows.append(
            measure(
                "file",
                args.runs,
                size,
                lambda: convert(src, file_target),
                lambda: convert(file_image, null),
                check,
                args.drop_caches,
            )
        )

        data = exported(iscsi, vol, connector)
        target = ["--target-image-opts", iscsi_opts(size, data)]
        image = ["--image-opts", iscsi_opts(size, data)]
        try:
            rows.append(
                measure(
                    "iscsi",
                    args.runs,
                    size,
                    lambda: convert(src, target),
                    lambda: convert(image, null),
                    check,
                    args.drop_caches,
                )
            )
        finally:
            iscsi.terminate_connection(vol, connector)
            iscsi.remove_export(vol)

        data = exported(nbd, vol, connector)
        target = ["--target-image-opts", nbd_opts(size, data)]
        image = ["--image-opts", nbd_opts(size, data)]
        try:
            rows.append(
                measure(
                    "nbd",
                    args.runs,
                    size,
                    lambda: convert(src, target),
                    lambda: convert(image, null),
                    check,
                    args.drop_caches,
                )
            )
        finally:
            nbd.terminate_connection(vol, connector)
            nbd.remove_export(vol)
    finally:
        shutdown_tgtd(control)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=GiB, help="bytes, e.g. 1G (default)")
    parser.add_argument("--runs", type=int, default=3, help="runs per path; medians are shown")
    parser.add_argument("--dir", default=None, help="where the volume lives (default: $TMPDIR)")
    parser.add_argument("--drop-caches", action="store_true", help="cold page cache for reads")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    missing = [t for t in ("tgtd", "tgtadm", "qemu-img", "qemu-nbd") if not shutil.which(t)]
    if missing or os.geteuid() != 0:
        print(f"needs root and {', '.join(missing) or 'tgt, qemu-utils'}", file=sys.stderr)
        return 2
    rows = run(args)
    base = rows[0]
    print("\npath    write MB/s  read MB/s   write/file  read/file")
    for row in rows:
        print(
            f"{row['path']:<7} {row['write_MBps']:10.1f} {row['read_MBps']:10.1f}"
            f"   {row['write_MBps'] / base['write_MBps']:9.2f}"
            f"  {row['read_MBps'] / base['read_MBps']:9.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
