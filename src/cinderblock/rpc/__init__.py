"""Message transport between API, scheduler and volume services.

Messages are wake-ups: the database is the truth. Callers cast only after the
commit the message refers to. `make_transport(url)` picks the implementation:
in-process for embedded mode, RabbitMQ (rpc/rabbit.py) for distributed mode.
"""

from cinderblock.rpc.base import CallTimeout, RemoteError, Transport
from cinderblock.rpc.factory import make_transport

__all__ = ["CallTimeout", "RemoteError", "Transport", "make_transport"]
