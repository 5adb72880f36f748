"""make_transport picks the implementation from the transport URL (no broker needed)."""

from __future__ import annotations

import pytest

from cinderblock.rpc import Transport, make_transport
from cinderblock.rpc.factory import kombu_url
from cinderblock.rpc.inprocess import InProcessTransport
from cinderblock.rpc.rabbit import RabbitTransport


@pytest.mark.parametrize("url", [None, "", "inprocess://", "inprocess:"])
def test_no_url_or_inprocess_gives_the_in_process_transport(url: str | None) -> None:
    transport = make_transport(url, workers=2, call_timeout=5)
    try:
        assert isinstance(transport, InProcessTransport)
    finally:
        transport.stop()


def test_rabbit_url_gives_the_rabbitmq_transport_without_connecting() -> None:
    # Port 1 refuses connections: building the transport must not try to connect.
    transport = make_transport("rabbit://user:secret@127.0.0.1:1/cinder", call_timeout=7)
    assert isinstance(transport, RabbitTransport)
    assert isinstance(transport, Transport)
    assert transport.url == "amqp://user:secret@127.0.0.1:1/cinder"
    assert transport.workers == 8
    assert transport.call_timeout == 7
    transport.stop()


def test_worker_count_and_options_reach_the_rabbitmq_transport() -> None:
    transport = make_transport("rabbit://u:p@h:5672/", workers=3, heartbeat=10)
    assert isinstance(transport, RabbitTransport)
    assert (transport.workers, transport.heartbeat) == (3, 10)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rabbit://guest:guest@127.0.0.1:5672/", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        ("rabbit://guest:guest@127.0.0.1:5672", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        ("rabbit://u:p@h:5672/cinder", "amqp://u:p@h:5672/cinder"),
        (
            "rabbit://u:p@h1:5672,u:p@h2:5673/vh",
            "amqp://u:p@h1:5672/vh;amqp://u:p@h2:5673/vh",
        ),
        ("amqp://u:p@h:5672//", "amqp://u:p@h:5672//"),
    ],
)
def test_oslo_style_urls_become_kombu_urls(url: str, expected: str) -> None:
    assert kombu_url(url) == expected


@pytest.mark.parametrize("url", ["kafka://h:9092", "http://h/", "zmq://"])
def test_unknown_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unknown transport URL scheme"):
        make_transport(url)


def test_broker_options_are_refused_for_the_in_process_transport() -> None:
    with pytest.raises(TypeError, match="only to RabbitMQ"):
        make_transport(None, heartbeat=10)
