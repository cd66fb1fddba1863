"""Sender lists and mail rules through the parser's, ticketer's and replier's handlers.

The real PostgreSQL; rspamd off unless a test says otherwise (the spam
verdicts themselves are test_spam.py's). Each test states the rules and
entries an administrator would save (checked by shared/filters' clean) and
the mail, then reads what the ticketer made: requests, categories, history,
held mail, auto-replies.
"""

from __future__ import annotations

import time

import pytest

from shared.db import transaction
from shared.spam import decisions
from tests.integration.replier_helpers import (
    add_mailbox,
    ingest,
    mail,
    outgoing,
    replier,
    sink_settings,
)
from tests.integration.spam_helpers import (
    add_rule,
    add_sender,
    notes,
    one,
    request_of,
    rows,
    with_rspamd,
)
from tests.support.rspamd import GTUBE

pytestmark = pytest.mark.integration

DESK = "desk@acme.example"  # one mailbox that sales@ and billing@ are both delivered into


def last_raw(app) -> int:  # noqa: ANN001
    return one(app, "SELECT max(id) AS id FROM raw_messages")["id"]


@pytest.fixture
def box(app, smtp_sink):
    sink_settings(app, smtp_sink)
    return add_mailbox(app, DESK)


def test_routing_by_the_address_the_mail_was_sent_to(app, box):
    add_rule(app, None, 1, name="Sales", conditions=[
        {"field": "recipient", "op": "equals", "value": "sales@acme.example"}],
        actions=[{"action": "category", "value": "Sales"}])
    add_rule(app, box, 1, name="Billing", conditions=[
        {"field": "recipient", "op": "equals", "value": "billing@acme.example"}],
        actions=[{"action": "category", "value": "Billing"}])
    # To names the list address; Delivered-To is what the mail server wrote on delivery.
    ingest(app, box, mail("ada@customer.example", "Sales <sales@acme.example>", "Quote please"))
    sales = request_of(app, last_raw(app))
    ingest(app, box, mail("bob@customer.example", "team@acme.example", "My invoice",
                          headers="Delivered-To: billing@acme.example\r\n"))
    billing = request_of(app, last_raw(app))
    ingest(app, box, mail("cy@customer.example", DESK, "Hello"))
    plain = request_of(app, last_raw(app))
    assert (sales["category"], billing["category"], plain["category"]) == ("Sales", "Billing", None)
    assert notes(app, sales["id"]) == ["rule 'Sales': category Sales"]
    assert notes(app, billing["id"]) == ["rule 'Billing': category Billing"]
    assert notes(app, plain["id"]) == []


def test_a_regex_rule_runs_in_its_time_limit_on_hostile_mail(app, box):
    # Catastrophic for a backtracking engine on this body; linear for RE2.
    add_rule(app, None, 1, name="Order numbers", conditions=[
        {"field": "body", "op": "regex", "value": r"(a+)+ORDER-\d+"}],
        actions=[{"action": "category", "value": "Orders"}])
    hostile = "a" * 250_000
    started = time.monotonic()
    ingest(app, box, mail("ada@customer.example", DESK, "aaa", body=hostile),
           mail("bob@customer.example", DESK, "Where is it?", body="aaaORDER-123 has not arrived"))
    took = time.monotonic() - started
    first, second = rows(app, "SELECT r.id, c.name FROM requests r LEFT JOIN categories c"
                              " ON c.id = r.category_id ORDER BY r.id")
    assert (first["name"], second["name"]) == (None, "Orders")
    assert took < 10, f"two mails took {took:.1f} s"


def test_discard_keeps_the_mail_with_its_reason_and_makes_nothing(app, box, smtp_sink):
    add_rule(app, box, 1, name="Newsletters", conditions=[
        {"field": "automatic", "value": True},
        {"field": "subject", "op": "contains", "value": "newsletter"}],
        actions=[{"action": "discard", "value": "newsletters are not requests"}])
    news = mail("news@shop.example", DESK, "Our June newsletter", headers="Precedence: bulk\r\n")
    events = ingest(app, box, news)
    assert events == []  # nothing for the replier
    held = one(app, "SELECT * FROM held_mail")
    assert held["kind"] == "discarded" and held["reason"] == "rule 'Newsletters': newsletters are not requests"
    assert held["from_address"] == "news@shop.example" and held["subject"] == "Our June newsletter"
    assert one(app, "SELECT count(*) AS n FROM requests")["n"] == 0
    assert one(app, "SELECT state FROM remote_messages WHERE raw_id = %s", held["raw_id"])["state"] == \
        "committed"  # so the fetcher archives it
    # A redelivery of the same mail.parsed adds nothing.
    from services.ticketer.stage import TicketerHandler
    from shared.events import MAIL_PARSED, Event
    again = Event(MAIL_PARSED, {"raw_id": held["raw_id"], "mailbox_id": box})
    assert TicketerHandler(app.pool, app.keys.message_id_key).handle([again]) == []
    assert one(app, "SELECT count(*) AS n FROM held_mail")["n"] == 1
    # Released: it becomes a request after all, noted as released.
    with transaction(app.pool) as conn:
        released = decisions.release_held(conn, held["raw_id"], "Grace")
    [(route, event)] = released.events
    [(_, created)] = TicketerHandler(app.pool, app.keys.message_id_key).handle([event])
    assert route == "ticket" and created.type == "request.created"
    assert one(app, "SELECT request_id FROM held_mail")["request_id"] == created["request_id"]
    assert "released from the held mail by an administrator" in notes(app, created["request_id"])


def test_stop_close_note_and_no_auto_reply(app, box, smtp_sink):
    add_rule(app, None, 1, name="Thanks", match="any", conditions=[
        {"field": "subject", "op": "equals", "value": "thanks"},
        {"field": "subject", "op": "equals", "value": "thank you"}],
        actions=[{"action": "close"}, {"action": "note", "value": "closed: a thank-you"},
                 {"action": "no_auto_reply"}, {"action": "stop"}])
    add_rule(app, None, 2, name="Everything", conditions=[
        {"field": "subject", "op": "contains", "value": "t"}],
        actions=[{"action": "category", "value": "General"}])
    thanks = ingest(app, box, mail("ada@customer.example", DESK, "Thank you"))
    other = ingest(app, box, mail("bob@customer.example", DESK, "Tea machine broken"))
    replier(app).handle(thanks + other)
    closed = one(app, "SELECT r.*, c.name AS category FROM requests r LEFT JOIN categories c"
                      " ON c.id = r.category_id WHERE r.id = %s", thanks[0]["request_id"])
    assert closed["status"] == "closed" and closed["category"] is None  # stopped before "Everything"
    assert notes(app, closed["id"]) == [
        "rule 'Thanks': closed; note closed: a thank-you; no auto-reply; no further rules",
        "rule 'Thanks': closed: a thank-you"]
    [skipped] = outgoing(app, closed["id"])
    assert skipped["state"] == "skipped" and skipped["reason"] == "no auto-reply: rule 'Thanks'"
    assert request_of(app, last_raw(app))["category"] == "General"
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [["bob@customer.example"]]


def test_rules_act_on_the_first_mail_only(app, box):
    add_rule(app, None, 1, name="Urgent", conditions=[
        {"field": "header", "header": "X-Priority", "op": "regex", "value": r"^1"}],
        actions=[{"action": "category", "value": "Urgent"}])
    [first] = ingest(app, box, mail("ada@customer.example", DESK, "Help", message_id="<first@c.example>"))
    reply = mail("ada@customer.example", DESK, "Re: Help", headers="In-Reply-To: <first@c.example>\r\n"
                 "X-Priority: 1 (Highest)\r\n")
    [update] = ingest(app, box, reply)
    assert update.type == "request.updated" and update["request_id"] == first["request_id"]
    assert request_of(app, last_raw(app))["category"] is None  # the reply did not re-route it
    ingest(app, box, mail("bob@customer.example", DESK, "Down", headers="X-Priority: 1 (Highest)\r\n"))
    assert request_of(app, last_raw(app))["category"] == "Urgent"


def test_mark_spam_by_rule_and_by_spam_score(app, box, rspamd):
    add_rule(app, None, 1, name="Crypto", conditions=[
        {"field": "body", "op": "contains", "value": "bitcoin"}], actions=[{"action": "spam"}])
    add_rule(app, None, 2, name="Suspicious", conditions=[
        {"field": "spam_score", "op": "at_least", "value": "3"},
        {"field": "attachments", "value": False}], actions=[{"action": "category", "value": "Check"}])
    on = with_rspamd(app.settings, rspamd)
    events = ingest(app, box, mail("ada@customer.example", DESK, "Offer", body="Buy bitcoin now"), settings=on)
    crypto = one(app, "SELECT * FROM requests WHERE id = %s", events[0]["request_id"])
    assert crypto["spam"] and crypto["spam_reason"] == "rule 'Crypto'"
    # rspamd scores an ordinary mail here at about 3.4 (no sending server known: HFILTER_HOSTNAME_UNKNOWN).
    events = ingest(app, box, mail("bob@customer.example", DESK, "Question", body="How do I reset it?"),
                    settings=on)
    score = one(app, "SELECT score FROM spam_verdicts WHERE raw_id = %s", last_raw(app))["score"]
    category = request_of(app, last_raw(app))["category"]
    assert (category == "Check") is (score >= 3), (score, category)


def test_block_and_allow_lists(app, box, rspamd, smtp_sink):
    add_sender(app, None, "block", "domain", "spam.example")
    add_sender(app, box, "allow", "address", "partner@spam.example")
    add_sender(app, None, "allow", "pattern", "*@trusted.example")
    on = with_rspamd(app.settings, rspamd)
    blocked = ingest(app, box, mail("x@mx.spam.example", DESK, "Hi"), settings=on)
    assert blocked == []
    held = one(app, "SELECT * FROM held_mail")
    assert held["kind"] == "blocked"
    assert held["reason"] == "sender x@mx.spam.example is on the block list (system-wide): domain spam.example"
    # A blocked sender's reply to an existing request is held too.
    [first] = ingest(app, box, mail("ada@customer.example", DESK, "Help", message_id="<h1@c.example>"))
    blocked_reply = ingest(app, box, mail("y@spam.example", DESK, "Re: Help",
                                          headers="In-Reply-To: <h1@c.example>\r\n"))
    assert blocked_reply == [] and one(app, "SELECT count(*) AS n FROM held_mail")["n"] == 2
    # The mailbox's allow entry beats the system-wide block; an allowed sender is not sent to rspamd.
    partner = ingest(app, box, mail("partner@spam.example", DESK, "Order", body=GTUBE), settings=on)
    trusted = ingest(app, box, mail("it@trusted.example", DESK, "Test", body=GTUBE), settings=on)
    for event in partner + trusted:
        assert not one(app, "SELECT spam FROM requests WHERE id = %s", event["request_id"])["spam"]
    # Of the three mails parsed with rspamd on, only the blocked one was checked.
    assert [r["raw_id"] for r in rows(app, "SELECT raw_id FROM spam_verdicts")] == [held["raw_id"]]
    replier(app).handle([first, *partner, *trusted])
    assert len(smtp_sink.wait_for(3)) == 3


def test_a_dry_run_shows_what_a_rule_would_have_done_and_writes_nothing(app, box):
    from shared.filters.dry_run import dry_run
    from shared.mailboxes import InvalidSetting

    ingest(app, box, mail("ada@customer.example", DESK, "Invoice 17 overdue"),
           mail("bob@customer.example", DESK, "Printer", headers="X-Priority: 1\r\n"),
           mail("cy@customer.example", DESK, "invoice 18"))
    values = {"name": "Invoices", "match": "any", "conditions": [
        {"field": "subject", "op": "regex", "value": r"invoice \d+"},
        {"field": "header", "header": "X-Priority", "op": "equals", "value": "1"}],
        "actions": [{"action": "category", "value": "Billing"}]}
    with app.pool.connection() as conn:
        result = dry_run(conn, box, values, last=2)
        assert [(r["from"], r["matched"], r["would"]) for r in result] == [
            ("cy@customer.example", True, "rule 'Invoices': category Billing"),
            ("bob@customer.example", True, "rule 'Invoices': category Billing")]  # newest first, last 2
        assert len(dry_run(conn, box, {**values, "match": "all"}, last=10)) == 3
        assert not any(r["matched"] for r in dry_run(conn, box, {**values, "match": "all"}, last=10))
        with pytest.raises(InvalidSetting, match="missing \\)"):
            dry_run(conn, box, {**values, "conditions": [{"field": "body", "op": "regex", "value": "("}]})
    assert one(app, "SELECT count(*) AS n FROM mail_rules")["n"] == 0
    assert one(app, "SELECT count(*) AS n FROM categories WHERE name = 'Billing'")["n"] == 0
