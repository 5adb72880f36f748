"""In-process transport for embedded mode: a thread pool instead of a broker."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from cinderblock.rpc.base import CallTimeout, RemoteError, Transport

LOG = logging.getLogger(__name__)


class InProcessTransport(Transport):
    def __init__(self, workers: int = 16, call_timeout: float = 60.0) -> None:
        self._endpoints: dict[str, object] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc")
        self._call_timeout = call_timeout
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()
        self._stopped = False

    def serve(self, topic: str, endpoint: object) -> None:
        with self._lock:
            self._endpoints[topic] = endpoint

    def has_server(self, topic: str) -> bool:
        return topic in self._endpoints

    def _handler(self, topic: str, method: str) -> Any:
        endpoint = self._endpoints.get(topic)
        if endpoint is None:
            raise CallTimeout(f"no service listens on {topic}")
        if method.startswith("_") or not hasattr(endpoint, method):
            raise RemoteError("NoSuchMethod", f"{topic} has no method {method}")
        return getattr(endpoint, method)

    def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        handler = self._handler(topic, method)
        if self._stopped:
            return
        future = self._pool.submit(self._run_cast, topic, method, handler, kwargs)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    @staticmethod
    def _run_cast(topic: str, method: str, handler: Any, kwargs: dict[str, Any]) -> None:
        try:
            handler(**kwargs)
        except Exception:  # a cast has nobody to answer; the handler records failures
            LOG.exception("cast %s.%s failed", topic, method)

    def call(self, topic: str, method: str, timeout: float | None = None, **kwargs: Any) -> Any:
        handler = self._handler(topic, method)
        future = self._pool.submit(handler, **kwargs)
        try:
            return future.result(timeout=timeout or self._call_timeout)
        except FutureTimeout as err:
            raise CallTimeout(f"{topic}.{method} did not answer in time") from err

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every cast sent so far has run (tests and shutdown)."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.result(timeout=timeout)

    def stop(self) -> None:
        self._stopped = True
        self._pool.shutdown(wait=True, cancel_futures=False)
