# ruff: noqa: F811 - fixtures are imported from web_support by name
"""The age of the oldest work per stage, from the database ledger (issue 10).

Rows are written with their timestamps set in the past, as the stages would
have left them; `status.backlog`, GET /api/v1/status and the status page must
all say how many items wait for each stage and how old the oldest is, and
must not count mail that has its outcome (a request, or an unmatched bounce)
or replies that are sent or failed.
"""

from __future__ import annotations

import pytest

from services.admin import status as ops_status
from shared.db import transaction
from tests.integration.web_support import admin, api, browser_client, web_app  # noqa: F401
from tests.support.mailstore import store_mail

pytestmark = pytest.mark.integration

MIN = 60
HOUR = 3600

# raw id -> (received, remote state, parsed, outcome); ages in seconds ago.
MAIL = {
    1: (2 * HOUR + 10, "published", None, None),          # waiting for the parser: the oldest
    2: (30 * MIN, "stored", None, None),                  # stored, not yet announced: waiting too
    3: (5 * HOUR, "committed", None, None),               # not in flight: not counted
    4: (5 * HOUR, "published", 40 * MIN + 10, None),      # waiting for the ticketer: the oldest
    5: (6 * HOUR, "published", 10 * MIN, None),           # waiting for the ticketer
    6: (9 * HOUR, "published", 8 * HOUR, "unmatched"),    # an unmatched bounce: never gets history
    7: (9 * HOUR, "published", 8 * HOUR, "history"),      # recorded: has its outcome
    8: (9 * HOUR, "committed", 8 * HOUR, "history"),      # done, the usual way
}
# (kind, state, created) of outgoing mail.
REPLIES = [
    ("auto_reply", "pending", 20 * MIN + 10),   # the oldest unsent
    ("staff_reply", "sending", 5 * MIN),
    ("staff_reply", "sent", 7 * HOUR),
    ("staff_reply", "failed", 8 * HOUR),
]


def _ago(seconds: int) -> str:
    return f"now() - make_interval(secs => {seconds})"


def _write_ledger(pool) -> None:
    with transaction(pool) as conn:
        box = conn.execute(
            "INSERT INTO mailboxes (from_name, address, host, username, account_type)"
            " VALUES ('Support', 'support@acme.test', 'imap.acme.test', 'support', 'imap') RETURNING id"
        ).fetchone()["id"]
        request = conn.execute("INSERT INTO requests (mailbox_id, subject) VALUES (%s, 'help') RETURNING id",
                               (box,)).fetchone()["id"]
        for raw_id, (received, state, parsed, outcome) in MAIL.items():
            store_mail(conn, box, f"Subject: mail {raw_id}\r\n\r\nx".encode(), raw_id=raw_id, state=state,
                       received_ago=received)
            if parsed is not None:
                conn.execute(f"INSERT INTO parsed_messages (raw_id, parsed, created_at)"
                             f" VALUES (%s, '{{}}', {_ago(parsed)})", (raw_id,))
            if outcome == "history":
                conn.execute("INSERT INTO history (request_id, kind, raw_id) VALUES (%s, 'incoming', %s)",
                             (request, raw_id))
            elif outcome == "unmatched":
                conn.execute("INSERT INTO unmatched_mail (raw_id, mailbox_id, kind, reason)"
                             " VALUES (%s, %s, 'bounce', 'matched no request')", (raw_id, box))
        for kind, state, created in REPLIES:
            # One auto-reply per request (a unique index): each reply gets its own request.
            owner = conn.execute("INSERT INTO requests (mailbox_id) VALUES (%s) RETURNING id",
                                 (box,)).fetchone()["id"]
            conn.execute(f"INSERT INTO outgoing_mail (request_id, kind, to_address, state, created_at)"
                         f" VALUES (%s, %s, 'customer@example.org', %s, {_ago(created)})",
                         (owner, kind, state))


def _assert_about(age: float | None, expected: int) -> None:
    assert age is not None and expected <= age < expected + 60, (age, expected)


def test_backlog_is_read_from_the_ledger(app, api, browser_client):
    with app.pool.connection() as conn:
        empty = ops_status.backlog(conn)
    assert {s: (b.waiting, b.oldest_age_seconds) for s, b in empty.items()} == {
        "parse": (0, None), "ticket": (0, None), "reply": (0, None)}

    _write_ledger(app.pool)
    with app.pool.connection() as conn:
        found = ops_status.backlog(conn)
    assert (found["parse"].waiting, found["ticket"].waiting, found["reply"].waiting) == (2, 2, 2)
    _assert_about(found["parse"].oldest_age_seconds, 2 * HOUR + 10)   # since stored, not parsed
    _assert_about(found["ticket"].oldest_age_seconds, 40 * MIN + 10)  # since parsed, not received
    _assert_about(found["reply"].oldest_age_seconds, 20 * MIN + 10)

    answer = api.get("/api/v1/status")
    assert answer.status_code == 200, answer.text
    rows = {(q["stage"], q["kind"]): q for q in answer.json()["queues"]}
    for stage, expected in (("parse", 2 * HOUR + 10), ("ticket", 40 * MIN + 10), ("reply", 20 * MIN + 10)):
        assert rows[(stage, "work")]["waiting"] == 2
        _assert_about(rows[(stage, "work")]["oldest_age_seconds"], expected)
        assert rows[(stage, "retry")]["waiting"] is None  # the ledger does not split work by queue

    page = browser_client.get("/")
    assert page.status_code == 200
    for text in ("2h00m", "40m1", "20m1"):  # 40m10s..40m69s would not fit: the test takes seconds
        assert f'<td class="age">{text}' in page.text, page.text[:4000]
