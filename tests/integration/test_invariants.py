"""Invariants 1 to 4 of DESIGN.md on the real RabbitMQ and PostgreSQL.

Each test would fail without the invariant it names. Mail comes from a local
Maildir here (the IMAP and POP3 paths have their own tests against Dovecot).
"""

from __future__ import annotations

import json
import mailbox as stdlib_mailbox
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest

from services.app import App
from services.fetcher.poll import Poller
from services.parser.stage import ParserHandler
from services.ticketer.stage import TicketerHandler
from shared import mailboxes
from shared.db import transaction
from shared.events import MAIL_PARSED, MAIL_RECEIVED, Event
from shared.mailserver.connect import open_remote
from shared.publisher import Publisher
from shared.worker import Worker, connect
from tests.conftest import AMQP_URL, stage_env
from tests.support.stages import run_until_empty

pytestmark = pytest.mark.integration


def mail(n: int, size: int = 0) -> bytes:
    filler = ("x" * 76 + "\n") * (size // 77)
    return (
        f"From: Customer {n} <customer{n}@example.com>\nTo: support@acme.test\n"
        f"Subject: Problem {n}\nMessage-ID: <m{n}@example.com>\n\nHelp me {n}.\n{filler}"
    ).encode()


def make_maildir(root: Path, mails: list[bytes]) -> Path:
    box = stdlib_mailbox.Maildir(root / "Maildir", create=True)
    for m in mails:
        box.add(m)
    return root / "Maildir"


def add_mailbox(app: App, maildir: Path, **extra: object) -> int:
    with transaction(app.pool) as conn:
        return mailboxes.create(conn, app.keys, {
            "from_name": "Support", "address": "support@acme.test", "account_type": "maildir",
            "host": str(maildir), "username": "x", "security": "none", "poll_interval": 1, **extra,
        }, password=None)


def count(app: App, sql: str, *params: object) -> int:
    with app.pool.connection() as conn:
        return int(conn.execute(sql, params).fetchone()["n"])


def queue_bodies(queue: str) -> list[tuple[bytes, pika.BasicProperties]]:
    """What is really on the broker, read with pika: the independent witness."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        found = []
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            found.append((body, props))
        channel.close()  # unacked: they go back to the queue
        return found
    finally:
        connection.close()


def poll_once(app: App, mailbox_id: int) -> None:
    with connect(app.settings) as conn:
        app.topology.declare(conn)
        with app.pool.connection() as c:
            mb = mailboxes.get(c, mailbox_id, app.keys)
        remote = open_remote(mb)
        try:
            Poller(app.pool, Publisher(conn), app.topology).poll(mb, remote)
        finally:
            remote.close()


# -- invariant 1: no mail is lost ---------------------------------------------


def test_mail_leaves_the_mailbox_only_after_its_request_is_committed(app, tmp_path):
    maildir = make_maildir(tmp_path, [mail(1), mail(2)])
    mailbox_id = add_mailbox(app, maildir, archive=True)
    poll_once(app, mailbox_id)
    assert count(app, "SELECT count(*) AS n FROM raw_messages") == 2
    # Parsed but no ticketer has committed a request: a second poll must not archive.
    ParserHandler(app.pool).handle([Event(MAIL_RECEIVED, {"raw_id": r, "mailbox_id": mailbox_id})
                                    for r in (1, 2)])
    poll_once(app, mailbox_id)
    assert len(stdlib_mailbox.Maildir(maildir, create=False)) == 2
    # Commit the request for one mail only: exactly that one is archived.
    TicketerHandler(app.pool, app.keys.message_id_key).handle(
        [Event(MAIL_PARSED, {"raw_id": 1, "mailbox_id": mailbox_id})])
    poll_once(app, mailbox_id)
    remaining = [m["Message-ID"] for m in stdlib_mailbox.Maildir(maildir, create=False)]
    assert remaining == ["<m2@example.com>"]
    archived = stdlib_mailbox.Maildir(maildir, create=False).get_folder("deskmail_archive")
    assert [m["Message-ID"] for m in archived] == ["<m1@example.com>"]


def test_raw_bytes_are_committed_before_publishing_and_republished_after_a_failure(app, tmp_path):
    maildir = make_maildir(tmp_path, [mail(1)])
    mailbox_id = add_mailbox(app, maildir)

    class BrokenPublisher(Publisher):
        def publish(self, items):  # the broker is gone right after the commit
            raise ConnectionError("broker unreachable")

    with connect(app.settings) as conn:
        app.topology.declare(conn)
        with app.pool.connection() as c:
            mb = mailboxes.get(c, mailbox_id, app.keys)
        remote = open_remote(mb)
        with pytest.raises(ConnectionError):
            Poller(app.pool, BrokenPublisher(conn), app.topology).poll(mb, remote)
        remote.close()
    with app.pool.connection() as c:
        row = c.execute("SELECT state, length(r.data) AS size FROM remote_messages m"
                        " JOIN raw_messages r ON r.id = m.raw_id").fetchone()
    assert row == {"state": "stored", "size": len(mail(1))}
    assert queue_bodies(app.topology.queue_name("parse")) == []
    poll_once(app, mailbox_id)  # the next poll publishes what was never confirmed
    bodies = queue_bodies(app.topology.queue_name("parse"))
    assert [json.loads(b)["ids"]["raw_id"] for b, _ in bodies] == [1]
    assert count(app, "SELECT count(*) AS n FROM raw_messages") == 1


# -- invariant 2: no duplicates --------------------------------------------------


def test_second_poll_before_archive_imports_nothing_new(app, tmp_path):
    maildir = make_maildir(tmp_path, [mail(1), mail(2), mail(3)])
    mailbox_id = add_mailbox(app, maildir)
    poll_once(app, mailbox_id)
    poll_once(app, mailbox_id)
    assert count(app, "SELECT count(*) AS n FROM raw_messages") == 3
    assert len(queue_bodies(app.topology.queue_name("parse"))) == 3


def test_every_stage_is_idempotent_under_redelivery(app, tmp_path):
    maildir = make_maildir(tmp_path, [mail(1)])
    mailbox_id = add_mailbox(app, maildir, auto_reply=True)
    poll_once(app, mailbox_id)
    received = Event(MAIL_RECEIVED, {"raw_id": 1, "mailbox_id": mailbox_id})
    parsed = Event(MAIL_PARSED, {"raw_id": 1, "mailbox_id": mailbox_id})
    parser = ParserHandler(app.pool)
    assert parser.handle([received]) == parser.handle([received])
    ticketer = TicketerHandler(app.pool, app.keys.message_id_key)
    first, again = ticketer.handle([parsed]), ticketer.handle([parsed])
    assert first == again  # the stored outcome is published again, not a new one
    assert count(app, "SELECT count(*) AS n FROM requests") == 1
    assert count(app, "SELECT count(*) AS n FROM history WHERE kind = 'incoming'") == 1
    assert count(app, "SELECT count(*) AS n FROM parsed_messages") == 1


def _rabbit_watermark(value: str) -> None:
    subprocess.run(["rabbitmqctl", "set_vm_memory_high_watermark", value],
                   check=True, capture_output=True, timeout=60)


@pytest.mark.slow
def test_ticketer_killed_after_commit_before_ack_makes_nothing_twice(app, tmp_path):
    """The real crash: a ticketer process commits, then dies before its ack."""
    maildir = make_maildir(tmp_path, [mail(1)])
    mailbox_id = add_mailbox(app, maildir)
    poll_once(app, mailbox_id)
    ParserHandler(app.pool).handle([Event(MAIL_RECEIVED, {"raw_id": 1, "mailbox_id": mailbox_id})])
    with connect(app.settings) as conn:
        Publisher(conn).publish_events(app.topology.exchange, "ticket",
                                       [Event(MAIL_PARSED, {"raw_id": 1, "mailbox_id": mailbox_id})])
    env = stage_env(app.settings)
    # A memory alarm makes RabbitMQ stop reading from publishing connections, so
    # the ticketer's publish (after its commit, before its ack) waits for a
    # confirm that does not come: the window in which we kill it.
    _rabbit_watermark("0")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "ticketer"], env=env,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while count(app, "SELECT count(*) AS n FROM history") == 0:
            assert time.monotonic() < deadline, "the ticketer never committed"
            time.sleep(0.1)
        time.sleep(0.3)
        proc.kill()
        proc.wait(10)
    finally:
        _rabbit_watermark("0.4")
    assert count(app, "SELECT count(*) AS n FROM remote_messages WHERE state = 'committed'") == 1
    # The unacked event is redelivered to a new ticketer: nothing new is made.
    worker = Worker(app.settings, app.topology, TicketerHandler(app.pool, app.keys.message_id_key))
    assert run_until_empty(worker) == 1  # the redelivered event
    assert count(app, "SELECT count(*) AS n FROM requests") == 1
    assert count(app, "SELECT count(*) AS n FROM history") == 1
    # The killed ticketer's own publish may still reach the broker once it
    # unblocks (at-least-once); every event there names the one stored outcome.
    replies = {body for body, _ in queue_bodies(app.topology.queue_name("reply"))}
    assert [json.loads(b)["type"] for b in replies] == ["request.created"]


# -- invariant 3: events are small ----------------------------------------------


def test_events_carry_ids_only_even_for_a_large_mail(app, tmp_path):
    maildir = make_maildir(tmp_path, [mail(1, size=2_000_000)])
    mailbox_id = add_mailbox(app, maildir)
    poll_once(app, mailbox_id)
    [(body, props)] = queue_bodies(app.topology.queue_name("parse"))
    assert len(body) < 200
    assert json.loads(body) == {"type": "mail.received", "v": 1, "ids": {"raw_id": 1, "mailbox_id": mailbox_id}}
    assert props.content_type == "application/json"


# -- invariant 4: at-least-once, with a bound ----------------------------------------


def test_queues_are_durable_quorum_queues_and_messages_persistent(app, tmp_path):
    maildir = make_maildir(tmp_path, [mail(1)])
    poll_once(app, add_mailbox(app, maildir))
    [(_, props)] = queue_bodies(app.topology.queue_name("parse"))
    assert props.delivery_mode == 2
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    for stage in ("parse", "ticket", "reply"):
        name = app.topology.queue_name(stage)
        for queue in (name, f"{name}.retry", f"{name}.dead"):
            channel.queue_declare(queue, passive=True)  # raises if missing
            with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="PRECONDITION_FAILED"):
                # Redeclaring as a classic queue fails only because it is a quorum queue.
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
            channel = connection.channel()
    connection.close()


def test_transient_failures_are_retried_later_and_permanent_ones_dead_lettered(app):
    calls: dict[int, int] = {}

    class Flaky:
        stage = "parse"

        def handle(self, events):
            for e in events:
                calls[e["raw_id"]] = calls.get(e["raw_id"], 0) + 1
                if e["raw_id"] == 1 and calls[1] <= 2 * app.settings.retry_attempts:
                    raise ConnectionError("database restarting")  # transient: retry queue, then back
                if e["raw_id"] == 2:
                    raise ValueError("no such raw message")  # permanent: dead letter at once
            return [("ticket", Event(MAIL_PARSED, dict(e.ids))) for e in events]

    with connect(app.settings) as conn:
        app.topology.declare(conn)
        Publisher(conn).publish_events(app.topology.exchange, "parse",
                                       [Event(MAIL_RECEIVED, {"raw_id": i, "mailbox_id": 1}) for i in (1, 2)])
    # Both taken, and raw 1 again each time it comes back from the retry queue.
    assert run_until_empty(Worker(app.settings, app.topology, Flaky())) >= 3
    assert [json.loads(b)["ids"]["raw_id"] for b, _ in queue_bodies(app.topology.queue_name("ticket"))] == [1]
    # More attempts than the in-process retries allow: it came back through the retry queue.
    assert calls[1] == 2 * app.settings.retry_attempts + 1
    [(body, props)] = queue_bodies(app.topology.queue_name("parse") + ".dead")
    assert json.loads(body)["ids"]["raw_id"] == 2
    assert "no such raw message" in props.headers["x-deskmail-error"]
    assert props.headers["x-deskmail-stage"] == "parse"
    assert calls[2] <= 2  # at most once in its batch and once alone: never retried
