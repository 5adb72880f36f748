"""Image-level helpers of the RBD driver: names, parents, clone snapshots, flattening.

Clone and delete policy (see README, "Ceph RBD backend"):

* A clone of a volume is a copy-on-write child of a hidden snapshot of the
  source, ``.clone-<new volume id>``; a volume from a snapshot is a child of
  that snapshot (protected while it has children). When the new image would
  be deeper than rbd_max_clone_depth below its oldest ancestor (or
  rbd_flatten_volume_from_snapshot is set, for volumes from snapshots), it is
  flattened at once and the hidden snapshot removed.
* Deleting something that clones depend on flattens those clones first, then
  deletes it: a clone always survives its parent volume or snapshot, and
  nothing is left behind in the pool. Hidden clone snapshots are removed as
  soon as their last child is deleted or flattened.
"""

from __future__ import annotations

import contextlib
from typing import Any

from cinderblock.drivers.rbd.errors import rbd

SEP = "@"
HIDDEN = "."  # snapshot names starting with it are the driver's own (clone snapshots)
CLONE_SNAP_PREFIX = ".clone-"


def split_snapshot(name: str) -> tuple[str, str]:
    image, sep, snap = name.partition(SEP)
    if not sep or not image or not snap:
        raise ValueError(f"{name!r} is not <image>@<snapshot>")
    return image, snap


def snap_names(image: Any) -> list[str]:
    return [s["name"] for s in image.list_snaps()]


def parent_of(image: Any) -> dict[str, str] | None:
    """The parent spec (pool_name, pool_namespace, image_name, snap_name) or None."""
    try:
        return dict(image.get_parent_image_spec())
    except rbd.ImageNotFound:
        return None


def depth(conn: Any, ioctx: Any, name: str) -> int:
    """How many parents the image has (0 for an image that is not a clone)."""
    count = 0
    with rbd.Image(ioctx, name, read_only=True) as image:
        spec = parent_of(image)
    while spec is not None:
        count += 1
        with (
            _ioctx_for(conn, spec) as pctx,
            rbd.Image(pctx, spec["image_name"], read_only=True) as parent,
        ):
            spec = parent_of(parent)
    return count


@contextlib.contextmanager
def _ioctx_for(conn: Any, spec: dict[str, str]) -> Any:
    """An ioctx for a (pool_name, pool_namespace) spec (conn: the rados.Rados client)."""
    ioctx = conn.open_ioctx(spec.get("pool_name") or spec.get("pool"))
    try:
        ioctx.set_namespace(spec.get("pool_namespace", ""))
        yield ioctx
    finally:
        ioctx.close()


def children_of(image: Any, snap: str) -> list[dict[str, Any]]:
    image.set_snap(snap)
    try:
        return [c for c in image.list_children2() if not c.get("trash")]
    finally:
        image.set_snap(None)


def flatten_children(conn: Any, image: Any, snap: str) -> int:
    """Flatten every clone of image@snap so the snapshot can go; returns how many."""
    children = children_of(image, snap)
    for child in children:
        spec = {"pool_name": child["pool"], "pool_namespace": child.get("pool_namespace", "")}
        with _ioctx_for(conn, spec) as cctx, rbd.Image(cctx, child["image"]) as cimg:
            cimg.flatten()
    return len(children)


def remove_snapshot(conn: Any, image: Any, snap: str) -> None:
    """Remove image@snap, flattening its clones first."""
    if image.is_protected_snap(snap):
        flatten_children(conn, image, snap)
        image.unprotect_snap(snap)
    image.remove_snap(snap)


def unprotect_if_unused(image: Any, snap: str) -> None:
    if image.is_protected_snap(snap) and not children_of(image, snap):
        image.unprotect_snap(snap)


def release_parent(conn: Any, spec: dict[str, str] | None) -> None:
    """After a child went away or was flattened: drop the parent's hidden clone
    snapshot when no other child uses it, and unprotect a user snapshot."""
    if spec is None:
        return
    with (
        contextlib.suppress(rbd.ImageNotFound),
        _ioctx_for(conn, spec) as pctx,
        rbd.Image(pctx, spec["image_name"]) as parent,
    ):
        snap = spec["snap_name"]
        if snap not in snap_names(parent):
            return
        if not snap.startswith(CLONE_SNAP_PREFIX):
            unprotect_if_unused(parent, snap)
        elif not children_of(parent, snap):
            if parent.is_protected_snap(snap):
                parent.unprotect_snap(snap)
            parent.remove_snap(snap)


def flatten(conn: Any, ioctx: Any, name: str) -> None:
    """Make the image independent of its parent, then release the parent."""
    with rbd.Image(ioctx, name) as image:
        spec = parent_of(image)
        if spec is None:
            return
        image.flatten()
    release_parent(conn, spec)


def sizes(ioctx: Any, names: Any = None) -> dict[str, int]:
    """Sizes in bytes of the namespace's images (or of `names`), one small read each.

    A format-2 image's size is the ``size`` key (le64) of its header object's
    omap: reading it is one round trip, where opening the image costs several
    (a 1,000-image listing sorted by size reads them all). Images whose header
    cannot be read that way are opened instead; images gone meanwhile are left out.
    """
    import struct

    from cinderblock.drivers.rbd.errors import rados

    ids = {entry["name"]: entry["id"] for entry in rbd.RBD().list2(ioctx)}
    wanted = ids if names is None else {n: ids.get(n) for n in names}
    found: dict[str, int] = {}
    for name, image_id in wanted.items():
        if image_id:
            try:
                with rados.ReadOpCtx() as op:
                    values, _ = ioctx.get_omap_vals_by_keys(op, ("size",))
                    ioctx.operate_read_op(op, f"rbd_header.{image_id}")
                    raw = dict(values).get("size")
                if raw is not None and len(raw) == 8:
                    found[name] = struct.unpack("<Q", raw)[0]
                    continue
            except rados.Error:
                pass
        try:
            with rbd.Image(ioctx, name, read_only=True) as image:
                found[name] = int(image.size())
        except rbd.ImageNotFound:
            continue
    return found
