"""Publishing events with publisher confirms, a batch at a time.

A confirm awaited per message caps the broker near 500 messages/s; here a
batch is published and then all its confirms are awaited together, so callers
that hold many events (the fetcher importing a mailbox) pay one round trip.
`publish` returns only once the broker has confirmed every message; a nack or
a lost connection raises, and the caller has not yet acked or marked anything,
so the events are published again later (stages are idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kombu import Connection, Exchange, Producer

from shared.events import Event


class PublishFailed(ConnectionError):
    """The broker did not confirm every message; treat as transient."""


class Publisher:
    def __init__(self, connection: Connection, confirm_timeout: float = 30.0) -> None:
        self._connection = connection
        self._timeout = confirm_timeout
        self._producer: Producer | None = None
        self._confirms = connection.transport.driver_type == "amqp"
        self._published = 0
        self._acked = 0
        self._nacked = False

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._connection.ensure_connection(max_retries=3)
            channel = self._connection.channel()
            if self._confirms:
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
            self._producer = Producer(channel)
            self._published = self._acked = 0
            self._nacked = False
        return self._producer

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._acked = max(self._acked, tag) if multiple else self._acked + 1

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked = True

    def publish(
        self,
        items: Iterable[tuple[Exchange, str, bytes, dict[str, object]]],
    ) -> int:
        """Publish (exchange, routing_key, body, headers) items; wait for all confirms."""
        try:
            producer = self._ensure()
            count = 0
            for exchange, routing_key, body, headers in items:
                producer.publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    delivery_mode=2,
                    content_type="application/json",
                    content_encoding="utf-8",
                    headers=headers,
                    serializer=None,
                )
                count += 1
            self._published += count
            self._wait()
            return count
        except Exception:
            self.reset()
            raise

    def publish_events(self, exchange: Exchange, routing_key: str, events: list[Event]) -> int:
        return self.publish((exchange, routing_key, e.encode(), {}) for e in events)

    def _wait(self) -> None:
        if not self._confirms:
            return
        deadline = time.monotonic() + self._timeout
        while self._acked < self._published and not self._nacked:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PublishFailed(f"{self._published - self._acked} publishes not confirmed")
            try:
                self._connection.drain_events(timeout=min(left, 1.0))
            except TimeoutError:
                continue
        if self._nacked:
            raise PublishFailed("the broker refused (nacked) a published message")

    def reset(self) -> None:
        """Forget the channel after an error; the next publish opens a new one."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.channel.close()
            except Exception:  # noqa: BLE001 - the channel is already broken
                # The connection may be broken too: drop it so the next publish reconnects.
                self._connection.collect()
