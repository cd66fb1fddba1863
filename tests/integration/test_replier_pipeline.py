"""The replier in the whole pipeline: a round trip through Dovecot, loops, and a kill.

- Round trip: all four stages as threads of this process over RabbitMQ, the
  fetcher reading a real Dovecot INBOX; the customer's answer to the staff
  reply lands on the same request.
- Loops: two Deskmail installations whose auto-replies reach each other
  exchange at most one auto-reply each, with the RFC 3834 headers intact and
  with a forwarder that strips them (then the rate limit is the last stop).
- Kill: a replier process SIGKILLed after the SMTP server accepted the mail
  but before it recorded 'sent'; its successor does not send a second one.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from services import runner
from services.app import App
from services.stages import STAGES
from shared.db import transaction
from shared.events import Event
from shared.staff_replies import announce, queue_staff_reply
from tests.conftest import ADMIN_URL, _url, stage_env
from tests.integration.replier_helpers import (
    add_mailbox,
    history,
    ingest,
    mail,
    outgoing,
    replier,
    sink_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def running(app: App, names: tuple[str, ...]) -> Iterator[None]:
    stages = [runner.build(app, n) for n in names]
    threads = [threading.Thread(target=s.run, daemon=True) for s in stages]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for s in stages:
            s.stop()
        for t in threads:
            t.join(timeout=30)


def test_round_trip_through_dovecot(app, dovecot, smtp_sink):
    user = dovecot.new_user("support")
    address = f"{user}@acme.example"
    sink_settings(app, smtp_sink)
    with transaction(app.pool) as conn:
        from shared import mailboxes

        mailboxes.create(conn, app.keys, {
            "from_name": "{{ agent.name if agent else 'ACME Support' }}", "address": address,
            "account_type": "imap", "host": dovecot.host, "port": dovecot.imap_port,
            "username": user, "security": "none", "archive": True, "auto_reply": True,
            "poll_interval": 1}, password=dovecot.password)
    with running(app, STAGES):
        dovecot.append(user, [mail("Ada <ada@customer.example>", address, "Printer broken",
                                   message_id="<rt-1@customer.example>")])
        [auto] = smtp_sink.wait_for(1, timeout=30)
        assert auto.message["In-Reply-To"] == "<rt-1@customer.example>"
        request_id = int(re.search(r"\[#(\d+)\]", auto.message["Subject"]).group(1))

        with transaction(app.pool) as conn:
            oid = queue_staff_reply(conn, request_id, "Grace Hopper", "Please try again now.")
        announce(app.settings, app.topology, [(request_id, oid)])
        staff = smtp_sink.wait_for(2, timeout=30)[1].message
        assert staff["From"] == f"Grace Hopper <{address}>"
        assert staff["In-Reply-To"] == "<rt-1@customer.example>"

        # The customer answers the staff reply, as a mail client would.
        answer = mail("Ada <ada@customer.example>", address, f"Re: {staff['Subject']}",
                      message_id="<rt-2@customer.example>", body="Works now, thanks!",
                      headers=f"In-Reply-To: {staff['Message-ID']}\r\n"
                              f"References: <rt-1@customer.example> {staff['Message-ID']}\r\n")
        dovecot.append(user, [answer])
        entries = wait_until(
            lambda: [h for h in history(app, request_id) if h["kind"] == "incoming"][1:],
            30, "the answer on the request")
        assert entries[0]["message_id"] == "rt-2@customer.example"
        wait_until(lambda: dovecot.folder_count(user, "INBOX") == 0, 30, "archiving")
    kinds = [h["kind"] for h in history(app, request_id)]
    assert kinds == ["incoming", "outgoing", "outgoing", "incoming"]
    with app.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM requests").fetchone()["n"] == 1
    assert len(smtp_sink.messages) == 2  # no auto-reply to the answer (an update)
    assert {r["state"] for r in outgoing(app)} == {"sent"}


@pytest.fixture
def second_app(template_database, settings, tmp_path) -> Iterator[App]:
    """Another Deskmail installation: its own database and secret."""
    name = f"deskmail_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    from dataclasses import replace

    other = App(replace(settings, database_url=_url(name), secret_key="other-" + name,
                        data_dir=tmp_path / "other"))
    yield other
    other.pool.close()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_STRIP = re.compile(rb"^(Auto-Submitted|X-Auto-Response-Suppress|In-Reply-To|References):[^\r]*\r\n",
                    re.MULTILINE | re.IGNORECASE)


@pytest.mark.parametrize("forwarder", ["intact", "strips-headers"])
def test_two_deskmails_exchange_at_most_one_auto_reply_each(app, second_app, smtp_sink, forwarder):
    desks = {"help@a.example": app, "help@b.example": second_app}
    boxes = {}
    for address, desk in desks.items():
        sink_settings(desk, smtp_sink)
        boxes[address] = add_mailbox(desk, address)
    # Mail that each side takes for a person's: the other help desk's address as sender.
    pending = [("help@a.example", mail("help@b.example", "help@a.example", "Order 1")),
               ("help@b.example", mail("help@a.example", "help@b.example", "Order 2"))]
    delivered = 0
    for _round in range(6):  # far more rounds than a loop-free exchange needs
        for address, raw in pending:
            replier(desks[address]).handle(ingest(desks[address], boxes[address], raw))
        got = smtp_sink.messages[delivered:]
        delivered += len(got)
        if forwarder == "strips-headers":
            pending = [(m.rcpt_tos[0], _STRIP.sub(b"", m.data)) for m in got]
        else:
            pending = [(m.rcpt_tos[0], m.data) for m in got]
        if not pending:
            break
    assert not pending, "the auto-replies kept going"
    senders = [m.message["From"].addresses[0].addr_spec for m in smtp_sink.messages]
    assert sorted(senders) == ["help@a.example", "help@b.example"]  # one each, then silence
    for desk in desks.values():
        # The other side's auto-reply either joined a request as an update or
        # was refused: as automatic mail, or (headers stripped) by the rate limit.
        for r in outgoing(desk):
            assert r["state"] == "sent" or "automatic mail" in r["reason"] or (
                "rate limit" in r["reason"]), r


def test_one_deskmail_never_auto_replies_to_its_own_mailboxes(app, smtp_sink):
    sink_settings(app, smtp_sink)
    a, b = add_mailbox(app, "help@a.example"), add_mailbox(app, "help@b.example")
    replier(app).handle(ingest(app, a, mail("help@b.example", "help@a.example")))
    replier(app).handle(ingest(app, b, mail("Help <HELP@A.example>", "help@b.example")))
    assert smtp_sink.messages == []
    rows = outgoing(app)
    # The parser flags it (automatic "own") and the replier checks again itself.
    assert len(rows) == 2 and all(r["state"] == "skipped" and "own" in r["reason"] for r in rows)


@pytest.mark.fault
def test_replier_killed_after_the_server_accepted_sends_no_second_auto_reply(
        app, settings, smtp_sink, tmp_path):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, "support@acme.example")
    events = ingest(app, mailbox, mail("ada@customer.example", "support@acme.example"))
    accepted = threading.Event()
    handler = smtp_sink._controller.handler
    original = handler.handle_DATA

    async def accept_then_stall(*args: object) -> str:
        reply = await original(*args)  # the server has the mail now
        accepted.set()
        await asyncio.sleep(20)  # the replier waits for the 250 ... and is killed
        return reply

    handler.handle_DATA = accept_then_stall
    with app.broker() as conn:
        app.topology.declare(conn)
    announce_created(app, events)
    log = open(tmp_path / "replier.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "replier"],
                            env=stage_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert accepted.wait(60), (tmp_path / "replier.log").read_text()[-3000:]
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    [row] = outgoing(app)
    assert row["state"] == "sending"
    handler.handle_DATA = original

    # The broker redelivers the unacked event to the next replier.
    with running(app, ("replier",)):
        wait_until(lambda: outgoing(app)[0]["state"] == "unknown", 30, "state unknown")
    assert len(smtp_sink.messages) == 1
    [row] = outgoing(app)
    assert "not sent again" in row["reason"]


def announce_created(app: App, events: list[Event]) -> None:
    from shared.publisher import Publisher

    with app.broker() as conn:
        Publisher(conn).publish_events(app.topology.exchange, "reply", events)
