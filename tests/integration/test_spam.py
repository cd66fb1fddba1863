"""Spam verdicts against the tests' real rspamd, and what the ticketer and replier make of them.

The parser's, ticketer's and replier's handlers run in this process on the
real PostgreSQL; rspamd is the private instance of scripts/rspamd.sh
(Debian's rspamd, stock rules, Bayes in Redis). The mails are written here:
GTUBE, rspamd's standard spam test string; a plain customer mail; a mail
"from" bank.example, whose DMARC policy (p=reject) the instance's DNS
answers and which nothing signs, so it fails DMARC as a forgery would.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest

from services.parser.verdicts import CHECKS
from shared.db import transaction
from shared.spam import decisions
from shared.spam.health import spam_check_health
from tests.integration.replier_helpers import (
    add_mailbox,
    ingest,
    mail,
    outgoing,
    replier,
    sink_settings,
)
from tests.integration.spam_helpers import notes, one, request_of, rows, with_rspamd
from tests.support.rspamd import GTUBE

pytestmark = pytest.mark.integration

SUPPORT = "support@acme.example"


def gtube(sender: str = "Winner <promo@spam.example>") -> bytes:
    return mail(sender, SUPPORT, "You have won", body=f"Claim now.\r\n\r\n{GTUBE}\r\n")


def ordinary(sender: str = "Ada Lovelace <ada@customer.example>", subject: str = "Printer broken",
             **kw: object) -> bytes:
    kw.setdefault("body", "Hello, my printer prints blank pages since yesterday.\r\nCan you help? Regards, Ada")
    return mail(sender, SUPPORT, subject, **kw)  # type: ignore[arg-type]


@pytest.fixture
def desk(app, rspamd, smtp_sink):
    """(app, rspamd-on settings, mailbox id): auto-reply on, SMTP to the sink."""
    sink_settings(app, smtp_sink)
    return app, with_rspamd(app.settings, rspamd), add_mailbox(app, SUPPORT)


def test_gtube_is_a_spam_request_without_auto_reply_and_an_ordinary_mail_is_not(desk, smtp_sink):
    app, on, box = desk
    events = ingest(app, box, gtube(), ordinary(), settings=on)
    replier(app).handle(events)
    spam_id, ham_id = (e["request_id"] for e in events)
    spam, ham = (one(app, "SELECT * FROM requests WHERE id = %s", i) for i in (spam_id, ham_id))
    assert spam["spam"] and "rspamd" in spam["spam_reason"] and "action reject" in spam["spam_reason"]
    assert not ham["spam"]
    verdicts = {r["raw_id"]: r for r in rows(app, "SELECT * FROM spam_verdicts")}
    assert {v["state"] for v in verdicts.values()} == {"rspamd"}
    assert sorted(v["action"] for v in verdicts.values()) == ["no action", "reject"]
    assert any("GTUBE" in v["symbols"] for v in verdicts.values())
    assert any(n.startswith("spam by rspamd: score 15") for n in notes(app, spam_id))
    [auto_spam] = outgoing(app, spam_id)
    assert auto_spam["state"] == "skipped" and auto_spam["reason"].startswith("spam (rspamd: score 15")
    [auto_ham] = outgoing(app, ham_id)
    assert auto_ham["state"] == "sent"
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["ada@customer.example"]]


def test_releasing_spam_sends_its_auto_reply_once(desk, smtp_sink):
    app, on, box = desk
    [event] = ingest(app, box, gtube("Bob <bob@customer.example>"), settings=on)
    replier(app).handle([event])
    assert smtp_sink.messages == []
    request_id = event["request_id"]
    with transaction(app.pool) as conn:
        decided = decisions.release(conn, request_id, "Grace")
    # What `announce` would publish, handled by the replier twice (a redelivery, a sweep).
    events = [e for _, e in decided.events]
    replier(app).handle(events)
    replier(app).handle(events)
    [sent] = smtp_sink.wait_for(1)
    assert sent.rcpt_tos == ["bob@customer.example"]
    assert [r["state"] for r in outgoing(app, request_id)] == ["sent"]
    assert not one(app, "SELECT spam FROM requests WHERE id = %s", request_id)["spam"]
    assert any("released from spam by Grace" in n for n in notes(app, request_id))
    with transaction(app.pool) as conn, pytest.raises(decisions.NotSpam):
        decisions.release(conn, request_id, "Grace")  # once released, there is nothing to release
    time.sleep(0.2)
    assert len(smtp_sink.messages) == 1


def test_the_sweep_announces_a_release_whose_event_was_lost(desk, smtp_sink):
    app, on, box = desk
    [event] = ingest(app, box, gtube("Carol <carol@customer.example>"), settings=on)
    replier(app).handle([event])
    with transaction(app.pool) as conn:
        decisions.release(conn, event["request_id"], "Grace")  # ... and the process dies here
    with app.pool.connection() as conn:
        assert decisions.due(conn, 3600) == []  # within the grace period: nothing yet
        [(route, again)] = decisions.due(conn, 0)
    assert route == "reply" and again["request_id"] == event["request_id"]
    replier(app).handle([again])
    assert smtp_sink.wait_for(1)[0].rcpt_tos == ["carol@customer.example"]
    with app.pool.connection() as conn:
        assert decisions.due(conn, 0) == []  # decided now: never announced again


def test_decisions_teach_rspamd_and_a_mailbox_threshold_decides(desk, rspamd):
    app, on, box = desk
    # rspamd knows a mail it learned by its content: new words each run. (GTUBE is never learned.)
    words = " ".join(uuid.uuid4().hex for _ in range(20))
    [spam_event] = ingest(app, box, ordinary(subject="Cheap watches",
                                             body=f"Cheap watches, best prices, order today {words}"),
                          settings=on)
    assert not one(app, "SELECT spam FROM requests WHERE id = %s", spam_event["request_id"])["spam"]
    # A strict mailbox: every mail scoring 0.5 or more is spam (an ordinary one scores about 3 here).
    with transaction(app.pool) as conn:
        conn.execute("UPDATE mailboxes SET spam_threshold = 0.5 WHERE id = %s", (box,))
    [ham_event] = ingest(app, box, ordinary("Dan <dan@customer.example>", "Quote",
                                            body=f"Please quote for the {words} parts."), settings=on)
    request = one(app, "SELECT * FROM requests WHERE id = %s", ham_event["request_id"])
    assert request["spam"] and "action no action" in request["spam_reason"]
    before = rspamd.learned()
    with transaction(app.pool) as conn:
        marked = decisions.mark_spam(conn, spam_event["request_id"], "Grace")
        released = decisions.release(conn, ham_event["request_id"], "Grace")
    results = decisions.teach(app.pool, on, marked.training_ids + released.training_ids)
    assert [(r["verdict"], r["learned"]) for r in results] == [("spam", True), ("ham", True)]
    assert rspamd.learned() == before + 2
    # Taught again (the same mail): rspamd learns it or says it knows it (HTTP 208); neither fails.
    assert decisions.teach(app.pool, on, marked.training_ids)[0]["learned"] is True
    stored = rows(app, "SELECT verdict, learned, outcome FROM spam_training ORDER BY id")
    assert [(r["verdict"], r["learned"]) for r in stored] == [("spam", True), ("ham", True)]


def test_a_wrong_controller_password_is_recorded_not_raised(desk, rspamd):
    app, on, box = desk
    [event] = ingest(app, box, ordinary(), settings=on)
    with transaction(app.pool) as conn:
        marked = decisions.mark_spam(conn, event["request_id"], "Grace")
    from dataclasses import replace
    [result] = decisions.teach(app.pool, replace(on, rspamd_password="wrong"), marked.training_ids)
    assert result["learned"] is False and "refused the password" in result["outcome"]
    assert one(app, "SELECT learned FROM spam_training")["learned"] is False
    assert one(app, "SELECT spam FROM requests WHERE id = %s", event["request_id"])["spam"]  # the decision stands


def _silent_server() -> tuple[socket.socket, str]:
    """A port that accepts connections and never answers: rspamd hung."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


def test_rspamd_unreachable_or_hung_lets_mail_through_unchecked(app, smtp_sink):
    sink_settings(app, smtp_sink)
    box = add_mailbox(app, SUPPORT)
    from dataclasses import replace
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    before = CHECKS.labels("unchecked")._value.get()
    down = replace(app.settings, rspamd_url=f"http://127.0.0.1:{port}", rspamd_timeout=0.5)
    events = ingest(app, box, ordinary(message_id="<down@x.example>"), settings=down)
    server, url = _silent_server()
    try:
        hung = replace(app.settings, rspamd_url=url, rspamd_timeout=0.5)
        started = time.monotonic()
        events += ingest(app, box, *(ordinary(message_id=f"<hung-{i}@x.example>") for i in range(20)),
                         settings=hung)
        took = time.monotonic() - started
    finally:
        server.close()
    assert took < 5, f"a hung rspamd held 20 mails up for {took:.1f} s"
    replier(app).handle(events)
    verdicts = rows(app, "SELECT state, problem FROM spam_verdicts ORDER BY raw_id")
    assert len(verdicts) == 21 and {v["state"] for v in verdicts} == {"unchecked"}
    assert "connection refused" in verdicts[0]["problem"]
    assert all("did not answer within 0.5 s" in v["problem"] for v in verdicts[1:])
    assert CHECKS.labels("unchecked")._value.get() == before + 21
    assert len(events) == 21 and not any(one(app, "SELECT spam FROM requests WHERE id = %s",
                                             e["request_id"])["spam"] for e in events)
    smtp_sink.wait_for(1)  # the same customer: the rate limit lets one auto-reply through
    with app.pool.connection() as conn:
        health = spam_check_health(conn, configured=True)
    assert health.needs_attention and health.unchecked == 21
    assert health.describe().startswith("21 mail(s) not checked by rspamd in the last 1 h; latest: rspamd")
    # `deskmail status`, the status page and /api/v1/status say so too.
    from services.admin import operations
    from services.app import App
    desk = App(hung)
    try:
        status = operations.status(desk)
    finally:
        desk.pool.close()
    assert status["needs_attention"]
    assert any(p.startswith("21 mail(s) not checked by rspamd") for p in status["problems"])


def test_a_sender_failing_dmarc_cannot_join_by_the_tag_alone_and_gets_no_auto_reply(desk, smtp_sink):
    app, on, box = desk
    [first] = ingest(app, box, ordinary("Ada <ada@customer.example>"), settings=on)
    tag = f"[#{first['request_id']}]"
    with transaction(app.pool) as conn:  # the forger names the customer's colleague, already on it
        conn.execute("INSERT INTO request_people (request_id, address) VALUES (%s, 'ceo@bank.example')",
                     (first["request_id"],))
    forged = mail("CEO <ceo@bank.example>", SUPPORT, f"{tag} Please pay invoice 7",
                  body="Pay it today.")
    [event] = ingest(app, box, forged, settings=on)
    assert event.type == "request.created" and event["request_id"] != first["request_id"]
    request = one(app, "SELECT * FROM requests WHERE id = %s", event["request_id"])
    assert "failed DMARC (bank.example publishes policy reject)" in request["no_auto_reply"]
    replier(app).handle([event])
    [auto] = outgoing(app, event["request_id"])
    assert auto["state"] == "skipped" and "DMARC" in auto["reason"]
    # The same mail without rspamd's verdict joins the request by its tag: the check is what stops it.
    [joined] = ingest(app, box, forged.replace(b"Message-ID: <", b"Message-ID: <again-"))
    assert joined.type == "request.updated" and joined["request_id"] == first["request_id"]


@pytest.mark.parametrize("header, spam", [
    ("X-Spam-Flag: YES", True),
    ("X-Spam-Status: Yes, score=7.2 required=5.0 tests=BAYES_99", True),
    ("X-Spam: Yes", True),
    ("X-Spamd-Result: default: True [16.10 / 15.00];\r\n\tGTUBE(0.00)[]", True),
    ("X-Spam-Status: No, score=-1.0 required=5.0", False),
    ("X-Spam-Flag: NO", False),
])
def test_upstream_verdicts_count_without_rspamd(app, header, spam):
    box = add_mailbox(app, SUPPORT, auto_reply=False)
    [event] = ingest(app, box, ordinary(headers=header + "\r\n"))
    request = request_of(app, one(app, "SELECT max(id) AS id FROM raw_messages")["id"])
    assert request["id"] == event["request_id"] and request["spam"] is spam
    verdict = one(app, "SELECT * FROM spam_verdicts")
    assert verdict["state"] == "upstream" and verdict["spam"] is spam
