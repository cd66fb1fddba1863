"""The replier against a real SMTP server (aiosmtpd) and PostgreSQL.

Mail comes in through the real parser and ticketer handlers; the replier's
handler sends it to SmtpSink over plain SMTP, STARTTLS or SSL/TLS with a
login, and the tests read what the server received.
"""

from __future__ import annotations

import email
import email.policy

import pytest
from prometheus_client import REGISTRY

from shared import template_store
from shared.db import transaction
from shared.errors import Transient, is_transient
from shared.events import REPLY_QUEUED, Event
from shared.staff_replies import queue_staff_reply
from shared.templates import Template
from tests.integration.replier_helpers import (
    add_mailbox,
    history,
    ingest,
    mail,
    outgoing,
    replier,
    sink_settings,
)

pytestmark = pytest.mark.integration

SUPPORT = "support@acme.example"
AUTH = ("desk", "s3cret")


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("tls", ["none", "starttls", "ssl"])
def test_auto_reply_over_each_security_with_login(app, smtp_sink_factory, tls):
    sink = smtp_sink_factory(tls=tls, auth=AUTH, auth_require_tls=False)
    sink_settings(app, sink, auth=AUTH)
    mailbox = add_mailbox(app, SUPPORT)
    [event] = ingest(app, mailbox, mail("Ada Lovelace <ada@customer.example>", SUPPORT,
                                        "Printer broken", message_id="<q1@customer.example>",
                                        headers="References: <root@customer.example>\r\n"))
    replier(app).handle([event])

    [got] = sink.wait_for(1)
    assert got.login == "desk" and got.tls == (tls != "none")
    assert got.rcpt_tos == ["ada@customer.example"] and got.mail_from == SUPPORT
    msg = got.message
    request_id = event["request_id"]
    assert msg["From"] == f"ACME Support <{SUPPORT}>"
    assert msg["Subject"] == f"[#{request_id}] Printer broken"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["In-Reply-To"] == "<q1@customer.example>"
    assert msg["References"] == "<root@customer.example> <q1@customer.example>"
    [row] = outgoing(app)
    assert row["state"] == "sent" and row["attempts"] == 1
    assert msg["Message-ID"] == f"<{row['message_id']}>"
    entry = history(app, request_id)[-1]
    assert entry["kind"] == "outgoing" and entry["message_id"] == row["message_id"]


def test_custom_smtp_is_used_by_its_mailbox_and_the_system_default_by_others(app, smtp_sink_factory):
    system, custom = smtp_sink_factory(), smtp_sink_factory(tls="starttls", auth=AUTH)
    sink_settings(app, system)
    custom_id = sink_settings(app, custom, name="acme-relay", auth=AUTH)
    own = add_mailbox(app, "billing@acme.example", smtp_id=custom_id)
    default = add_mailbox(app, SUPPORT)
    events = ingest(app, own, mail("a@customer.example", "billing@acme.example"))
    events += ingest(app, default, mail("b@customer.example", SUPPORT))
    replier(app).handle(events)

    [c] = custom.wait_for(1)
    [s] = system.wait_for(1)
    assert c.rcpt_tos == ["a@customer.example"] and c.login == "desk" and c.tls
    assert s.rcpt_tos == ["b@customer.example"] and s.login is None


def test_mailbox_override_beats_system_override(app, smtp_sink):
    sink_settings(app, smtp_sink)
    plain, system, own = (add_mailbox(app, f"{n}@acme.example") for n in ("a", "b", "c"))
    with transaction(app.pool) as conn:
        # The system-level override applies to every mailbox without its own...
        template_store.save(conn, None, Template(
            "auto_reply", "System: {{ request.subject }}", "Thanks from {{ mailbox.name }}", ""))
        template_store.save(conn, own, Template(
            "auto_reply", "Own: {{ request.subject }}", "Own text {{ request.tag }}",
            "<p>{{ customer.name }}</p>"))
    with transaction(app.pool) as conn:
        template_store.reset(conn, None, "auto_reply")  # ...until it is dropped again
        template_store.save(conn, None, Template(
            "auto_reply", "System2: {{ request.subject }}", "Thanks from {{ mailbox.name }}", ""))
    events = []
    for mailbox, who in ((plain, "x"), (system, "y"), (own, "z")):
        events += ingest(app, mailbox, mail(f"{who}@customer.example", "m@acme.example", "Hi"))
    replier(app).handle(events)
    got = {m.rcpt_tos[0][0]: m.message for m in smtp_sink.wait_for(3)}
    assert got["x"]["Subject"].startswith("System2: Hi")
    assert got["y"]["Subject"].startswith("System2: Hi")
    assert got["z"]["Subject"] == f"Own: Hi [#{events[2]['request_id']}]"
    assert not got["x"].is_multipart()  # the system override has no HTML part
    assert got["z"].is_multipart()


def test_shipped_template_when_nothing_is_overridden(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT, from_name="{{ agent.name if agent else 'ACME Help' }}")
    events = ingest(app, mailbox, mail("x@customer.example", SUPPORT, "Hi"))
    replier(app).handle(events)
    [got] = smtp_sink.wait_for(1)
    assert got.message["From"] == f"ACME Help <{SUPPORT}>"
    body = got.message.get_body(("plain",)).get_content()
    assert "thank you for writing to ACME Help" in body  # mailbox.name: the account name


DO_NOT_REPLY = {
    "auto-submitted": ("ann@customer.example", "Auto-Submitted: auto-replied\r\n"),
    "precedence-bulk": ("news@shop.example", "Precedence: bulk\r\n"),
    "list": ("someone@lists.example", "List-Id: <users.lists.example>\r\n"),
    "suppress": ("exchange@corp.example", "X-Auto-Response-Suppress: All\r\n"),
    "out-of-office": ("bob@corp.example", "X-Autoreply: yes\r\n"),
    "mailer-daemon": ("MAILER-DAEMON@mx.example", ""),
    "postmaster": ("postmaster@mx.example", ""),
    "no-reply": ("no-reply@service.example", ""),
    "noreply-prefix": ("jira-noreply@corp.example", ""),
    "bounce-address": ("bounces+123@lists.example", ""),
    "own-mailbox": ("billing@acme.example", ""),
    "reply-to-own": ("carl@customer.example", "Reply-To: billing@acme.example\r\n"),
}


def test_no_auto_reply_to_automatic_bulk_bounce_daemon_noreply_or_own_mail(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT)
    add_mailbox(app, "billing@acme.example", auto_reply=False)
    raws = [mail(sender, SUPPORT, f"case {case}", headers=headers)
            for case, (sender, headers) in DO_NOT_REPLY.items()]
    bounce = (
        b"From: Mail Delivery System <mailer-daemon@mx.example>\r\nTo: support@acme.example\r\n"
        b"Subject: Undelivered Mail\r\nMessage-ID: <b1@mx.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; gone@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--B--\r\n")
    before = _metric("deskmail_mails_not_sent_total", kind="auto_reply", outcome="skipped")
    events = ingest(app, mailbox, *raws, bounce, mail("human@customer.example", SUPPORT, "ok"))
    replier(app).handle(events)

    [got] = smtp_sink.wait_for(1)
    assert got.rcpt_tos == ["human@customer.example"]
    with app.pool.connection() as conn:
        rows = {r["subject"]: r for r in conn.execute(
            "SELECT q.subject, o.state, o.reason FROM requests q"
            " LEFT JOIN outgoing_mail o ON o.request_id = q.id").fetchall()}
    # Bounces and daemon mail may not even open a request (the ticketer keeps
    # them for operators); every request that was opened has its refusal recorded.
    for case in DO_NOT_REPLY:
        row = rows.get(f"case {case}")
        assert row is None or (row["state"] == "skipped" and row["reason"]), (case, row)
    assert sum(1 for c in DO_NOT_REPLY if f"case {c}" in rows) >= 8
    assert rows["ok"]["state"] == "sent"
    skipped = _metric("deskmail_mails_not_sent_total", kind="auto_reply", outcome="skipped")
    assert skipped - before == sum(1 for r in rows.values() if r["state"] == "skipped")
    assert smtp_sink.messages == [got]


def test_no_auto_reply_when_the_mailbox_has_it_off_or_for_updates(app, smtp_sink):
    sink_settings(app, smtp_sink)
    off = add_mailbox(app, "quiet@acme.example", auto_reply=False)
    on = add_mailbox(app, SUPPORT)
    h = replier(app)
    h.handle(ingest(app, off, mail("a@customer.example", "quiet@acme.example")))
    first = ingest(app, on, mail("b@customer.example", SUPPORT, message_id="<first@c.example>"))
    h.handle(first)
    update = ingest(app, on, mail("b@customer.example", SUPPORT, "Re: Printer broken",
                                  headers="In-Reply-To: <first@c.example>\r\n"))
    assert update[0].type == "request.updated"
    h.handle(update)
    assert len(smtp_sink.wait_for(1)) == 1
    assert [r["to_address"] for r in outgoing(app)] == ["b@customer.example"]


def test_rate_limit_per_recipient_over_several_windows(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT)
    h = replier(app)  # default limits: 10m:1, 1h:5, 1d:20
    # Three new requests from one sender in one batch, one more in the next.
    h.handle(ingest(app, mailbox, *(mail("loop@customer.example", SUPPORT, f"n{i}")
                                     for i in range(3))))
    h.handle(ingest(app, mailbox, mail("LOOP@customer.example", SUPPORT, "n3"),
                    mail("other@customer.example", SUPPORT, "n4")))
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(2)) == [
        "loop@customer.example", "other@customer.example"]
    skipped = [r for r in outgoing(app) if r["state"] == "skipped"]
    assert len(skipped) == 3
    assert all("rate limit" in r["reason"] and "10m" in r["reason"] for r in skipped)

    # The hour window: with 10m:100 out of the way, 1h:5 stops the sixth.
    from dataclasses import replace

    app.settings = replace(app.settings, auto_reply_limits="10m:100,1h:5")
    h2 = replier(app)
    h2.handle(ingest(app, mailbox, *(mail("many@customer.example", SUPPORT, f"m{i}")
                                     for i in range(7))))
    rows = [r for r in outgoing(app) if r["to_address"] == "many@customer.example"]
    assert [r["state"] for r in rows].count("sent") == 5
    assert all("1h" in r["reason"] for r in rows if r["state"] == "skipped")


def test_bad_rate_limit_setting_stops_the_replier_with_a_plain_message(app):
    from dataclasses import replace

    app.settings = replace(app.settings, auto_reply_limits="10m=1")
    with pytest.raises(SystemExit, match="DESKMAIL_AUTO_REPLY_LIMITS.*10m=1"):
        replier(app)


def test_header_injection_from_incoming_mail_cannot_add_headers(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT, from_name="{{ customer.name }} via ACME")
    # Encoded words decode to CR LF: the parser hands them on as text.
    evil_subject = "=?utf-8?b?SGVsbG8NCkJjYzogdmljdGltQGV2aWwuZXhhbXBsZQ0KWC1Fdmls?= =?utf-8?q?=0D=0AX-Injected:_1?="
    evil_name = "=?utf-8?b?RXZlDQpCY2M6IHZpY3RpbTJAZXZpbC5leGFtcGxl?="
    raw = mail(f"{evil_name} <eve@customer.example>", SUPPORT, evil_subject,
               message_id="<ok@customer.example>",
               headers="References: <a@x>\r\n <b@x>\r\n X-Not-A-Header: 1\r\n")
    events = ingest(app, mailbox, raw)
    replier(app).handle(events)
    [got] = smtp_sink.wait_for(1)
    assert got.rcpt_tos == ["eve@customer.example"]
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    names = [k.lower() for k in msg.keys()]
    assert "bcc" not in names and "x-evil" not in names and "x-injected" not in names
    assert "x-not-a-header" not in names
    assert len(names) == len(set(names))  # no header twice
    assert "Bcc: victim@evil.example" in msg["Subject"]  # kept as harmless text
    assert "\r" not in str(msg["From"]) and "victim2" in str(msg["From"])
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\nX-Injected" not in head


def test_templates_cannot_reach_python_objects(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT)
    escapes = [
        "{{ request.__class__.__mro__ }}",
        "{{ request|attr('__class__') }}",
        "{{ ''.__class__.__base__.__subclasses__() }}",
        "{% for x in request.items() %}{{ x }}{% endfor %}{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
    ]
    for body in escapes:
        with transaction(app.pool) as conn, pytest.raises(template_store.InvalidTemplate) as exc:
            template_store.save(conn, mailbox, Template("auto_reply", "s", body, ""))
        assert all(p.line == 1 and p.reason for p in exc.value.problems), body
    # Saved behind the validator's back (an old row, a bad migration): the
    # sandbox still refuses at render, and the mail fails visibly instead.
    with transaction(app.pool) as conn:
        conn.execute("INSERT INTO templates (mailbox_id, name, subject, body_text) VALUES"
                     " (%s, 'auto_reply', 's', %s)", (mailbox, "{{ request|attr('__class__') }}"))
    events = ingest(app, mailbox, mail("x@customer.example", SUPPORT))
    replier(app).handle(events)
    [row] = outgoing(app)
    assert row["state"] == "failed" and "could not be written" in row["reason"]
    note = history(app, events[0]["request_id"])[-1]
    assert note["kind"] == "note" and "was not sent" in note["body_text"]
    assert smtp_sink.messages == []


def test_unknown_names_are_refused_with_line_and_reason(app):
    mailbox = add_mailbox(app, SUPPORT)
    with transaction(app.pool) as conn, pytest.raises(template_store.InvalidTemplate) as exc:
        template_store.save(conn, mailbox, Template(
            "staff_reply", "Re: {{ request.subject }}", "Hi\n{{ customer.nmae }}\n{% if %}", ""))
    [problem] = exc.value.problems
    assert problem.part == "body_text" and problem.line == 3


def test_4xx_then_success_keeps_the_message_id(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT)
    events = ingest(app, mailbox, mail("x@customer.example", SUPPORT))
    smtp_sink.fail_next(1, 451, "4.3.0 Try again later", stage="data")
    h = replier(app)
    with pytest.raises(Transient, match="451") as exc:
        h.handle(events)
    assert is_transient(exc.value)  # the worker retries it with backoff
    [row] = outgoing(app)
    assert row["state"] == "pending" and "451" in row["reason"]
    first_id = row["message_id"]
    h.handle(events)  # the retry
    [got] = smtp_sink.wait_for(1)
    [row] = outgoing(app)
    assert row["state"] == "sent" and row["attempts"] == 2 and row["message_id"] == first_id
    assert got.message["Message-ID"] == f"<{first_id}>"


def test_5xx_marks_the_mail_failed_visibly(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT)
    events = ingest(app, mailbox, mail("gone@customer.example", SUPPORT))
    smtp_sink.fail_next(1, 550, "5.1.1 No such user", stage="rcpt")
    before = _metric("deskmail_mails_not_sent_total", kind="auto_reply", outcome="failed")
    replier(app).handle(events)  # no exception: retrying cannot help
    [row] = outgoing(app)
    assert row["state"] == "failed" and "550 5.1.1 No such user" in row["reason"]
    note = history(app, events[0]["request_id"])[-1]
    assert note["kind"] == "note" and "550" in note["body_text"]
    assert _metric("deskmail_mails_not_sent_total", kind="auto_reply", outcome="failed") == before + 1
    replier(app).handle(events)  # a redelivery sends nothing
    assert smtp_sink.messages == []


def test_refused_connection_and_untrusted_certificate(app, smtp_sink_factory):
    sink = smtp_sink_factory(tls="starttls")
    mailbox = add_mailbox(app, SUPPORT)
    sink_settings(app, sink)
    with transaction(app.pool) as conn:
        conn.execute("UPDATE smtp_settings SET allow_self_signed = false")
    events = ingest(app, mailbox, mail("x@customer.example", SUPPORT))
    replier(app).handle(events)  # an untrusted certificate is a configuration error
    [row] = outgoing(app)
    assert row["state"] == "failed" and "not trusted" in row["reason"]

    events = ingest(app, mailbox, mail("y@customer.example", SUPPORT))
    with transaction(app.pool) as conn:
        conn.execute("UPDATE smtp_settings SET allow_self_signed = true")
    sink.stop()
    with pytest.raises(Transient, match="connection refused"):
        replier(app).handle(events)
    assert outgoing(app)[-1]["state"] == "pending"


def test_staff_reply_goes_from_the_agent_threaded_and_without_auto_headers(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT, from_name="{{ agent.name if agent else mailbox.name }}"
                          " at ACME")
    [event] = ingest(app, mailbox, mail("Ada <ada@customer.example>", SUPPORT, "Printer",
                                        message_id="<p1@customer.example>"))
    h = replier(app)
    h.handle([event])
    request_id = event["request_id"]
    with transaction(app.pool) as conn:
        oid = queue_staff_reply(conn, request_id, "Grace Hopper", "Try again now.\nBcc: x@y")
    h.handle([Event(REPLY_QUEUED, {"request_id": request_id, "outgoing_id": oid})])
    auto, staff = smtp_sink.wait_for(2)
    # The account name refers to mailbox.name, so mailbox.name is the address.
    assert auto.message["From"] == f'"{SUPPORT} at ACME" <{SUPPORT}>'
    msg = staff.message
    assert msg["From"] == f"Grace Hopper at ACME <{SUPPORT}>"
    assert "Auto-Submitted" not in msg and "X-Auto-Response-Suppress" not in msg
    assert msg["In-Reply-To"] == "<p1@customer.example>"
    assert msg["Subject"] == f"Re: Printer [#{request_id}]"
    assert "Bcc" not in msg and "Bcc: x@y" in msg.get_body(("plain",)).get_content()
    entry = history(app, request_id)[-1]
    assert entry["kind"] == "outgoing" and entry["author"] == "Grace Hopper"
    assert msg["Message-ID"] == f"<{entry['message_id']}>"


def test_crash_while_sending_auto_reply_never_sent_again_staff_reply_sent_again(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT)
    [event] = ingest(app, mailbox, mail("x@customer.example", SUPPORT))
    request_id = event["request_id"]
    with transaction(app.pool) as conn:
        oid = queue_staff_reply(conn, request_id, "Grace", "Hello")
        # What a replier leaves behind when it dies between its 'sending'
        # commit and its 'sent' commit (the kill test does it for real).
        conn.execute("INSERT INTO outgoing_mail (request_id, kind, to_address, state, message_id)"
                     " VALUES (%s, 'auto_reply', 'x@customer.example', 'sending', 'dm.x@y')",
                     (request_id,))
        conn.execute("UPDATE outgoing_mail SET state = 'sending', message_id = %s,"
                     " updated_at = now() - interval '1 hour' WHERE id = %s",
                     (f"dm.{request_id}.{oid}.zzzz@acme.example", oid))
    h = replier(app)
    h.handle([event, Event(REPLY_QUEUED, {"request_id": request_id, "outgoing_id": oid})])
    [got] = smtp_sink.wait_for(1)
    assert got.message["Message-ID"] == f"<dm.{request_id}.{oid}.zzzz@acme.example>"
    states = {r["kind"]: r["state"] for r in outgoing(app)}
    assert states == {"auto_reply": "unknown", "staff_reply": "sent"}
    assert "may or may not have been sent" in history(app, request_id)[-2]["body_text"]
