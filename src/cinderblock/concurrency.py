"""How many request handlers of one API process run at once.

An API process runs its handlers in a pool of worker threads, but its Python code runs
on one core at a time (the GIL). Forty threads taking turns on that core spend much of
it handing the lock around; a few running while the rest queue get more done (200
creates by 20 clients against the distributed set-up: 38 vol/s with 40 running, 48-51
with 4). A handler that waits on another service (an RPC call to a volume service, which
can take seconds) lends its slot while it waits, so slow calls never hold up the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RunSlots:
    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("at least one handler must be able to run")
        self.count = count
        self._free = threading.Semaphore(count)
        self._mine = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Run the block in a slot (waiting for one to be free)."""
        self._free.acquire()
        self._mine.held = True
        try:
            yield
        finally:
            self._mine.held = False
            self._free.release()

    @contextmanager
    def lent(self) -> Iterator[None]:
        """Give this thread's slot to another handler while the block waits."""
        if not getattr(self._mine, "held", False):
            yield
            return
        self._mine.held = False
        self._free.release()
        try:
            yield
        finally:
            self._free.acquire()
            self._mine.held = True
