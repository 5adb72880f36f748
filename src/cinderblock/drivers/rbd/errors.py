"""The one place where librados/librbd errors become driver errors.

Every public driver method is wrapped in `translated(op)`: a missing image or
snapshot becomes BackendObjectNotFound, an image or snapshot that cannot be
removed because something depends on it becomes VolumeIsBusy/SnapshotIsBusy,
and any other vendor error a VolumeBackendAPIException naming the operation.
Our own errors pass through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from cinderblock.exceptions import (
    BackendObjectNotFound,
    CinderblockError,
    SnapshotIsBusy,
    VolumeBackendAPIException,
    VolumeIsBusy,
)

try:  # the bindings come from Debian's python3-rados/python3-rbd (see scripts/)
    import rados
    import rbd
except ImportError:  # pragma: no cover - the driver refuses to start without them
    rados = None  # type: ignore[assignment]
    rbd = None  # type: ignore[assignment]

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")


def bindings_missing() -> str | None:
    """Why the driver cannot run here, or None."""
    if rados is None or rbd is None:
        return (
            "the rados/rbd Python bindings are not importable: install python3-rados "
            "python3-rbd and run scripts/ceph-bindings.sh for the virtualenv"
        )
    return None


def translate(op: str, exc: Exception) -> Exception:
    """Our exception for a vendor exception raised during `op`."""
    if isinstance(exc, CinderblockError):
        return exc
    if rbd is not None:
        if isinstance(exc, rbd.ImageNotFound | rados.ObjectNotFound):
            return BackendObjectNotFound(name=str(exc) or op)
        if isinstance(exc, rbd.ImageHasSnapshots | rbd.ImageBusy):
            return VolumeIsBusy(volume_name=f"{op}: {exc}")
        if isinstance(exc, rbd.ImageExists):
            return VolumeBackendAPIException(data=f"{op} failed: the name is taken ({exc})")
        if isinstance(exc, rbd.Error | rados.Error):
            return VolumeBackendAPIException(data=f"{op} failed: {exc}")
    return exc


def snapshot_busy(name: str, reason: str) -> SnapshotIsBusy:
    return SnapshotIsBusy(snapshot_name=f"{name} ({reason})")


def translated(
    op: str,
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    def decorate(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(fn)
        def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(self, *args, **kwargs)
            except CinderblockError:
                raise
            except Exception as exc:
                mapped = translate(op, exc)
                if mapped is exc:
                    raise
                raise mapped from exc

        return wrapper

    return decorate
