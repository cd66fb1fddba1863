"""The worker base that every consuming stage (parser, ticketer, replier) runs.

A stage supplies a `Handler`: `handle(events) -> outputs`, which commits its
own database transaction and returns the events to publish downstream. The
worker owns everything else, in one place:

    receive a batch (up to `prefetch`)  ->  decode (JSON only; undecodable: dead-letter)
      -> handler.handle(batch), transient errors retried in-process (tenacity)
      -> publish the outputs, confirms awaited (shared/publisher.py)
      -> ack the batch                       (only now: invariant 4)

If a batch fails, its messages are handled one by one so one poison message
does not hold back the rest. A message whose error is still transient after
the in-process retries goes to the stage's delayed retry queue (up to
`redeliveries` times), then to the dead-letter queue; a permanent error goes
to the dead-letter queue at once, with the reason in its headers.

Crash anywhere before the ack and the broker redelivers; handlers are
idempotent (unique keys in the database), so a redelivery produces nothing new.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from kombu import Connection, Consumer, Message
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from shared import metrics
from shared.broker_admin import consuming, refresh_depth_gauges
from shared.errors import is_transient
from shared.events import BadEvent, Event, decode
from shared.health import Heartbeat
from shared.log import bind
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology

log = logging.getLogger(__name__)

Output = tuple[str, Event]  # (stage to route to, event)

REDELIVERIES = "x-deskmail-redeliveries"
ERROR = "x-deskmail-error"
STAGE = "x-deskmail-stage"

# How often a worker measures its own queues for deskmail_queue_depth. Every
# replica does it (the alerts take the max), so the gauge exists as long as
# one consumer runs.
DEPTH_INTERVAL = 15.0


class Handler(Protocol):
    stage: str

    def handle(self, events: Sequence[Event]) -> list[Output]: ...


def connect(settings: Settings) -> Connection:
    options = {"polling_interval": 0.01} if settings.embedded else {}
    return Connection(settings.broker_url, heartbeat=30, transport_options=options)


class Worker:
    # How long a receive waits for a first message before the loop goes round
    # (heartbeat, queue depths). Tests that run a worker until its queue is
    # empty shorten it (tests/support/stages.py).
    receive_wait = 1.0

    def __init__(self, settings: Settings, topology: Topology, handler: Handler) -> None:
        self.settings = settings
        self.topology = topology
        self.handler = handler
        self.stage = handler.stage
        self.heartbeat = Heartbeat(self.stage)
        self.stopping = threading.Event()
        self._batch: list[Message] = []
        self._next_depth = 0.0
        self._retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(settings.retry_attempts),
            wait=wait_random_exponential(multiplier=0.2, max=5),
            before_sleep=self._before_retry,
            reraise=True,
        )

    # -- the loop ---------------------------------------------------------

    def run(self) -> None:
        """Consume until `stop()`; reconnects after broker failures."""
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                with connect(self.settings) as conn, connect(self.settings) as pub_conn:
                    conn.ensure_connection(max_retries=3, callback=self._abandon_if_stopping)
                    self.topology.declare(conn)
                    self.publisher = Publisher(pub_conn)
                    channel = conn.channel()
                    consumer = Consumer(
                        channel,
                        queues=[self.topology.queue(self.stage)],
                        on_message=self._on_message,
                        prefetch_count=self.settings.prefetch,
                    )
                    with consumer, consuming(self.topology.queue_name(self.stage)):
                        backoff = 1.0
                        log.info("consuming", extra={"queue": self.topology.queue_name(self.stage)})
                        while not self.stopping.is_set():
                            self.heartbeat.beat()
                            self._refresh_depths(conn)
                            self._receive(conn)
                            if self._batch:
                                batch, self._batch = self._batch, []
                                self._process(batch)
            except Exception as exc:  # noqa: BLE001 - any broker failure: reconnect
                self._batch = []  # unacked: the broker redelivers them
                log.warning("broker connection lost", extra={"error": repr(exc), "retry_in": backoff})
                # Waiting for the broker is progress of a kind: /readyz reports the
                # outage, and restarting the process (liveness) would not help.
                self.heartbeat.beat()
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        log.info("stopped")

    def stop(self) -> None:
        """Finish and ack what is held, then leave the loop (SIGTERM)."""
        self.stopping.set()

    def _abandon_if_stopping(self) -> None:
        """Called by kombu about once a second while it waits to reconnect: SIGTERM wins."""
        if self.stopping.is_set():
            raise ConnectionAbortedError("stopping while the broker is unreachable")

    def _refresh_depths(self, conn: Connection) -> None:
        if time.monotonic() < self._next_depth:
            return
        self._next_depth = time.monotonic() + DEPTH_INTERVAL
        name = self.topology.queue_name(self.stage)
        try:
            refresh_depth_gauges(conn, (name, f"{name}.retry", f"{name}.dead"))
        except Exception as exc:  # noqa: BLE001 - a missing gauge must not stop consuming
            log.warning("cannot measure queue depth", extra={"error": repr(exc)})

    def _on_message(self, message: Message) -> None:
        self._batch.append(message)

    def _receive(self, conn: Connection) -> None:
        """Wait up to `receive_wait` for a message, then gather what else is ready."""
        try:
            conn.drain_events(timeout=self.receive_wait)
        except TimeoutError:
            conn.heartbeat_check()
            return
        while self._batch and len(self._batch) < self.settings.prefetch:
            try:
                conn.drain_events(timeout=0.002)
            except TimeoutError:
                return

    # -- handling ---------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        decoded: list[tuple[Message, Event]] = []
        for message in messages:
            try:
                decoded.append((message, decode(message.body)))
            except BadEvent as exc:
                self._dead_letter(message, f"undecodable event: {exc}", None)
        if not decoded:
            return
        started = time.perf_counter()
        try:
            self._handle_and_ack(decoded)
        except Exception as exc:  # noqa: BLE001 - isolate the message that fails
            if len(decoded) == 1:
                self._fail(*decoded[0], exc)
            else:
                for item in decoded:
                    try:
                        self._handle_and_ack([item])
                    except Exception as one_exc:  # noqa: BLE001
                        self._fail(*item, one_exc)
        # One observation per message, so the histogram's count is the number
        # of messages handled and its rate the stage's throughput.
        per_message = (time.perf_counter() - started) / len(decoded)
        histogram = metrics.HANDLE_SECONDS.labels(self.stage)
        for _ in decoded:
            histogram.observe(per_message)

    def _handle_and_ack(self, items: list[tuple[Message, Event]]) -> None:
        events = [event for _, event in items]
        with bind(**_log_ids(events)):
            outputs = self._retrying(self.handler.handle, events)
            self._publish(outputs)
            self._ack([message for message, _ in items])
        metrics.HANDLED.labels(self.stage).inc(len(items))

    def _ack(self, messages: list[Message]) -> None:
        """Ack a handled batch: on RabbitMQ one basic.ack with multiple=True for all of it.

        Every delivery before the batch on this channel is settled already
        (batches are handled in delivery order, each message acked or routed),
        so acking up to the batch's last tag acks exactly the batch. One frame
        instead of one per message: less work for the stage and the broker.
        kombu's in-memory transport ignores `multiple`, so there each is acked.
        """
        last = messages[-1]
        tags = [m.delivery_tag for m in messages]
        if self.settings.embedded or len(messages) == 1 or tags != sorted(tags):
            for message in messages:
                message.ack()
            return
        last.ack(multiple=True)

    def _publish(self, outputs: list[Output]) -> None:
        if outputs:
            self.publisher.publish(
                (self.topology.exchange, stage, event.encode(), {}) for stage, event in outputs
            )

    def _before_retry(self, state: object) -> None:
        metrics.FAILED.labels(self.stage).inc()
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        log.warning("transient error, retrying", extra={"error": repr(error)})

    def _fail(self, message: Message, event: Event, error: Exception) -> None:
        """Route a message whose handling failed: delayed retry or dead letter."""
        with bind(**_log_ids([event])):
            self._route_failure(message, event, error)

    def _route_failure(self, message: Message, event: Event, error: Exception) -> None:
        metrics.FAILED.labels(self.stage).inc()
        redeliveries = int((message.headers or {}).get(REDELIVERIES, 0))
        if is_transient(error) and redeliveries < self.settings.redeliveries:
            # memory:// has no TTL or dead-lettering: requeue on the stage queue itself.
            exchange = self.topology.exchange if self.settings.embedded else self.topology.retry_exchange
            headers = {**(message.headers or {}), REDELIVERIES: redeliveries + 1, ERROR: repr(error)[:500]}
            self.publisher.publish([(exchange, self.stage, message.body, headers)])
            message.ack()
            metrics.RETRIED.labels(self.stage).inc()
            log.warning("sent to retry queue", extra={"error": repr(error), "redelivery": redeliveries + 1})
        else:
            self._dead_letter(message, repr(error), event)

    def _dead_letter(self, message: Message, reason: str, event: Event | None) -> None:
        headers = {
            **(message.headers or {}),
            ERROR: reason[:1000],
            STAGE: self.stage,
            "x-deskmail-failed-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.publisher.publish([(self.topology.dead_exchange, self.stage, message.body, headers)])
        message.ack()
        metrics.DEAD_LETTERED.labels(self.stage).inc()
        log.error("dead-lettered", extra={"reason": reason[:1000], "event_type": event.type if event else None})


def _log_ids(events: Sequence[Event]) -> dict[str, object]:
    """The ids to bind to log lines about these events: raw_id=7 for one, raw_ids=[7, 8] for a batch."""
    if len(events) == 1:
        return {k: v for k, v in events[0].ids.items() if k.endswith("_id")}
    keys = dict.fromkeys(k for e in events for k in e.ids if k.endswith("_id"))
    return {f"{k}s": sorted({e.ids[k] for e in events if k in e.ids}) for k in keys}
