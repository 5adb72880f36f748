"""In-process driver: objects live in a dict, for tests and control-plane benchmarks.

Objects follow the file driver's naming so both behave alike: a volume is
``<provider_location>`` or ``<volume.name>``, a snapshot is
``<parent volume object>@<snapshot name>``. Data is kept sparse in fixed-size
chunks of immutable bytes, so snapshots and clones share chunks until written
(copy-on-write for free) and a 1 TiB volume costs nothing until used.

Outside the SDK, tests use ``write``/``read`` to put and check data,
``seed_foreign_volume``/``seed_foreign_snapshot`` to create objects Cinder
does not know (for manage), ``set_in_use`` to mark an object as used
elsewhere (listed unsafe with reason code in_use, refused by manage), and
``fail_on`` (option ``memory_fail_on``, a comma list of operation names) to
make operations fail.

``calls`` is the driver's call log: every operation that reached it, oldest first, as
``(operation, object name)`` (the volume or snapshot object, or the ``source-name`` of
a manage reference; ``""`` for backend-wide calls such as stats). Tests and benchmarks
read it to see what the backend was really asked to do, e.g. that fifty racing API
requests made exactly one extend. It keeps the last ``memory_call_log_size`` (10000)
entries, so a long-running service does not grow.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cinderblock.drivers import manageable as mg
from cinderblock.drivers.base import (
    BaseVD,
    CloneVD,
    ExportVD,
    ExtendVD,
    ManageableSnapshotsVD,
    ManageableVD,
    RevertVD,
    SnapshotVD,
)
from cinderblock.drivers.config import BackendConfig
from cinderblock.drivers.manageable import ceil_gib, paginate
from cinderblock.drivers.refs import GiB, ManageableEntry, ModelUpdate, SnapshotRef, VolumeRef
from cinderblock.exceptions import (
    BackendObjectNotFound,
    InvalidConnectorException,
    VolumeBackendAPIException,
    VolumeIsBusy,
)
from cinderblock.targets.base import refuse_single_path

CHUNK = 64 * 1024
SEP = "@"


@dataclass
class _Object:
    size: int  # bytes
    chunks: dict[int, bytes] = field(default_factory=dict)  # chunk index -> CHUNK bytes
    in_use: bool = False  # "attached/open elsewhere": set by tests on foreign objects

    def copy(self) -> _Object:
        return _Object(self.size, dict(self.chunks))

    def truncate(self, size: int) -> None:
        """Set the size, dropping data past it so a later grow reads zeros there."""
        if size < self.size:
            last, within = divmod(size, CHUNK)
            self.chunks = {
                i: c for i, c in self.chunks.items() if i < last or (i == last and within)
            }
            if last in self.chunks:
                self.chunks[last] = self.chunks[last][:within] + bytes(CHUNK - within)
        self.size = size


class MemoryDriver(
    BaseVD,
    SnapshotVD,
    CloneVD,
    ExtendVD,
    RevertVD,
    ManageableVD,
    ManageableSnapshotsVD,
    ExportVD,
):
    VERSION = "1.0.0"
    STORAGE_PROTOCOL = "memory"

    def __init__(self, config: BackendConfig, host: str) -> None:
        super().__init__(config, host)
        self.capacity_gb = config.get_float("memory_capacity_gb", 1000.0)
        self.max_over_subscription_ratio = config.get_float("max_over_subscription_ratio", 20.0)
        self.reserved_percentage = config.get_int("reserved_percentage", 0)
        raw_fail = config.get("memory_fail_on") or ""
        self.fail_on: set[str] = {op.strip() for op in raw_fail.split(",") if op.strip()}
        self._lock = threading.RLock()
        self._objects: dict[str, _Object] = {}
        self.calls: deque[tuple[str, str]] = deque(
            maxlen=config.get_int("memory_call_log_size", 10000)
        )
        # export name -> connectors (host names) allowed to reach it
        self.exports: dict[str, set[str]] = {}

    # --- plumbing ------------------------------------------------------------------
    @contextlib.contextmanager
    def _op(self, name: str, on: VolumeRef | SnapshotRef | Any = None) -> Iterator[None]:
        """Serialise every operation, log it, and inject the configured failures."""
        with self._lock:
            self.calls.append((name, self._log_name(on)))
            if name in self.fail_on:
                raise VolumeBackendAPIException(data=f"injected failure in {name}")
            yield

    @staticmethod
    def _log_name(on: VolumeRef | SnapshotRef | Any) -> str:
        if isinstance(on, VolumeRef):
            return on.provider_location or on.name
        if isinstance(on, SnapshotRef):
            parent = on.volume.provider_location or on.volume.name
            return on.provider_location or f"{parent}{SEP}{on.name}"
        if isinstance(on, dict):
            return str(on.get("source-name", on.get("source-id", "")))
        return ""

    @staticmethod
    def _volume_name(volume: VolumeRef) -> str:
        name = volume.provider_location or volume.name
        if SEP in name:
            raise VolumeBackendAPIException(data=f"invalid volume object name {name!r}")
        return name

    def _snapshot_name(self, snapshot: SnapshotRef) -> str:
        if snapshot.provider_location:
            return snapshot.provider_location
        return f"{self._volume_name(snapshot.volume)}{SEP}{snapshot.name}"

    def _get(self, name: str) -> _Object:
        try:
            return self._objects[name]
        except KeyError as exc:
            raise BackendObjectNotFound(name=name) from exc

    def _add(self, name: str, obj: _Object) -> None:
        if name in self._objects:
            raise VolumeBackendAPIException(data=f"object {name} already exists")
        self._objects[name] = obj

    def _snapshots_of(self, name: str) -> list[str]:
        prefix = name + SEP
        return sorted(n for n in self._objects if n.startswith(prefix))

    def _copy_to_new(self, src: str, dst: str, size_bytes: int) -> None:
        source = self._get(src)
        if size_bytes < source.size:
            raise VolumeBackendAPIException(
                data=f"requested size {size_bytes} bytes is smaller than source {src}"
            )
        obj = source.copy()
        obj.size = size_bytes
        self._add(dst, obj)

    # --- test helpers (not part of the SDK) ------------------------------------------------
    def write(self, name: str, offset: int, data: bytes) -> None:
        with self._lock:
            obj = self._get(name)
            if offset < 0 or offset + len(data) > obj.size:
                raise ValueError(f"write outside {name} ({obj.size} bytes)")
            pos = 0
            while pos < len(data):
                index, within = divmod(offset + pos, CHUNK)
                n = min(CHUNK - within, len(data) - pos)
                chunk = bytearray(obj.chunks.get(index, bytes(CHUNK)))
                chunk[within : within + n] = data[pos : pos + n]
                obj.chunks[index] = bytes(chunk)  # new object: snapshots keep the old one
                pos += n

    def read(self, name: str, offset: int, length: int) -> bytes:
        with self._lock:
            obj = self._get(name)
            if offset < 0 or offset + length > obj.size:
                raise ValueError(f"read outside {name} ({obj.size} bytes)")
            out = bytearray()
            pos = offset
            while pos < offset + length:
                index, within = divmod(pos, CHUNK)
                n = min(CHUNK - within, offset + length - pos)
                chunk = obj.chunks.get(index)
                out += chunk[within : within + n] if chunk else bytes(n)
                pos += n
            return bytes(out)

    def object_names(self) -> set[str]:
        with self._lock:
            return set(self._objects)

    def object_size(self, name: str) -> int:
        with self._lock:
            return self._get(name).size

    def seed_foreign_volume(self, name: str, size_bytes: int, in_use: bool = False) -> None:
        if SEP in name:
            raise ValueError("volume names cannot contain '@'")
        with self._lock:
            self._add(name, _Object(size_bytes, in_use=in_use))

    def seed_foreign_snapshot(
        self, parent_name: str, name: str, size_bytes: int, in_use: bool = False
    ) -> str:
        """Create snapshot object '<parent>@<name>' (data copied from the parent)."""
        with self._lock:
            parent = self._get(parent_name)
            obj = parent.copy()
            obj.truncate(size_bytes)
            obj.in_use = in_use
            full = f"{parent_name}{SEP}{name}"
            self._add(full, obj)
            return full

    def set_in_use(self, name: str, in_use: bool = True) -> None:
        """Mark an object as used elsewhere (like a file another process holds open)."""
        with self._lock:
            self._get(name).in_use = in_use

    # --- core -------------------------------------------------------------------------------
    def do_setup(self) -> None:
        with self._op("do_setup"):
            pass

    def create_volume(self, volume: VolumeRef) -> ModelUpdate | None:
        with self._op("create_volume", volume):
            name = self._volume_name(volume)
            self._add(name, _Object(volume.size * GiB))
            return {"provider_location": name}

    def delete_volume(self, volume: VolumeRef) -> None:
        with self._op("delete_volume", volume):
            name = self._volume_name(volume)
            if self._snapshots_of(name):
                raise VolumeIsBusy(volume_name=name)
            self._objects.pop(name, None)

    def volume_exists(self, volume: VolumeRef) -> bool:
        with self._op("volume_exists", volume):
            return self._volume_name(volume) in self._objects

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        with self._op("get_volume_stats"):
            allocated = round(sum(o.size for o in self._objects.values()) / GiB, 2)
            return {
                "volume_backend_name": self.backend_name,
                "vendor_name": self.VENDOR_NAME,
                "driver_version": self.VERSION,
                "storage_protocol": self.STORAGE_PROTOCOL,
                "pools": [
                    {
                        "pool_name": self.backend_name,
                        "total_capacity_gb": round(self.capacity_gb, 2),
                        "free_capacity_gb": round(max(0.0, self.capacity_gb - allocated), 2),
                        "allocated_capacity_gb": allocated,
                        "provisioned_capacity_gb": allocated,
                        "max_over_subscription_ratio": self.max_over_subscription_ratio,
                        "reserved_percentage": self.reserved_percentage,
                        "thin_provisioning_support": True,
                        "thick_provisioning_support": False,
                        "QoS_support": False,
                        # the export stand-in keeps one ACL entry per host
                        "multiattach": True,
                    }
                ],
            }

    # --- snapshots / clones / extend / revert ------------------------------------------------
    def create_snapshot(self, snapshot: SnapshotRef) -> ModelUpdate | None:
        with self._op("create_snapshot", snapshot):
            parent = self._volume_name(snapshot.volume)
            name = self._snapshot_name(snapshot)
            self._copy_to_new(parent, name, self._get(parent).size)
            return {"provider_location": name}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        with self._op("delete_snapshot", snapshot):
            self._objects.pop(self._snapshot_name(snapshot), None)

    def snapshot_exists(self, snapshot: SnapshotRef) -> bool:
        with self._op("snapshot_exists", snapshot):
            return self._snapshot_name(snapshot) in self._objects

    def create_volume_from_snapshot(
        self, volume: VolumeRef, snapshot: SnapshotRef
    ) -> ModelUpdate | None:
        with self._op("create_volume_from_snapshot", volume):
            name = self._volume_name(volume)
            self._copy_to_new(self._snapshot_name(snapshot), name, volume.size * GiB)
            return {"provider_location": name}

    def create_cloned_volume(self, volume: VolumeRef, src: VolumeRef) -> ModelUpdate | None:
        with self._op("create_cloned_volume", volume):
            name = self._volume_name(volume)
            self._copy_to_new(self._volume_name(src), name, volume.size * GiB)
            return {"provider_location": name}

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        with self._op("extend_volume", volume):
            obj = self._get(self._volume_name(volume))
            if new_size * GiB < obj.size:
                raise VolumeBackendAPIException(data="refusing to shrink a volume")
            obj.size = new_size * GiB

    def revert_to_snapshot(self, volume: VolumeRef, snapshot: SnapshotRef) -> None:
        with self._op("revert_to_snapshot", volume):
            obj = self._get(self._volume_name(volume))
            snap = self._get(self._snapshot_name(snapshot))
            obj.chunks = dict(snap.chunks)
            obj.size = max(obj.size, snap.size, volume.size * GiB)

    # --- manage ---------------------------------------------------------------------------------
    def _ref_name(self, existing_ref: Any) -> str:
        name = None
        if isinstance(existing_ref, dict):
            name = existing_ref.get("source-name", existing_ref.get("source-id"))
        if not isinstance(name, str) or not name:
            raise mg.invalid_reference(
                existing_ref, mg.BAD_REFERENCE, "reference must contain 'source-name'"
            )
        return name

    def _check_present_and_free(self, name: str, existing_ref: Any) -> None:
        obj = self._objects.get(name)
        if obj is None:
            raise mg.invalid_reference(
                existing_ref, mg.NOT_FOUND, f"no backend object named {name!r}"
            )
        if obj.in_use:
            raise mg.invalid_reference(
                existing_ref, mg.IN_USE, f"{name!r} is in use by another process"
            )

    # Checks in the file driver's order, so both give the same reason code.
    def _volume_ref(self, existing_ref: Any) -> str:
        name = self._ref_name(existing_ref)
        if SEP in name:
            raise mg.invalid_reference(
                existing_ref, mg.WRONG_KIND, f"{name!r} is a snapshot; manage it as one"
            )
        self._check_present_and_free(name, existing_ref)
        return name

    def _snapshot_ref(self, snapshot: SnapshotRef, existing_ref: Any) -> str:
        name = self._ref_name(existing_ref)
        parent = self._volume_name(snapshot.volume)
        if not name.startswith(parent + SEP):
            raise mg.invalid_reference(
                existing_ref, mg.WRONG_KIND, f"{name!r} is not a snapshot of {parent!r}"
            )
        self._check_present_and_free(name, existing_ref)
        return name

    def _renames(self, old: str, new: str, *, family: bool) -> list[tuple[str, str]]:
        renames = [(old, new)] if old != new else []
        if renames and family:
            renames += [(s, new + s[len(old) :]) for s in self._snapshots_of(old)]
        return renames

    def _rename_all(self, renames: list[tuple[str, str]]) -> None:
        # Under the lock and checked first, so this is all-or-nothing.
        for old, new in renames:
            self._objects[new] = self._objects.pop(old)

    def _adopt(self, name: str, target: str, existing_ref: Any, *, family: bool) -> None:
        renames = self._renames(name, target, family=family)
        taken = [new for _, new in renames if new in self._objects]
        if taken:
            raise mg.invalid_reference(
                existing_ref, mg.NAME_TAKEN, f"target name {taken[0]!r} already exists"
            )
        obj = self._objects[name]
        obj.size = ceil_gib(obj.size) * GiB
        self._rename_all(renames)

    def _restore(self, current: str, original: str | None, *, family: bool) -> None:
        if not original or current not in self._objects:
            return
        renames = self._renames(current, original, family=family)
        if not any(new in self._objects for _, new in renames):
            self._rename_all(renames)

    def manage_existing_get_size(self, volume: VolumeRef, existing_ref: dict[str, Any]) -> int:
        with self._op("manage_existing_get_size", existing_ref):
            return ceil_gib(self._objects[self._volume_ref(existing_ref)].size)

    def manage_existing(
        self, volume: VolumeRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        with self._op("manage_existing", existing_ref):
            name = self._volume_ref(existing_ref)
            original_bytes = self._objects[name].size
            self._adopt(name, volume.name, existing_ref, family=True)
            return {
                "provider_location": volume.name,
                "provider_id": name,
                "admin_metadata": {
                    "manage_original_name": name,
                    "manage_original_size_bytes": str(original_bytes),
                },
            }

    def unmanage(self, volume: VolumeRef) -> None:
        with self._op("unmanage", volume):
            self._restore(self._volume_name(volume), volume.provider_id, family=True)

    def manage_existing_snapshot_get_size(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> int:
        with self._op("manage_existing_snapshot_get_size", existing_ref):
            return ceil_gib(self._objects[self._snapshot_ref(snapshot, existing_ref)].size)

    def manage_existing_snapshot(
        self, snapshot: SnapshotRef, existing_ref: dict[str, Any]
    ) -> ModelUpdate | None:
        with self._op("manage_existing_snapshot", existing_ref):
            name = self._snapshot_ref(snapshot, existing_ref)
            target = f"{self._volume_name(snapshot.volume)}{SEP}{snapshot.name}"
            self._adopt(name, target, existing_ref, family=False)
            return {"provider_location": target, "provider_id": name}

    def unmanage_snapshot(self, snapshot: SnapshotRef) -> None:
        with self._op("unmanage_snapshot", snapshot):
            self._restore(self._snapshot_name(snapshot), snapshot.provider_id, family=False)

    def _listing(
        self,
        managed: dict[str, str],
        snapshots: bool,
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]:
        entries: list[ManageableEntry] = []
        for name, obj in self._objects.items():
            if (SEP in name) != snapshots:
                continue
            entry = mg.make_entry(
                name,
                ceil_gib(obj.size),
                cinder_id=managed.get(name),
                source_name=name.split(SEP, 1)[0],
                snapshots=snapshots,
            )
            if entry["safe_to_manage"] and obj.in_use:
                mg.mark_unsafe(entry, mg.IN_USE, mg.reason_in_use(snapshots=snapshots))
            entries.append(entry)
        return paginate(entries, marker, limit, offset, sort_keys, sort_dirs)

    def get_manageable_volumes(
        self,
        cinder_volumes: Sequence[VolumeRef],
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]:
        with self._op("get_manageable_volumes"):
            managed = mg.managed_names(cinder_volumes)
            return self._listing(managed, False, marker, limit, offset, sort_keys, sort_dirs)

    def get_manageable_snapshots(
        self,
        cinder_snapshots: Sequence[SnapshotRef],
        marker: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_keys: Sequence[str],
        sort_dirs: Sequence[str],
    ) -> list[ManageableEntry]:
        with self._op("get_manageable_snapshots"):
            managed = {self._snapshot_name(s): s.id for s in cinder_snapshots}
            return self._listing(managed, True, marker, limit, offset, sort_keys, sort_dirs)

    # --- exports (a stand-in data path for control-plane tests) -------------------------
    def create_export(self, volume: VolumeRef, connector: Any) -> ModelUpdate | None:
        with self._op("create_export", volume):
            name = self._volume_name(volume)
            if name not in self._objects:
                raise BackendObjectNotFound(name=name)
            self.exports.setdefault(name, set())
            return {"provider_location": name, "provider_auth": None}

    def ensure_export(self, volume: VolumeRef) -> ModelUpdate | None:
        with self._op("ensure_export", volume):
            self.exports.setdefault(self._volume_name(volume), set())
            return None

    def remove_export(self, volume: VolumeRef) -> None:
        with self._op("remove_export", volume):
            self.exports.pop(self._volume_name(volume), None)

    def validate_connector(self, connector: Any) -> None:
        if not isinstance(connector, dict) or not (
            connector.get("host") or connector.get("initiator")
        ):
            raise InvalidConnectorException(missing="host or initiator")
        # The stand-in export has a single path, like a one-portal iSCSI target.
        refuse_single_path(connector, ["memory"], "the memory backend has no multipath.")

    def initialize_connection(self, volume: VolumeRef, connector: Any) -> dict[str, Any]:
        with self._op("initialize_connection", volume):
            name = self._volume_name(volume)
            who = str(connector.get("host") or connector.get("initiator"))
            self.exports.setdefault(name, set()).add(who)
            return {
                "driver_volume_type": "memory",
                "data": {
                    "volume_id": volume.id,
                    "name": name,
                    "size_bytes": self._objects[name].size,
                },
            }

    def terminate_connection(self, volume: VolumeRef, connector: Any) -> None:
        with self._op("terminate_connection", volume):
            name = self._volume_name(volume)
            if connector:
                who = str(connector.get("host") or connector.get("initiator"))
                self.exports.get(name, set()).discard(who)
            else:
                self.exports.get(name, set()).clear()
