"""Exactly once under concurrency: three ticketers, replies before their parents, redeliveries.

Two levels: handlers started together behind a barrier (the tightest race the
database can see: without the conversation locks a reply and its parent, each
not seeing the other, open two requests), and three real Workers consuming
one RabbitMQ queue fed in adversarial order with duplicated events; pika,
not our code, reads what they published.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter

import pika
import psycopg
import pytest
from psycopg.rows import dict_row

from services.ticketer.stage import TicketerHandler
from shared import db as dbmod
from shared.events import REQUEST_CREATED
from shared.topology import Topology
from shared.worker import Worker
from tests.integration.test_ticketer_support import eml, make_mailbox, one, parsed_event, store

pytestmark = pytest.mark.integration


def _chain(tag: str) -> list[bytes]:
    """A <- B <- C, each reply carrying full References."""
    a, b, c = (f"{tag}-{x}@example.com" for x in "abc")
    return [
        eml(a, subject=f"chain {tag}"),
        eml(b, sender="bob@example.com", in_reply_to=a, references=[a]),
        eml(c, in_reply_to=b, references=[a, b]),
    ]


def _race(handlers: list[TicketerHandler], batches: list[list]) -> list[list]:
    barrier = threading.Barrier(len(batches))
    results: list[list] = [[] for _ in batches]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = handlers[i].handle(batches[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_three_ticketers_racing_on_one_conversation_in_every_order(database_url, app):
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        mailbox = make_mailbox(conn)
        pools = [dbmod.make_pool(database_url, max_size=2) for _ in range(3)]
        try:
            handlers = [TicketerHandler(p, app.keys.message_id_key) for p in pools]
            for n, order in enumerate(itertools.permutations(range(3))):
                raws = [store(conn, mailbox["id"], m) for m in _chain(f"perm{n}")]
                batches = [[parsed_event(raws[i], mailbox["id"])] for i in order]
                outputs = _race(handlers, batches)
                request_ids = {ev["request_id"] for out in outputs for _, ev in out}
                assert len(request_ids) == 1, f"order {order}: {request_ids}"
                assert sum(ev.type == REQUEST_CREATED for out in outputs for _, ev in out) == 1
            # One mail handed to all three at once (a redelivery racing its original).
            raw = store(conn, mailbox["id"], eml("dup@example.com"))
            outputs = _race(handlers, [[parsed_event(raw, mailbox["id"])]] * 3)
            assert outputs[0] == outputs[1] == outputs[2]
            assert one(conn, "SELECT count(*) FROM history WHERE raw_id = %s", raw) == 1
            assert one(conn, "SELECT count(*) FROM requests") == 7
        finally:
            for p in pools:
                p.close()


def test_reply_naming_two_requests_while_both_parents_race(database_url, app):
    """C's References cover A and B; A, B and C are handled at the same moment."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        mailbox = make_mailbox(conn)
        pools = [dbmod.make_pool(database_url, max_size=2) for _ in range(3)]
        try:
            handlers = [TicketerHandler(p, app.keys.message_id_key) for p in pools]
            a = store(conn, mailbox["id"], eml("x-a@example.com"))
            b = store(conn, mailbox["id"], eml("x-b@example.com", sender="bob@example.com"))
            c = store(conn, mailbox["id"], eml("x-c@example.com", in_reply_to="x-a@example.com",
                                              references=["x-b@example.com", "x-a@example.com"]))
            _race(handlers, [[parsed_event(r, mailbox["id"])] for r in (c, b, a)])
            rows = {r["raw_id"]: r["request_id"] for r in conn.execute("SELECT raw_id, request_id FROM history")}
            # C always joins A (In-Reply-To first, or A finds its reply C). B joins them
            # too when C was committed before B (B finds the reply naming it), else B
            # keeps its own request; either way no request is left without mail.
            assert rows[c] == rows[a] and len(rows) == 3
            assert one(conn, "SELECT count(*) FROM requests") == len(set(rows.values()))
        finally:
            for p in pools:
                p.close()


def test_three_workers_on_rabbitmq_adversarial_order_and_duplicates(database_url, settings, app):
    conversations = 25
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        mailbox = make_mailbox(conn)
        chains = [[store(conn, mailbox["id"], m) for m in _chain(f"w{i}")] for i in range(conversations)]
    # Newest first everywhere (every reply before its parent), and every 4th event twice.
    events = [parsed_event(r, mailbox["id"]) for chain in chains for r in reversed(chain)]
    events += events[::4]
    topology = Topology(settings.queue_prefix, settings.retry_delay_ms)
    params = pika.URLParameters(settings.amqp_url)
    with app.broker() as kconn:
        topology.declare(kconn)
    witness = pika.BlockingConnection(params)
    ch = witness.channel()
    ch.confirm_delivery()
    for e in events:
        ch.basic_publish(topology.exchange.name, "ticket", e.encode(),
                         pika.BasicProperties(delivery_mode=2))

    pools = [dbmod.make_pool(database_url, max_size=2) for _ in range(3)]
    workers = [Worker(settings, topology, TicketerHandler(p, app.keys.message_id_key)) for p in pools]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        total = 3 * conversations
        deadline = time.monotonic() + 60
        published: list[dict] = []
        while time.monotonic() < deadline and len(published) < len(events):
            method, _props, body = ch.basic_get(topology.queue_name("reply"), auto_ack=True)
            if method is None:
                time.sleep(0.05)
                continue
            published.append(json.loads(body))
        assert len(published) == len(events), "every event, duplicates too, produced one output"
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(10)
        for p in pools:
            p.close()
        witness.close()
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        assert one(conn, "SELECT count(*) FROM history") == total
        assert one(conn, "SELECT count(*) FROM requests") == conversations
        request_of = {r["raw_id"]: r["request_id"] for r in conn.execute("SELECT raw_id, request_id FROM history")}
        assert all(len({request_of[r] for r in chain}) == 1 for chain in chains), "a conversation was split"
        assert one(conn, "SELECT count(*) FROM remote_messages WHERE state <> 'committed'") == 0
    # Duplicates republished the stored outcome: one distinct envelope per history entry.
    by_history: dict[int, set[str]] = {}
    for body in published:
        by_history.setdefault(body["ids"]["history_id"], set()).add(json.dumps(body, sort_keys=True))
    assert len(by_history) == total and all(len(v) == 1 for v in by_history.values())
    kinds = Counter(body["type"] for body in {json.dumps(b, sort_keys=True): b for b in published}.values())
    assert kinds[REQUEST_CREATED] == conversations
