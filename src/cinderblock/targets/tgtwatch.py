"""Supervising tgtd while the service runs.

tgtd keeps its targets in memory only. At start-up the volume service exports
its attached volumes again from the database (ensure_export plus each
attachment's connector); while it runs, this watcher looks at tgtd every
``tgt_supervise_interval`` seconds. When tgtd died (with ``tgt_manage_daemon``
it is started again here; otherwise the watcher waits until the system's tgtd is
back) or restarted, every export this
process made is re-created with the same IQN, CHAP account and initiator
ACLs, so attached hosts log in again without anyone calling the API.

The watcher only knows what this process did since it started: exports it
created or ensured, initiators it let in, minus what it removed or revoked.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cinderblock.targets.base import Credentials, ExportRef, TargetError

if TYPE_CHECKING:
    from cinderblock.targets.tgt import TgtTarget

LOG = logging.getLogger(__name__)


@dataclass
class _Tracked:
    ref: ExportRef
    creds: Credentials
    initiators: set[str] = field(default_factory=set)


class Watcher:
    """What this process exported, and a daemon thread that puts it back into tgtd."""

    def __init__(self, target: TgtTarget, interval: float) -> None:
        self._target = target
        self._interval = interval
        self._tracked: dict[str, _Tracked] = {}
        self._thread: threading.Thread | None = None

    # --- bookkeeping (callers hold the target's lock) -----------------------------------------
    def track(self, ref: ExportRef, creds: Credentials) -> None:
        tracked = self._tracked.get(ref.name)
        if tracked is None:
            self._tracked[ref.name] = _Tracked(ref, creds)
        else:
            tracked.ref, tracked.creds = ref, creds
        if self._thread is None and self._interval > 0:
            self._thread = threading.Thread(target=self._run, name="tgtd-watch", daemon=True)
            self._thread.start()

    def allow(self, name: str, initiator: str) -> None:
        if (tracked := self._tracked.get(name)) is not None:
            tracked.initiators.add(initiator)

    def deny(self, name: str, initiator: str | None) -> None:
        if (tracked := self._tracked.get(name)) is not None:
            if initiator is None:
                tracked.initiators.clear()
            else:
                tracked.initiators.discard(initiator)

    def forget(self, name: str) -> None:
        self._tracked.pop(name, None)

    # --- the check --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            try:
                self.check()
            except Exception as exc:  # keep watching: tgtd may come back later
                LOG.warning("tgtd supervision: %s", exc)

    def check(self) -> int:
        """Re-create every tracked export tgtd lost (or lost part of); returns how many."""
        target = self._target
        with target._lock:
            if not self._tracked:
                return 0
            targets = target._targets()  # a managed tgtd that died is started again here
            fixed = 0
            for tracked in list(self._tracked.values()):
                info = targets.get(target.iqn_for(tracked.ref.name))
                if (
                    info is not None
                    and tracked.creds.username in info.accounts
                    and tracked.initiators <= set(info.acl_names)
                ):
                    continue
                if not os.path.exists(tracked.ref.path):
                    self.forget(tracked.ref.name)  # deleted behind our back: nothing to serve
                    continue
                try:
                    _, info = target._export(tracked.ref, tracked.creds)
                    for initiator in sorted(tracked.initiators):
                        target._allow(info, initiator)
                except TargetError as exc:
                    LOG.warning("could not re-create the export of %s: %s", tracked.ref.name, exc)
                    continue
                fixed += 1
            if fixed:
                LOG.warning("tgtd had lost %d export(s); re-created them", fixed)
            return fixed
