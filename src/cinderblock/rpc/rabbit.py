"""RabbitMQ transport for distributed mode.

Why kombu and not oslo.messaging: kombu is a small AMQP client library (with
py-amqp underneath) that brings no oslo.config / oslo.log / oslo.service stack
with it, and it lets us decide exactly when a message is acknowledged. Our
casts must be acknowledged only after the handler has run, so that work in
flight on a service that dies is redelivered to another one; oslo.messaging
acknowledges RPC messages before dispatching them.

Topology (all on the AMQP default exchange, routing key = queue name):

* one durable queue per topic, named after the topic ("cinder-scheduler",
  "cinder-volume.host@backend"). Every server of a topic consumes from it, so
  servers of the same topic are competing consumers.
* casts are persistent messages. A server takes at most one message per worker
  thread (basic.qos prefetch = workers) and acknowledges a message only after
  its handler returned or raised; a raising cast handler is logged and the
  message acknowledged anyway (handlers record failures in the database). If
  the server's connection or process dies first, the broker hands the message
  to the next server.
* calls are transient messages with an expiration equal to the call timeout,
  so a service that comes back later does not run a call nobody waits for.
  Each client owns one exclusive reply queue; replies are matched to waiting
  callers by correlation id. A call to a topic that no server consumes fails
  at once with CallTimeout instead of waiting.

Threads: each served topic has one connection thread that talks to the broker
(deliveries, acknowledgements, heartbeats, reconnecting with back-off) and
`workers` daemon threads that run handlers. py-amqp connections are not thread
safe, so workers never touch the consumer connection: they hand finished
messages back to the connection thread, which acknowledges them. Replies and
casts go through one publisher connection guarded by a lock, with kombu's
retry policy (`Producer.publish(retry=True)`) reconnecting on connection loss
and publisher confirms making a cast that returned safely stored.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import kombu
from kombu.exceptions import OperationalError

from cinderblock import exceptions
from cinderblock.rpc import wire
from cinderblock.rpc.base import CallTimeout, Transport

LOG = logging.getLogger(__name__)

DEFAULT_WORKERS = 8
PERSISTENT = 2
TRANSIENT = 1


class BrokerUnavailable(CallTimeout):
    """The message broker cannot be reached (after retrying)."""


def topic_queue(topic: str) -> kombu.Queue:
    """The durable queue shared by every server of `topic`."""
    return kombu.Queue(topic, routing_key=topic, durable=True, auto_delete=False)


class RabbitTransport(Transport):
    """Transport over RabbitMQ; nothing connects until first use.

    `url` is a kombu URL (``amqp://user:pass@host:5672/vhost``; several joined
    by ``;`` are fail-over alternates). Use `make_transport` to pass an
    oslo-style ``rabbit://`` URL.
    """

    def __init__(
        self,
        url: str,
        *,
        workers: int = DEFAULT_WORKERS,
        call_timeout: float = 60.0,
        heartbeat: float = 60.0,
        connect_timeout: float = 5.0,
        publish_retries: int = 3,
        stop_timeout: float = 30.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.url = url
        self.workers = workers
        self.call_timeout = call_timeout
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.stop_timeout = stop_timeout
        self._publisher = _Publisher(self, publish_retries)
        self._servers: dict[str, _TopicServer] = {}
        self._replies: _ReplyListener | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def connection(self, *, heartbeat: float = 0, **transport_options: Any) -> kombu.Connection:
        """A new, not yet connected kombu connection to the broker."""
        return kombu.Connection(
            self.url,
            heartbeat=heartbeat,
            connect_timeout=self.connect_timeout,
            transport_options=transport_options or None,
        )

    # --- Transport ----------------------------------------------------------------
    def serve(self, topic: str, endpoint: object, *, workers: int | None = None) -> None:
        """Consume `topic` with `workers` handler threads; returns once consuming."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("transport is stopped")
            if topic in self._servers:
                raise ValueError(f"this transport already serves {topic}")
            server = _TopicServer(self, topic, endpoint, workers or self.workers)
            self._servers[topic] = server
        server.start()
        if not server.ready.wait(self.connect_timeout * 3 + 5):
            server.stop(0)
            with self._lock:
                self._servers.pop(topic, None)
            raise BrokerUnavailable(f"could not start consuming {topic} at {self._safe_url()}")

    def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        body = wire.encode_request(method, kwargs)
        self._publisher.publish(body, topic, delivery_mode=PERSISTENT, declare=[topic_queue(topic)])

    def call(self, topic: str, method: str, timeout: float | None = None, **kwargs: Any) -> Any:
        timeout = timeout or self.call_timeout
        deadline = time.monotonic() + timeout
        body = wire.encode_request(method, kwargs)
        if self.consumer_count(topic) == 0:  # BrokerUnavailable if the broker is down
            raise CallTimeout(f"no service consumes {topic}: nobody can answer {method}")
        replies = self._reply_listener(deadline)
        correlation_id = uuid.uuid4().hex
        answer = replies.expect(correlation_id)
        try:
            remaining = max(deadline - time.monotonic(), 0.001)
            self._publisher.publish(
                body,
                topic,
                delivery_mode=TRANSIENT,
                expiration=remaining,
                reply_to=replies.queue_name,
                correlation_id=correlation_id,
            )
            try:
                reply = answer.result(timeout=max(deadline - time.monotonic(), 0))
            except FutureTimeout as err:
                raise CallTimeout(f"{topic}.{method} did not answer within {timeout:g}s") from err
        finally:
            replies.forget(correlation_id)
        return wire.decode_reply(reply)

    def has_server(self, topic: str) -> bool:
        """Whether a server consumes `topic` now (False if the broker is unreachable)."""
        try:
            return self.consumer_count(topic) > 0
        except BrokerUnavailable as err:
            LOG.warning("has_server(%s): %s", topic, err)
            return False

    def consumer_count(self, topic: str) -> int:
        """Consumers on `topic`'s queue (0 if the queue does not exist)."""
        return self._publisher.consumer_count(topic)

    def delete_queue(self, topic: str) -> None:
        """Remove `topic`'s queue and any messages in it (tests, decommissioning)."""
        self._publisher.delete_queue(topic)

    def stop(self, timeout: float | None = None) -> None:
        """Stop consuming, let running handlers finish (up to `timeout`), close connections.

        Messages whose handlers have not finished by then are not acknowledged
        and go back to their queue for another server.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            servers = list(self._servers.values())
            replies = self._replies
        timeout = self.stop_timeout if timeout is None else timeout
        for server in servers:
            server.begin_stop(timeout)
        if replies is not None:
            replies.stopping.set()
        for server in servers:
            server.stop(timeout)
        if replies is not None:
            replies.stop()
        self._publisher.close()

    # --- helpers --------------------------------------------------------------------
    def _reply_listener(self, deadline: float) -> _ReplyListener:
        with self._lock:
            if self._stopped:
                raise RuntimeError("transport is stopped")
            if self._replies is None:
                self._replies = _ReplyListener(self)
                self._replies.start()
            replies = self._replies
        if not replies.ready.wait(max(deadline - time.monotonic(), 0)):
            raise BrokerUnavailable(f"no reply queue at {self._safe_url()} in time")
        return replies

    def _safe_url(self) -> str:
        try:
            return kombu.Connection(self.url).as_uri()  # password masked
        except Exception:
            return "the broker"

    def _dispatch(self, topic: str, endpoint: object, message: Any) -> None:
        """Run one delivered message's handler; for a call, publish the reply."""
        reply_to = message.properties.get("reply_to")
        correlation_id = message.properties.get("correlation_id")
        body = self._run_handler(topic, endpoint, message, is_call=bool(reply_to))
        if reply_to and body is not None:
            self._reply(reply_to, correlation_id, body)

    @staticmethod
    def _run_handler(topic: str, endpoint: object, message: Any, *, is_call: bool) -> bytes | None:
        """The handler's outcome as a reply body (None for casts)."""
        kind = "call" if is_call else "cast"
        try:
            request = wire.decode_request(message.body)
        except wire.MalformedMessage as err:
            LOG.error("dropping malformed %s on %s: %s", kind, topic, err)
            return wire.encode_error("MalformedMessage", "", str(err))
        where = f"{topic}.{request.method}"
        if message.delivery_info.get("redelivered"):
            LOG.warning(
                "%s %s [%s] redelivered: a server stopped before finishing it",
                kind,
                where,
                request.request_id,
            )
        handler = None
        if not request.method.startswith("_"):
            handler = getattr(endpoint, request.method, None)
        if not callable(handler):
            LOG.error("%s %s: no such method", kind, where)
            return wire.encode_error("NoSuchMethod", "", f"{topic} has no method {request.method}")
        try:
            result = handler(**request.kwargs)
        except Exception as exc:
            if not is_call:
                LOG.exception("cast %s [%s] failed", where, request.request_id)
                return None
            expected = isinstance(exc, exceptions.CinderblockError)
            LOG.info(
                "call %s [%s] raised %s: %s",
                where,
                request.request_id,
                type(exc).__name__,
                exc,
                exc_info=not expected,
            )
            return wire.encode_exception(exc)
        if not is_call:
            return None
        try:
            return wire.encode_result(result)
        except (TypeError, ValueError) as err:
            LOG.error("call %s returned a value that is not JSON: %s", where, err)
            return wire.encode_error("TypeError", "builtins", f"{where} returned non-JSON: {err}")

    def _reply(self, reply_to: str, correlation_id: str | None, body: bytes) -> None:
        try:
            self._publisher.publish(
                body, reply_to, delivery_mode=TRANSIENT, correlation_id=correlation_id
            )
        except Exception:
            LOG.exception("could not send the reply to %s", reply_to)


class _Publisher:
    """One connection for everything this process sends, shared under a lock."""

    def __init__(self, transport: RabbitTransport, retries: int) -> None:
        self._transport = transport
        self._policy = {
            "max_retries": retries,
            "interval_start": 0,
            "interval_step": 1,
            "interval_max": 2,
        }
        self._lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._closed = False

    def _connection(self) -> kombu.Connection:
        if self._closed:
            raise RuntimeError("transport is stopped")
        if self._conn is None:
            self._conn = self._transport.connection(
                confirm_publish=True,
                max_retries=self._policy["max_retries"],
                interval_start=0,
                interval_step=1,
                interval_max=2,
            )
        try:
            self._conn.ensure_connection(**self._policy)
        except (OperationalError, OSError) as err:
            raise BrokerUnavailable(
                f"cannot reach the message broker at {self._transport._safe_url()}: {err}"
            ) from err
        return self._conn

    def _reset(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.release()
        self._producer = None

    def publish(
        self,
        body: bytes,
        routing_key: str,
        *,
        declare: list[kombu.Queue] | None = None,
        **properties: Any,
    ) -> None:
        with self._lock:
            conn = self._connection()
            try:
                if self._producer is None:
                    self._producer = kombu.Producer(conn.channel())
                self._producer.publish(
                    body,
                    routing_key=routing_key,
                    exchange="",
                    content_type=wire.CONTENT_TYPE,
                    content_encoding=wire.CONTENT_ENCODING,
                    declare=declare,
                    retry=True,
                    retry_policy=self._policy,
                    timeout=self._transport.connect_timeout * 2,
                    confirm_timeout=self._transport.connect_timeout * 2,
                    **properties,
                )
            except Exception as err:
                self._reset()
                if isinstance(err, (OperationalError, OSError, *conn.connection_errors)):
                    raise BrokerUnavailable(f"could not publish to {routing_key}: {err}") from err
                raise

    def _with_channel(self, operation: Any) -> Any:
        """Run `operation(connection, channel)` on a fresh channel, reconnecting once."""
        with self._lock:
            for attempt in range(2):
                conn = self._connection()
                try:
                    channel = conn.channel()
                    try:
                        return operation(conn, channel)
                    finally:
                        with contextlib.suppress(Exception):
                            channel.close()
                except (OSError, *conn.connection_errors) as err:
                    self._reset()
                    with contextlib.suppress(Exception):
                        conn.collect()
                    if attempt:
                        raise BrokerUnavailable(f"lost the message broker: {err}") from err
            raise AssertionError("unreachable")

    def consumer_count(self, topic: str) -> int:
        def count(conn: kombu.Connection, channel: Any) -> int:
            try:
                return int(channel.queue_declare(queue=topic, passive=True).consumer_count)
            except conn.channel_errors:
                return 0  # no such queue: nobody has ever served or cast to it

        return int(self._with_channel(count))

    def delete_queue(self, topic: str) -> None:
        self._with_channel(lambda conn, channel: channel.queue_delete(queue=topic))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._reset()
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.release()
                self._conn = None


class _Loop:
    """A thread that keeps one broker connection open, reconnecting with back-off."""

    name = "rpc"

    def __init__(self, transport: RabbitTransport) -> None:
        self.transport = transport
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.current: kombu.Connection | None = None  # the live connection, for inspection
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            conn = self.transport.connection(heartbeat=self.transport.heartbeat)
            started = time.monotonic()
            try:
                conn.connect()
                self.current = conn
                self.session(conn)
            except Exception as err:
                if self.stopping.is_set():
                    break
                if time.monotonic() - started > 30:
                    delay = 1.0  # it worked for a while: a fresh failure, not a loop
                LOG.warning(
                    "%s: broker connection lost (%s: %s); reconnecting in %.0fs",
                    self.name,
                    type(err).__name__,
                    err,
                    delay,
                )
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)
            finally:
                self.current = None
                with contextlib.suppress(Exception):
                    conn.release()

    def session(self, conn: kombu.Connection) -> None:
        raise NotImplementedError

    @staticmethod
    def drain(conn: kombu.Connection, timeout: float) -> None:
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=timeout)
        conn.heartbeat_check()


class _TopicServer(_Loop):
    def __init__(
        self, transport: RabbitTransport, topic: str, endpoint: object, workers: int
    ) -> None:
        self.name = f"rpc-server-{topic}"
        super().__init__(transport)
        self.topic = topic
        self.endpoint = endpoint
        self.workers = workers
        self._stop_timeout = transport.stop_timeout
        self._work: queue.Queue[Any] = queue.Queue()
        self._done: queue.Queue[Any] = queue.Queue()
        self._inflight = 0  # touched only by the connection thread
        self._threads = [
            threading.Thread(target=self._work_loop, name=f"{self.name}-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        super().start()

    def session(self, conn: kombu.Connection) -> None:
        channel = conn.channel()
        consumer = kombu.Consumer(
            channel,
            queues=[topic_queue(self.topic)],
            on_message=self._on_message,
            prefetch_count=self.workers,
            no_ack=False,
        )
        consumer.consume()
        self.ready.set()
        LOG.info("serving %s with %d workers", self.topic, self.workers)
        while not self.stopping.is_set():
            self._flush(channel)
            self.drain(conn, 0.02 if self._inflight else 1.0)
        with contextlib.suppress(Exception):
            consumer.cancel()
        deadline = time.monotonic() + self._stop_timeout
        while self._inflight and time.monotonic() < deadline:
            self._flush(channel)
            self.drain(conn, 0.05)
        self._flush(channel)
        if self._inflight:
            LOG.warning(
                "%s: %d handlers still running at stop; their messages go back to the queue",
                self.topic,
                self._inflight,
            )

    def _on_message(self, message: Any) -> None:
        if self.stopping.is_set():
            message.requeue()
            return
        self._inflight += 1
        self._work.put(message)

    def _flush(self, channel: Any) -> None:
        while True:
            try:
                message = self._done.get_nowait()
            except queue.Empty:
                return
            self._inflight -= 1
            if message.channel is not channel:
                LOG.info(
                    "%s: finished a message from a lost connection; the broker has redelivered it",
                    self.topic,
                )
                continue
            message.ack()

    def _work_loop(self) -> None:
        while True:
            message = self._work.get()
            if message is None:
                return
            try:
                self.transport._dispatch(self.topic, self.endpoint, message)
            except Exception:
                LOG.exception("%s: dispatch failed", self.topic)
            finally:
                self._done.put(message)

    def begin_stop(self, timeout: float) -> None:
        self._stop_timeout = timeout
        self.stopping.set()

    def stop(self, timeout: float) -> None:
        self.begin_stop(timeout)
        self.join(timeout + 5)
        for _ in self._threads:
            self._work.put(None)


class _ReplyListener(_Loop):
    """Owns this client's exclusive reply queue and hands replies to waiting calls."""

    def __init__(self, transport: RabbitTransport) -> None:
        self.name = "rpc-replies"
        super().__init__(transport)
        self.queue_name = f"cinderblock.reply.{uuid.uuid4().hex}"
        self._waiting: dict[str, Future[bytes]] = {}
        self._lock = threading.Lock()

    def expect(self, correlation_id: str) -> Future[bytes]:
        future: Future[bytes] = Future()
        with self._lock:
            self._waiting[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        with self._lock:
            self._waiting.pop(correlation_id, None)

    def session(self, conn: kombu.Connection) -> None:
        channel = conn.channel()
        reply_queue = kombu.Queue(
            self.queue_name,
            routing_key=self.queue_name,
            exclusive=True,
            durable=False,
            auto_delete=False,
        )
        consumer = kombu.Consumer(
            channel, queues=[reply_queue], on_message=self._on_reply, no_ack=True
        )
        consumer.consume()
        self.ready.set()
        try:
            while not self.stopping.is_set():
                self.drain(conn, 1.0)
        finally:
            self.ready.clear()

    def _on_reply(self, message: Any) -> None:
        correlation_id = message.properties.get("correlation_id")
        with self._lock:
            future = self._waiting.pop(correlation_id, None)
        if future is None:
            LOG.debug("dropping a late reply (%s)", correlation_id)
            return
        future.set_result(message.body)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
