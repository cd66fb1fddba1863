# ruff: noqa: F811 - fixtures are imported from web_support by name
"""Discarding a dead letter leaves a record, and the backlog stops counting its work.

The poison: mail.parsed for mail that is stored but has no parsed form (as
after a restore that lost parsed_messages). The ticketer dead-letters it at
once. Before the fix, discarding it recorded nothing and status.backlog kept
counting the mail as waiting for ever; now each discard, from the CLI (its
own process, as an operator runs it) or the API, writes a discarded_events
row first, and the backlog leaves that mail out.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services import runner
from services.admin import dead_letters as dead_letter_admin
from services.admin import status as ops_status
from shared.db import transaction
from shared.events import MAIL_PARSED, REPLY_QUEUED, REQUEST_CREATED, Event
from shared.publisher import Publisher
from shared.worker import connect
from tests.conftest import stage_env
from tests.integration.ops_helpers import add_mailbox, broker_messages
from tests.integration.web_support import admin, api, browser_client, web_app  # noqa: F401
from tests.support.mailstore import store_mail
from tests.support.stages import run_until_empty

pytestmark = pytest.mark.integration

HOUR = 3600


def deskmail(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=stage_env(settings), capture_output=True, text=True, timeout=60)


def _store(app, mailbox_id: int, raw_id: int, age: int) -> None:
    """Mail stored and announced `age` seconds ago, not parsed: waiting for the parser by the ledger."""
    store_mail(app.pool, mailbox_id, f"Subject: mail {raw_id}\r\n\r\nx".encode(), raw_id=raw_id, received_ago=age)


def _parse_backlog(app) -> tuple[int, float | None]:
    with app.pool.connection() as conn:
        found = ops_status.backlog(conn)["parse"]
    return found.waiting, found.oldest_age_seconds


def _records(app) -> dict[int, dict]:
    with app.pool.connection() as conn:
        return {r["raw_id"]: r for r in dead_letter_admin.discarded(conn)}


def test_a_discard_is_recorded_needs_a_reason_and_leaves_the_backlog(app, settings, tmp_path, api,
                                                                   browser_client, monkeypatch):
    mailbox_id = add_mailbox(app, str(tmp_path / "unused"))
    for raw_id, age in ((101, 2 * HOUR), (102, 2 * HOUR), (103, 30 * 60)):
        _store(app, mailbox_id, raw_id, age)
    dead_queue = f"{app.topology.queue_name('ticket')}.dead"
    with connect(app.settings) as conn:
        app.topology.declare(conn)
        Publisher(conn).publish_events(app.topology.exchange, "ticket", [
            Event(MAIL_PARSED, {"raw_id": r, "mailbox_id": mailbox_id}) for r in (101, 102)])
    assert run_until_empty(runner.build(app, "ticketer")) == 2
    assert len(broker_messages(dead_queue)) == 2
    listed = deskmail(settings, "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = {x["event"]["ids"]["raw_id"]: x["id"] for x in json.loads(listed.stdout)}
    assert set(letters) == {101, 102}
    waiting, oldest = _parse_backlog(app)
    assert waiting == 3 and oldest is not None and oldest >= 2 * HOUR

    # No reason, a blank one, or a failed record: refused, and nothing leaves the queue.
    refused = deskmail(settings, "dead-letters", "purge", letters[101])
    assert refused.returncode == 2 and "--reason" in refused.stderr, refused.stderr
    refused = deskmail(settings, "dead-letters", "purge", letters[101], "--reason", "  ")
    assert refused.returncode == 2, refused.stderr
    assert "error: --reason must not be empty: say why the message is given up" in refused.stderr
    answer = api.post(f"/api/v1/dead-letters/{letters[102]}/discard", json={})
    assert answer.status_code == 422
    assert answer.json()["errors"]["reason"].startswith("must not be empty: say why the message is given up")

    def broken(*_args: object) -> int:
        raise RuntimeError("the database refused the record")

    monkeypatch.setattr(dead_letter_admin, "_record", broken)
    with app.broker() as conn, pytest.raises(RuntimeError):
        dead_letter_admin.discard(app.pool, conn, app.topology, [letters[101]], None, "why", "test")
    monkeypatch.undo()
    assert len(broker_messages(dead_queue)) == 2 and _records(app) == {}

    # Through the CLI, with a reason: recorded, gone from the queue, out of the backlog.
    purged = deskmail(settings, "dead-letters", "purge", letters[101], "--reason", "lost in the restore")
    assert purged.returncode == 0, purged.stderr
    assert f"purged {letters[101]} (ticket)" in purged.stdout
    [(body, _)] = broker_messages(dead_queue)
    assert json.loads(body)["ids"]["raw_id"] == 102
    record = _records(app)[101]
    assert (record["letter_id"], record["stage"], record["event_type"]) == (letters[101], "ticket", MAIL_PARSED)
    assert record["event_ids"] == {"raw_id": 101, "mailbox_id": mailbox_id}
    assert record["reason"] == "lost in the restore" and record["discarded_by"].endswith("(cli)")
    assert "no parsed form" in record["error"] and record["confirmed_at"] is not None
    assert _parse_backlog(app)[0] == 2

    # Through the API: recorded with the token's user.
    answer = api.post(f"/api/v1/dead-letters/{letters[102]}/discard", json={"reason": " duplicate "})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"count": 1, "ids": [letters[102]]}
    assert broker_messages(dead_queue) == []
    record = _records(app)[102]
    assert (record["reason"], record["discarded_by"]) == ("duplicate", "admin (api)")
    waiting, oldest = _parse_backlog(app)  # only the mail that was never dead-lettered
    assert waiting == 1 and oldest is not None and 30 * 60 <= oldest < 2 * HOUR

    # Read back: CLI, API and the status page.
    shown = deskmail(settings, "dead-letters", "discarded")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert letters[102] in lines[1] and "duplicate" in lines[1]  # newest first
    assert letters[101] in lines[2] and "lost in the restore" in lines[2]
    as_json = json.loads(deskmail(settings, "dead-letters", "discarded", "--json").stdout)
    assert [r["raw_id"] for r in as_json] == [102, 101]
    answer = api.get("/api/v1/dead-letters/discarded")
    assert answer.status_code == 200, answer.text
    assert [(r["letter_id"], r["reason"]) for r in answer.json()] == [
        (letters[102], "duplicate"), (letters[101], "lost in the restore")]
    page = browser_client.get("/")
    assert "Recently discarded" in page.text and "lost in the restore" in page.text


def test_the_reply_backlog_leaves_out_replies_discarded_at_the_reply_stage(app):
    with transaction(app.pool) as conn:
        box = conn.execute("INSERT INTO mailboxes (from_name, address, host, username, account_type)"
                           " VALUES ('S', 'support@acme.test', 'h', 'u', 'imap') RETURNING id").fetchone()["id"]
        out: dict[str, tuple[int, int]] = {}
        for name, kind in (("staff", "staff_reply"), ("auto", "auto_reply"), ("kept", "staff_reply")):
            request = conn.execute("INSERT INTO requests (mailbox_id) VALUES (%s) RETURNING id",
                                   (box,)).fetchone()["id"]
            oid = conn.execute("INSERT INTO outgoing_mail (request_id, kind, to_address, state, created_at)"
                               " VALUES (%s, %s, 'c@example.org', 'pending', now() - interval '1 hour')"
                               " RETURNING id", (request, kind)).fetchone()["id"]
            out[name] = (request, oid)
    with app.pool.connection() as conn:
        assert ops_status.backlog(conn)["reply"].waiting == 3

    def record(event: Event) -> None:
        with transaction(app.pool) as conn:
            conn.execute("INSERT INTO discarded_events (letter_id, stage, event_type, event_ids, request_id,"
                         " outgoing_id, reason) VALUES ('x', 'reply', %s, '{}', %s, %s, 'test')",
                         (event.type, event.ids["request_id"], event.ids.get("outgoing_id")))

    record(Event(REPLY_QUEUED, {"request_id": out["staff"][0], "outgoing_id": out["staff"][1]}))
    record(Event(REQUEST_CREATED, {"request_id": out["auto"][0], "history_id": 1}))
    with app.pool.connection() as conn:
        assert ops_status.backlog(conn)["reply"].waiting == 1


def test_a_discarded_staff_reply_is_not_sent_after_all(app):
    from services.admin.dead_letters import cancel_replies

    with transaction(app.pool) as conn:
        box = conn.execute("INSERT INTO mailboxes (from_name, address, host, username, account_type)"
                           " VALUES ('S', 'support@acme.test', 'h', 'u', 'imap') RETURNING id").fetchone()["id"]
        request = conn.execute("INSERT INTO requests (mailbox_id) VALUES (%s) RETURNING id", (box,)).fetchone()["id"]
        oid = conn.execute("INSERT INTO outgoing_mail (request_id, kind, to_address, state)"
                           " VALUES (%s, 'staff_reply', 'c@example.org', 'pending') RETURNING id",
                           (request,)).fetchone()["id"]
        record = conn.execute("INSERT INTO discarded_events (letter_id, stage, event_type, event_ids, request_id,"
                              " outgoing_id, reason) VALUES ('x', 'reply', 'reply.queued', '{}', %s, %s,"
                              " 'customer asked us not to') RETURNING id", (request, oid)).fetchone()["id"]
        assert cancel_replies(conn, [record]) == 1
        row = conn.execute("SELECT state, reason FROM outgoing_mail WHERE id = %s", (oid,)).fetchone()
    # The replier's sweeper re-announces only pending replies: this one stays unsent.
    assert row == {"state": "skipped", "reason": "discarded by an operator: customer asked us not to"}
