"""Where the file driver keeps things: names inside file_volumes_dir, error translation.

Shared by the driver proper (driver.py) and its manage half (managed.py).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from cinderblock.drivers.file import manage
from cinderblock.drivers.refs import SnapshotRef, VolumeRef
from cinderblock.exceptions import (
    BackendObjectNotFound,
    CinderblockError,
    VolumeBackendAPIException,
)

SEP = manage.SNAP_SEP

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")


def translated(
    op: str,
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """The one place where OS errors become driver errors."""

    def decorate(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(fn)
        def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(self, *args, **kwargs)
            except CinderblockError:
                raise
            except FileNotFoundError as exc:
                name = os.path.basename(str(exc.filename or "")) or "?"
                raise BackendObjectNotFound(name=name) from exc
            except OSError as exc:
                raise VolumeBackendAPIException(data=f"{op} failed: {exc}") from exc

        return wrapper

    return decorate


class FileLayout:
    """Name <-> path mapping; every name is checked to stay inside volumes_dir."""

    volumes_dir: str

    def _path(self, name: str) -> str:
        return os.path.join(self.volumes_dir, name)

    @staticmethod
    def _checked(name: str, *, snapshot: bool) -> str:
        """Refuse a name (e.g. a corrupted provider_location) that leaves the directory."""
        problem = manage.name_problem(name)
        if problem is None and (SEP in name) != snapshot:
            problem = "snapshot files need '@'" if snapshot else "volume names cannot contain '@'"
        if problem:
            raise VolumeBackendAPIException(data=f"invalid backend file name {name!r}: {problem}")
        return name

    def _volume_file(self, volume: VolumeRef) -> str:
        return self._checked(volume.provider_location or volume.name, snapshot=False)

    def _snapshot_file(self, snapshot: SnapshotRef) -> str:
        if snapshot.provider_location:
            return self._checked(snapshot.provider_location, snapshot=True)
        return self._checked(
            f"{self._volume_file(snapshot.volume)}{SEP}{snapshot.name}", snapshot=True
        )

    def _snapshot_files_of(self, volume_file: str) -> list[str]:
        prefix = volume_file + SEP
        with os.scandir(self.volumes_dir) as it:
            return sorted(e.name for e in it if e.name.startswith(prefix))

    def _is_file(self, name: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._path(name)).st_mode)
        except FileNotFoundError:
            return False

    def _open_existing(self, name: str, flags: int = os.O_RDONLY) -> int:
        return os.open(self._path(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC)
