"""Pick the transport a process uses from one URL (oslo's ``transport_url`` style).

* ``None``, ``""`` or ``inprocess://``: :class:`InProcessTransport` (embedded mode).
* ``rabbit://user:pass@host:5672/vhost``: :class:`RabbitTransport`. Several
  brokers are separated by commas, as in oslo
  (``rabbit://u:p@h1:5672,u:p@h2:5672/vhost``); the vhost defaults to ``/``.
* ``amqp://`` / ``pyamqp://`` URLs are passed to kombu unchanged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cinderblock.rpc.base import Transport

INPROCESS_SCHEMES = {"inprocess", "memory"}
RABBIT_SCHEMES = {"rabbit", "amqp", "pyamqp"}


def kombu_url(url: str) -> str:
    """Translate an oslo-style ``rabbit://`` URL into kombu's ``amqp://`` form.

    Fail-over brokers become kombu alternates joined by ``;``.
    """
    parts = urlsplit(url)
    if parts.scheme in {"amqp", "pyamqp"}:
        return url
    if parts.scheme != "rabbit":
        raise ValueError(f"not a RabbitMQ URL: {url!r}")
    if parts.query:
        raise ValueError(f"query options are not supported in the transport URL: {url!r}")
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    hosts = [host for host in parts.netloc.split(",") if host]
    if not hosts:
        raise ValueError(f"no broker host in {url!r}")
    return ";".join(f"amqp://{host}/{quote(vhost, safe='')}" for host in hosts)


def make_transport(
    url: str | None,
    *,
    workers: int | None = None,
    call_timeout: float = 60.0,
    **options: Any,
) -> Transport:
    """The transport for `url`; `workers` = handler threads per served topic.

    Extra keyword `options` go to RabbitTransport (heartbeat, connect_timeout,
    publish_retries, stop_timeout). Nothing connects until the transport is used.
    """
    scheme = urlsplit(url).scheme if url else "inprocess"
    if scheme in INPROCESS_SCHEMES:
        from cinderblock.rpc.inprocess import InProcessTransport

        if options:
            raise TypeError(f"options {sorted(options)} apply only to RabbitMQ")
        return InProcessTransport(workers=workers or 16, call_timeout=call_timeout)
    if scheme in RABBIT_SCHEMES:
        from cinderblock.rpc.rabbit import DEFAULT_WORKERS, RabbitTransport

        assert url is not None
        return RabbitTransport(
            kombu_url(url),
            workers=workers or DEFAULT_WORKERS,
            call_timeout=call_timeout,
            **options,
        )
    raise ValueError(
        f"unknown transport URL scheme {scheme!r}: use rabbit://user:pass@host:5672/vhost "
        "or inprocess://"
    )
