"""Transport interface: cast (fire and forget) and call (wait for an answer)."""

from __future__ import annotations

import abc
from typing import Any, Protocol


class Endpoint(Protocol):
    """Any object whose public methods take keyword arguments."""


class RemoteError(Exception):
    """A call's handler raised; carries the remote exception's class name and text."""

    def __init__(self, exc_type: str, message: str) -> None:
        self.exc_type = exc_type
        self.message = message
        super().__init__(f"{exc_type}: {message}")


class CallTimeout(Exception):
    """No answer within the timeout: the target service is down or stuck."""


class Transport(abc.ABC):
    @abc.abstractmethod
    def serve(self, topic: str, endpoint: object) -> None:
        """Deliver messages on `topic` to methods of `endpoint`."""

    @abc.abstractmethod
    def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        """Send and return at once; the handler runs later."""

    @abc.abstractmethod
    def call(self, topic: str, method: str, timeout: float | None = None, **kwargs: Any) -> Any:
        """Send and wait for the handler's return value."""

    @abc.abstractmethod
    def has_server(self, topic: str) -> bool:
        """Whether something serves `topic` right now."""

    @abc.abstractmethod
    def stop(self) -> None: ...
