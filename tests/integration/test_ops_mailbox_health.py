"""A mailbox no fetcher polls shows as stale within one poll interval and a lease, not after 10 minutes."""

from __future__ import annotations

import pytest

from services.admin.status import mailbox_health
from shared import mailboxes
from shared.db import transaction

pytestmark = pytest.mark.integration


def _mailbox(app, address: str, **status: object) -> int:
    with transaction(app.pool) as conn:
        mailbox_id = mailboxes.create(conn, app.keys, {
            "from_name": "Support", "address": address, "account_type": "maildir",
            "host": "/nonexistent", "username": "x", "security": "none", "poll_interval": 60,
        }, password=None)
        sets = ", ".join(f"{k} = {v}" for k, v in status.items())
        conn.execute(f"UPDATE mailboxes SET {sets} WHERE id = %s", (mailbox_id,))
    return mailbox_id


def test_a_mailbox_nobody_polls_is_flagged_after_one_interval_and_a_lease(app):
    polled = _mailbox(app, "polled@acme.test", last_poll_at="now() - interval '30 seconds'",
                      last_success_at="now() - interval '30 seconds'")
    forgotten = _mailbox(app, "forgotten@acme.test", last_poll_at="now() - interval '200 seconds'",
                         last_success_at="now() - interval '200 seconds'")
    with app.pool.connection() as conn:
        health = {m.id: m for m in mailbox_health(conn)}
    assert health[polled].state == "ok"
    assert health[forgotten].state == "stale"
    assert "is a fetcher running?" in health[forgotten].detail
    assert health[forgotten].needs_attention
