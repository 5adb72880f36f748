"""The RabbitMQ transport against a real broker on 127.0.0.1:5672 (guest/guest).

What a user of distributed mode relies on: a cast reaches exactly one server
of its topic, servers of a topic share the work, calls answer or time out,
remote errors keep their class, and a message whose server crashed before
finishing it is handled by the next server. Every test uses its own topics
(uuid) and deletes their queues afterwards. If no broker answers (and
`rabbitmq-server -detached` cannot start one) the tests are skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest

from cinderblock import exceptions as exc
from cinderblock.rpc import CallTimeout, RemoteError, make_transport
from cinderblock.rpc.rabbit import RabbitTransport

URL = os.environ.get("CINDERBLOCK_TEST_RABBIT", "rabbit://guest:guest@127.0.0.1:5672/")
KOMBU_URL = "amqp://guest:guest@127.0.0.1:5672//"
WAIT = 20.0


def _port_open(port: int = 5672) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _broker_answers() -> bool:
    try:
        with kombu.Connection(KOMBU_URL, connect_timeout=3) as conn:
            conn.connect()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def broker() -> str:
    if not _port_open() and shutil.which("rabbitmq-server"):
        subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
        deadline = time.monotonic() + 60
        while not _port_open() and time.monotonic() < deadline:
            time.sleep(1)
    deadline = time.monotonic() + 30
    while not _broker_answers():
        if time.monotonic() > deadline:
            pytest.skip("RabbitMQ does not answer on 127.0.0.1:5672 as guest/guest")
        time.sleep(1)
    return URL


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def queue_depth(topic: str) -> int:
    """Messages ready in `topic`'s queue (unacknowledged ones are not counted)."""
    with kombu.Connection(KOMBU_URL) as conn:
        return int(conn.default_channel.queue_declare(queue=topic, passive=True).message_count)


class Rabbit:
    """Makes transports and topics for one test; stops and deletes them at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.transports: list[RabbitTransport] = []
        self.topics: list[str] = []

    def transport(self, **options: Any) -> RabbitTransport:
        transport = make_transport(self.url, **options)
        assert isinstance(transport, RabbitTransport)
        self.transports.append(transport)
        return transport

    def topic(self) -> str:
        topic = f"cinderblock-test.{uuid.uuid4().hex}"
        self.topics.append(topic)
        return topic

    def close(self) -> None:
        for transport in self.transports:
            transport.stop(timeout=2)
        with kombu.Connection(KOMBU_URL) as conn:
            for topic in self.topics:
                channel = conn.channel()
                try:
                    channel.queue_delete(queue=topic)
                finally:
                    channel.close()


@pytest.fixture
def rabbit(broker: str) -> Iterator[Rabbit]:
    helper = Rabbit(broker)
    yield helper
    helper.close()


class Recorder:
    """An endpoint: records what it was asked, answers, and raises on request."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[dict[str, Any]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def note(self, **kwargs: Any) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.seen.append(kwargs)

    def add(self, a: int, b: int, context: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"sum": a + b, "context": context}

    def echo(self, value: Any) -> Any:
        return value

    def block(self) -> None:
        self.release.wait(WAIT)

    def invalid(self, reason: str) -> None:
        raise exc.InvalidInput(reason=reason)

    def missing_volume(self, volume_id: str) -> None:
        raise exc.VolumeNotFound(volume_id=volume_id)

    def broken(self) -> None:
        raise ValueError("disk on fire")

    def _secret(self) -> str:
        return "should never be reachable"


# --- casts ------------------------------------------------------------------------
def test_cast_is_delivered_once_with_its_context(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    server, client = rabbit.transport(), rabbit.transport()
    recorder = Recorder()
    server.serve(topic, recorder)
    context = {"request_id": "req-1", "project_id": "p1", "roles": ["member"]}

    client.cast(topic, "note", volume_id="v1", context=context)

    assert wait_for(lambda: len(recorder.seen) == 1)
    time.sleep(1.0)  # a second delivery would show up here
    assert recorder.seen == [{"volume_id": "v1", "context": context}]
    server.stop(timeout=5)
    # Acknowledged: nothing went back to the queue when the server closed its connection.
    assert queue_depth(topic) == 0


def test_cast_waits_in_the_queue_until_a_server_comes(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    client = rabbit.transport()
    client.cast(topic, "note", job=1)
    assert queue_depth(topic) == 1  # durable queue declared by the sender, message kept

    recorder = Recorder()
    rabbit.transport().serve(topic, recorder)
    assert wait_for(lambda: recorder.seen == [{"job": 1}])


def test_a_raising_cast_handler_is_logged_and_acknowledged(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    server, client = rabbit.transport(), rabbit.transport()
    recorder = Recorder()
    server.serve(topic, recorder)

    client.cast(topic, "broken")
    client.cast(topic, "note", after="broken")

    assert wait_for(lambda: recorder.seen == [{"after": "broken"}])
    server.stop(timeout=5)
    assert queue_depth(topic) == 0


def test_competing_consumers_split_the_work(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    fast, slow = Recorder(delay=0.01), Recorder(delay=0.3)
    rabbit.transport(workers=1).serve(topic, fast)
    rabbit.transport(workers=1).serve(topic, slow)
    client = rabbit.transport()
    assert client.consumer_count(topic) == 2

    for job in range(20):
        client.cast(topic, "note", job=job)

    assert wait_for(lambda: len(fast.seen) + len(slow.seen) == 20)
    time.sleep(0.5)
    jobs = sorted(item["job"] for item in fast.seen + slow.seen)
    assert jobs == list(range(20))  # each job exactly once
    assert fast.seen and slow.seen  # both servers took part
    # Prefetch 1 per worker: the busy server does not hoard messages it cannot run yet
    # (round-robin with a deep prefetch would hand it 10).
    assert len(slow.seen) <= 5


# --- calls ------------------------------------------------------------------------
def test_call_returns_the_handlers_value(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    rabbit.transport().serve(topic, Recorder())
    client = rabbit.transport()
    context = {"request_id": "req-2", "is_admin": True}

    assert client.call(topic, "add", a=2, b=40, context=context) == {
        "sum": 42,
        "context": context,
    }
    value = {"pools": [{"name": "p", "free": 1.5}], "none": None, "list": [1, "two"]}
    assert client.call(topic, "echo", value=value) == value
    assert client.call(topic, "echo", value=None) is None
    assert client.has_server(topic)


def test_concurrent_calls_get_their_own_answers(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    rabbit.transport().serve(topic, Recorder())
    client = rabbit.transport()
    results: dict[int, Any] = {}

    def ask(n: int) -> None:
        results[n] = client.call(topic, "add", a=n, b=1000)["sum"]

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert results == {n: n + 1000 for n in range(16)}


def test_call_to_a_topic_nobody_serves_fails_within_the_timeout(rabbit: Rabbit) -> None:
    client = rabbit.transport()
    never_served = rabbit.topic()
    abandoned = rabbit.topic()
    client.cast(abandoned, "note", job=1)  # the queue exists, but no server consumes it

    for topic in (never_served, abandoned):
        assert not client.has_server(topic)
        started = time.monotonic()
        with pytest.raises(CallTimeout, match="no service consumes"):
            client.call(topic, "add", timeout=3, a=1, b=2)
        assert time.monotonic() - started < 3


def test_an_unanswered_call_times_out_and_is_not_run_later(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    recorder = Recorder()
    rabbit.transport(workers=1).serve(topic, recorder)
    client = rabbit.transport()
    client.cast(topic, "block")  # the only worker is now busy
    time.sleep(0.3)

    started = time.monotonic()
    with pytest.raises(CallTimeout, match="did not answer within 1s"):
        client.call(topic, "note", timeout=1, stale="call")
    assert 0.9 < time.monotonic() - started < 3

    recorder.release.set()
    client.cast(topic, "note", fresh="cast")
    assert wait_for(lambda: {"fresh": "cast"} in recorder.seen)
    # The call message expired in the queue (TTL = call timeout): nobody runs it late.
    assert {"stale": "call"} not in recorder.seen


def test_remote_errors_keep_their_class(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    rabbit.transport().serve(topic, Recorder())
    client = rabbit.transport()

    with pytest.raises(exc.InvalidInput) as invalid:
        client.call(topic, "invalid", reason="size must be positive")
    assert str(invalid.value) == "Invalid input received: size must be positive"
    assert invalid.value.code == 400
    assert isinstance(invalid.value.__cause__, RemoteError)

    with pytest.raises(exc.VolumeNotFound) as missing:
        client.call(topic, "missing_volume", volume_id="v-9")
    assert str(missing.value) == "Volume v-9 could not be found."
    assert missing.value.code == 404

    with pytest.raises(RemoteError) as other:
        client.call(topic, "broken")
    assert (other.value.exc_type, other.value.message) == ("ValueError", "disk on fire")

    for method in ("_secret", "no_such_method"):
        with pytest.raises(RemoteError) as refused:
            client.call(topic, method)
        assert refused.value.exc_type == "NoSuchMethod"


# --- failures -----------------------------------------------------------------------
SERVER_SCRIPT = """
import pathlib, sys, time
from cinderblock.rpc import make_transport

url, topic, marker = sys.argv[1:4]

class Endpoint:
    def work(self, job, context=None):
        pathlib.Path(marker).write_text(job)
        time.sleep(3600)  # never finishes: the process is killed first

transport = make_transport(url, workers=1)
transport.serve(topic, Endpoint())
print("serving", flush=True)
time.sleep(3600)
"""


def test_work_of_a_crashed_server_goes_to_the_next_server(rabbit: Rabbit, tmp_path: Path) -> None:
    topic = rabbit.topic()
    marker = tmp_path / "started"
    crashing = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, rabbit.url, topic, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        client = rabbit.transport()
        assert wait_for(lambda: client.has_server(topic) or crashing.poll() is not None)
        assert crashing.poll() is None, crashing.stdout.read() if crashing.stdout else ""

        client.cast(topic, "work", job="job-1", context={"request_id": "req-3"})
        assert wait_for(marker.exists), "the first server never started the job"
        assert marker.read_text() == "job-1"
        assert queue_depth(topic) == 0  # delivered, not yet acknowledged

        crashing.send_signal(signal.SIGKILL)
        crashing.wait(WAIT)
    finally:
        if crashing.poll() is None:
            crashing.kill()
            crashing.wait(WAIT)
        if crashing.stdout:
            crashing.stdout.close()

    # The broker saw the connection die and put the unacknowledged job back.
    assert wait_for(lambda: queue_depth(topic) == 1)
    recorder = Recorder()
    recorder.work = recorder.note  # type: ignore[attr-defined]
    survivor = rabbit.transport()
    survivor.serve(topic, recorder)
    assert wait_for(lambda: len(recorder.seen) == 1)
    assert recorder.seen == [{"job": "job-1", "context": {"request_id": "req-3"}}]
    survivor.stop(timeout=5)
    assert queue_depth(topic) == 0


def _cut(connection: kombu.Connection | None) -> None:
    """Break a kombu connection's socket under it, as a network failure would."""
    assert connection is not None
    connection.connection.sock.shutdown(socket.SHUT_RDWR)


def test_server_and_client_reconnect_after_losing_the_broker(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    recorder = Recorder()
    server = rabbit.transport()
    server.serve(topic, recorder)
    client = rabbit.transport()
    client.cast(topic, "note", job="before")
    assert wait_for(lambda: len(recorder.seen) == 1)
    assert client.call(topic, "add", a=1, b=1)["sum"] == 2

    _cut(server._servers[topic].current)
    _cut(client._publisher._conn)
    assert client._replies is not None
    _cut(client._replies.current)

    client.cast(topic, "note", job="after")  # publisher reconnects and retries
    assert wait_for(lambda: len(recorder.seen) == 2)  # server consumes again
    assert wait_for(lambda: client._replies is not None and client._replies.ready.is_set())
    assert client.call(topic, "add", a=2, b=2)["sum"] == 4
    assert [item["job"] for item in recorder.seen] == ["before", "after"]


def test_stop_lets_running_handlers_finish(rabbit: Rabbit) -> None:
    topic = rabbit.topic()
    recorder = Recorder(delay=1.0)
    server = rabbit.transport()
    server.serve(topic, recorder)
    rabbit.transport().cast(topic, "note", job="slow")
    time.sleep(0.3)  # the handler is running

    server.stop(timeout=10)

    assert recorder.seen == [{"job": "slow"}]
    assert queue_depth(topic) == 0
