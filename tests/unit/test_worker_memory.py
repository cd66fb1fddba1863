"""The worker base on kombu's memory:// transport: ack, retry and dead-letter decisions."""

import time
import uuid

import pytest
from kombu import Connection, Consumer

from shared.errors import Permanent, Transient
from shared.events import MAIL_PARSED, MAIL_RECEIVED, Event
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import Worker
from tests.support.stages import run_until_empty


class Handler:
    stage = "parse"

    def __init__(self, fail=None):
        self.fail = fail or {}
        self.calls: list[int] = []

    def handle(self, events):
        for e in events:
            self.calls.append(e["raw_id"])
            error = self.fail.get(e["raw_id"])
            if error is not None:
                if isinstance(error, list):
                    if error:
                        raise error.pop()
                else:
                    raise error
        return [("ticket", Event(MAIL_PARSED, dict(e.ids))) for e in events]


def drain(conn, queue, timeout=0.5):
    """Raw bodies and headers of what is in a queue (no decoding: the witness trusts nothing)."""
    bodies = []

    def on_message(m):
        bodies.append((m.body, m.headers))
        m.ack()

    with Connection("memory://") as own, Consumer(own.channel(), queues=[queue], on_message=on_message):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                own.drain_events(timeout=0.05)
            except TimeoutError:
                pass
    return bodies


@pytest.fixture
def env():
    prefix = f"mem{uuid.uuid4().hex[:6]}"
    settings = Settings(queue_prefix=prefix, retry_attempts=2, redeliveries=1, prefetch=8)
    topology = Topology(prefix)
    return settings, topology


def run_worker(settings, topology, handler, events, taken):
    """Publish `events`, run the worker until its queue is empty; it took `taken` messages (retries count)."""
    worker = Worker(settings, topology, handler)
    with Connection("memory://") as conn:
        topology.declare(conn)
        Publisher(conn).publish_events(topology.exchange, "parse", events)
        assert run_until_empty(worker, timeout=20) == taken
        return conn


def test_success_publishes_downstream_and_acks(env):
    settings, topology = env
    handler = Handler()
    events = [Event(MAIL_RECEIVED, {"raw_id": i, "mailbox_id": 1}) for i in range(5)]
    conn = run_worker(settings, topology, handler, events, taken=5)
    out = drain(conn, topology.queue("ticket"))
    assert sorted(__import__("json").loads(b)["ids"]["raw_id"] for b, _ in out) == [0, 1, 2, 3, 4]
    assert drain(conn, topology.queue("parse")) == []


def test_poison_message_is_isolated_and_dead_lettered_with_reason(env):
    settings, topology = env
    handler = Handler(fail={2: Permanent("cannot parse raw 2")})
    events = [Event(MAIL_RECEIVED, {"raw_id": i, "mailbox_id": 1}) for i in range(4)]
    conn = run_worker(settings, topology, handler, events, taken=4)
    ok = drain(conn, topology.queue("ticket"))
    assert len(ok) == 3
    dead = drain(conn, topology.dead_queue("parse"))
    assert len(dead) == 1
    assert b'"raw_id":2' in dead[0][0]
    assert "cannot parse raw 2" in dead[0][1]["x-deskmail-error"]


def test_transient_error_is_retried_then_succeeds(env):
    settings, topology = env
    handler = Handler(fail={1: [Transient("db down"), Transient("db down"), Transient("db down")]})
    # Two in-process attempts fail; the retry queue brings it back (taken twice); the third attempt fails
    # and the fourth succeeds. A redelivery limit of 1 leaves nothing for a third trip.
    conn = run_worker(settings, topology, handler, [Event(MAIL_RECEIVED, {"raw_id": 1, "mailbox_id": 1})], taken=2)
    assert len(drain(conn, topology.queue("ticket"))) == 1
    assert drain(conn, topology.dead_queue("parse")) == []
    assert handler.calls == [1, 1, 1, 1]


def test_undecodable_message_is_dead_lettered_not_dropped(env):
    settings, topology = env
    worker = Worker(settings, topology, Handler())
    with Connection("memory://") as conn:
        topology.declare(conn)
        Publisher(conn).publish([(topology.exchange, "parse", b"\x80\x04pickle!", {})])
        assert run_until_empty(worker, timeout=20) == 1
        dead = drain(conn, topology.dead_queue("parse"))
    assert len(dead) == 1
    assert "undecodable" in dead[0][1]["x-deskmail-error"]


def test_run_until_empty_waits_for_the_queue_not_the_clock(env):
    """The helper the tests rely on: it returns only once the queue is empty, and says so when it is not."""
    settings, topology = env
    forever = Handler(fail={1: Transient("down for good")})
    worker = Worker(Settings(queue_prefix=settings.queue_prefix, retry_attempts=1, redeliveries=10**6),
                    topology, forever)
    with Connection("memory://") as conn:
        topology.declare(conn)
        Publisher(conn).publish_events(topology.exchange, "parse", [Event(MAIL_RECEIVED, {"raw_id": 1, "mailbox_id": 1})])
        with pytest.raises(AssertionError, match="parse queue was not empty after 1 s"):
            run_until_empty(worker, timeout=1)
        assert len(forever.calls) > 3  # it kept taking the message back, it did not sit idle
        assert run_until_empty(Worker(settings, topology, Handler()), timeout=10) == 1  # and then it drains
