"""Spam, sender lists and mail rules end to end: Dovecot -> the four running stages -> SMTP.

The stages run as threads of this process over the real RabbitMQ and
PostgreSQL, the fetcher reading a real Dovecot INBOX, with a private rspamd
of this test's own (tests/support/rspamd.py `instance`), so that the test
can stop it without disturbing the instance other tests use. One mailbox
with auto-reply and archiving on, the rules and list entries an
administrator would save, and mail for each of them; then a release, the
lesson rspamd is taught, and mail while rspamd is stopped.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.app import App
from services.stages import STAGES
from shared import mailboxes
from shared.db import transaction
from shared.spam import decisions
from tests.integration.replier_helpers import mail, sink_settings
from tests.integration.spam_helpers import add_rule, add_sender, notes, one, rows
from tests.integration.test_replier_pipeline import running
from tests.support.pipeline import wait_until
from tests.support.rspamd import GTUBE, instance

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def outcomes(app: App) -> int:
    """Mails the ticketer has decided: a history entry or a held row each."""
    return one(app, "SELECT (SELECT count(*) FROM history WHERE raw_id IS NOT NULL)"
                    " + (SELECT count(*) FROM held_mail) AS n")["n"]


def by_sender(app: App) -> dict[str, dict]:
    return {r["from_address"]: r for r in rows(
        app, "SELECT h.from_address, r.id, r.spam, r.status, r.spam_reason, c.name AS category"
             " FROM history h JOIN requests r ON r.id = h.request_id"
             " LEFT JOIN categories c ON c.id = r.category_id WHERE h.kind = 'incoming'")}


def test_spam_lists_and_rules_through_the_running_stages(app, dovecot, smtp_sink):
    rspamd = instance("pipeline", 24340)
    desk = App(replace(app.settings, rspamd_url=rspamd.url, rspamd_controller_url=rspamd.controller_url,
                       rspamd_password=rspamd.password, rspamd_timeout=1.0))
    try:
        _run(desk, rspamd, dovecot, smtp_sink)
    finally:
        rspamd.script("stop")
        desk.pool.close()


def _run(desk: App, rspamd, dovecot, smtp_sink) -> None:  # noqa: ANN001
    user = dovecot.new_user("desk")
    address = f"{user}@acme.example"
    sink_settings(desk, smtp_sink)
    with transaction(desk.pool) as conn:
        box = mailboxes.create(conn, desk.keys, {
            "from_name": "ACME", "address": address, "account_type": "imap", "host": dovecot.host,
            "port": dovecot.imap_port, "username": user, "security": "none", "archive": True,
            "auto_reply": True, "poll_interval": 1}, password=dovecot.password)
    add_sender(desk, None, "block", "domain", "blocked.example")
    add_sender(desk, box, "allow", "address", "boss@partner.example")
    add_rule(desk, None, 1, name="Newsletters", conditions=[
        {"field": "automatic", "value": True}, {"field": "subject", "op": "contains", "value": "newsletter"}],
        actions=[{"action": "discard", "value": "not a request"}])
    add_rule(desk, None, 2, name="Sales", conditions=[
        {"field": "recipient", "op": "equals", "value": "sales@acme.example"}],
        actions=[{"action": "category", "value": "Sales"}])
    add_rule(desk, box, 1, name="Billing", conditions=[
        {"field": "recipient", "op": "equals", "value": "billing@acme.example"}],
        actions=[{"action": "category", "value": "Billing"}])
    add_rule(desk, box, 2, name="Urgent", conditions=[
        {"field": "subject", "op": "regex", "value": r"^(urgent|asap)\b"}],
        actions=[{"action": "category", "value": "Urgent"}, {"action": "stop"}])
    add_rule(desk, box, 3, name="Thanks", conditions=[
        {"field": "subject", "op": "contains", "value": "thank"}],
        actions=[{"action": "close"}, {"action": "no_auto_reply"}])
    add_rule(desk, box, 4, name="Crypto", conditions=[
        {"field": "body", "op": "contains", "value": "bitcoin"}], actions=[{"action": "spam"}])
    add_rule(desk, box, 5, name="Never after Urgent", conditions=[
        {"field": "subject", "op": "contains", "value": "asap"}], actions=[{"action": "close"}])

    first = [
        mail("Ada <ada@customer.example>", address, "Printer broken",
             body="My printer prints blank pages since the update yesterday; the toner is new."),
        mail("Winner <promo@spam.example>", address, "You won", body=GTUBE),
        mail("x@blocked.example", address, "Hello"),
        mail("Boss <boss@partner.example>", address, "Test", body=GTUBE),
        mail("news@shop.example", address, "Our newsletter", headers="Precedence: bulk\r\n"),
        mail("sam@customer.example", "Sales <sales@acme.example>", "Quote please"),
        mail("bill@customer.example", "team@acme.example", "Invoice",
             headers="Delivered-To: billing@acme.example\r\n"),
        mail("ursula@customer.example", address, "ASAP: server down, thank you"),
        mail("tom@customer.example", address, "Thank you!"),
        mail("cry@customer.example", address, "Offer", body="Cheap bitcoin"),
    ]
    with running(desk, STAGES):
        dovecot.append(user, first)
        wait_until(lambda: outcomes(desk) == len(first), 60, "every mail decided")
        auto = smtp_sink.wait_for(5, timeout=30)
        wait_until(lambda: dovecot.folder_count(user, "INBOX") == 0, 30, "every mail archived")
        seen = by_sender(desk)
        assert set(seen) == {"ada@customer.example", "promo@spam.example", "boss@partner.example",
                             "sam@customer.example", "bill@customer.example", "ursula@customer.example",
                             "tom@customer.example", "cry@customer.example"}
        assert seen["promo@spam.example"]["spam"] and "action reject" in seen["promo@spam.example"]["spam_reason"]
        assert not seen["ada@customer.example"]["spam"] and not seen["boss@partner.example"]["spam"]
        assert seen["cry@customer.example"]["spam_reason"] == "rule 'Crypto'"
        assert (seen["sam@customer.example"]["category"], seen["bill@customer.example"]["category"]) == \
            ("Sales", "Billing")
        assert seen["ursula@customer.example"]["category"] == "Urgent"
        assert seen["ursula@customer.example"]["status"] == "open"  # stopped before Thanks and the rest
        assert seen["tom@customer.example"]["status"] == "closed"
        held = {r["from_address"]: r for r in rows(desk, "SELECT * FROM held_mail")}
        assert held["x@blocked.example"]["kind"] == "blocked"
        assert held["news@shop.example"]["reason"] == "rule 'Newsletters': not a request"
        assert sorted(m.rcpt_tos[0] for m in auto) == sorted([
            "ada@customer.example", "boss@partner.example", "sam@customer.example",
            "bill@customer.example", "ursula@customer.example"])
        reasons = {r["to_address"]: r["reason"] for r in rows(
            desk, "SELECT to_address, reason FROM outgoing_mail WHERE state = 'skipped'")}
        assert reasons["promo@spam.example"].startswith("spam (rspamd: score 15")
        assert reasons["tom@customer.example"] == "no auto-reply: rule 'Thanks'"
        assert reasons["cry@customer.example"] == "spam (rule 'Crypto')"

        # Released, the spam request gets its auto-reply, once; rspamd learns it is not spam.
        spam_id = seen["promo@spam.example"]["id"]
        before = rspamd.learned()
        with transaction(desk.pool) as conn:
            released = decisions.release(conn, spam_id, "Grace")
            marked = decisions.mark_spam(conn, seen["ada@customer.example"]["id"], "Grace")
        decisions.announce(desk.settings, desk.topology, released.events)
        decisions.announce(desk.settings, desk.topology, released.events)  # twice: still one auto-reply
        taught = decisions.teach(desk.pool, desk.settings, released.training_ids + marked.training_ids)
        assert [t["learned"] for t in taught] == [True, True], taught
        assert rspamd.learned() == before + 1  # GTUBE is never learned; Ada's mail is, as spam
        smtp_sink.wait_for(6, timeout=30)
        assert smtp_sink.messages[5].rcpt_tos == ["promo@spam.example"]
        assert "released from spam by Grace" in notes(desk, spam_id)[-1]

        # rspamd stopped: mail still flows, marked not checked; an upstream verdict still counts.
        rspamd.script("stop")
        later = [mail("Zoe <zoe@customer.example>", address, "Still broken"),
                 mail("old@list.example", address, "Deal", headers="X-Spam-Flag: YES\r\n")]
        dovecot.append(user, later)
        wait_until(lambda: outcomes(desk) == len(first) + len(later), 60, "mail decided with rspamd stopped")
        smtp_sink.wait_for(7, timeout=30)
    assert smtp_sink.messages[6].rcpt_tos == ["zoe@customer.example"]
    assert len(smtp_sink.messages) == 7
    late = by_sender(desk)
    assert not late["zoe@customer.example"]["spam"] and late["old@list.example"]["spam"]
    states = {r["from_address"]: (r["state"], r["problem"]) for r in rows(
        desk, "SELECT h.from_address, v.state, v.problem FROM spam_verdicts v"
              " JOIN history h ON h.raw_id = v.raw_id WHERE h.from_address IN"
              " ('zoe@customer.example', 'old@list.example')")}
    assert {s for s, _ in states.values()} == {"unchecked"}
    assert all("rspamd" in p for _, p in states.values())
