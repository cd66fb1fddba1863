"""Invariant 5 in the database: one fetcher per mailbox, through the lease (services/fetcher/lease.py).

The lease functions against the real PostgreSQL, without a mail server:
who gets which mailbox, when a dead fetcher's mailbox is taken over, and
how a failing mailbox is polled less often.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.fetcher import lease
from shared import mailboxes
from shared.db import transaction

pytestmark = pytest.mark.integration


def add(app, n: int, **values: Any) -> int:
    with transaction(app.pool) as conn:
        return mailboxes.create(conn, app.keys, {
            "from_name": "Support", "address": f"box{n}@acme.test", "account_type": "imap",
            "host": "imap.acme.test", "username": "support", "security": "tls", "poll_interval": 60,
            **values}, "secret")


def row(app, mailbox_id: int) -> dict[str, Any]:
    with app.pool.connection() as conn:
        return conn.execute("SELECT * FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()


def sql(app, query: str, *params: object) -> None:
    with transaction(app.pool) as conn:
        conn.execute(query, params)


def test_each_mailbox_goes_to_one_fetcher_at_a_time(app):
    ids = {add(app, n) for n in range(3)}
    got = [lease.acquire(app.pool, f"fetcher-{i}") for i in range(4)]
    assert {g["id"] for g in got[:3]} == ids  # three fetchers, three different mailboxes
    assert got[3] is None  # the fourth finds nothing free
    assert {row(app, g["id"])["lease_owner"] for g in got[:3]} == {"fetcher-0", "fetcher-1", "fetcher-2"}


def test_a_renewed_lease_holds_and_a_lost_one_says_so(app):
    mailbox_id = add(app, 1)
    assert lease.acquire(app.pool, "a", seconds=60)["id"] == mailbox_id
    assert lease.renew(app.pool, mailbox_id, "a")
    assert not lease.renew(app.pool, mailbox_id, "b")  # not b's
    sql(app, "UPDATE mailboxes SET enabled = false WHERE id = %s", mailbox_id)
    assert not lease.renew(app.pool, mailbox_id, "a")  # disabled meanwhile: stop touching it


def test_a_dead_fetchers_mailbox_is_taken_over_once_its_lease_expires(app):
    mailbox_id = add(app, 1)
    assert lease.acquire(app.pool, "dead", seconds=60)["id"] == mailbox_id
    assert lease.acquire(app.pool, "alive", ignore_schedule=True) is None  # still leased
    sql(app, "UPDATE mailboxes SET lease_until = now() - interval '1 second' WHERE id = %s", mailbox_id)
    assert lease.acquire(app.pool, "alive", ignore_schedule=True)["id"] == mailbox_id
    assert not lease.renew(app.pool, mailbox_id, "dead")  # the dead one, should it wake, lets go
    lease.release(app.pool, mailbox_id, "dead", lease.Outcome(1.0))  # ...and records nothing
    assert row(app, mailbox_id)["lease_owner"] == "alive" and row(app, mailbox_id)["last_poll_at"] is None


def test_a_mailbox_is_due_again_after_its_interval_and_later_after_failures(app):
    mailbox_id = add(app, 1)
    assert lease.acquire(app.pool, "f")["id"] == mailbox_id
    lease.release(app.pool, mailbox_id, "f", lease.Outcome(0.5))
    assert lease.acquire(app.pool, "f") is None  # polled just now, interval 60 s

    def polled_ago(seconds: int) -> None:
        sql(app, "UPDATE mailboxes SET last_poll_at = now() - make_interval(secs => %s) WHERE id = %s",
            seconds, mailbox_id)

    polled_ago(61)
    assert lease.acquire(app.pool, "f")["id"] == mailbox_id
    for _ in range(3):  # three failures in a row: 60 s * 2^3 = 8 minutes
        lease.release(app.pool, mailbox_id, "f", lease.Outcome(0.1, "tcp: refused", step="tcp"))
        lease.acquire(app.pool, "f", ignore_schedule=True)
    lease.let_go(app.pool, mailbox_id, "f")
    assert row(app, mailbox_id)["failures_in_row"] == 3
    polled_ago(7 * 60)
    assert lease.acquire(app.pool, "f") is None
    polled_ago(8 * 60 + 1)
    assert lease.acquire(app.pool, "f")["id"] == mailbox_id
    lease.release(app.pool, mailbox_id, "f", lease.Outcome(0.2))  # success resets the backoff
    assert row(app, mailbox_id)["failures_in_row"] == 0


def test_the_backoff_is_capped_at_an_hour(app):
    mailbox_id = add(app, 1)
    sql(app, "UPDATE mailboxes SET failures_in_row = 20, last_poll_at = now() - interval '61 minutes'"
        " WHERE id = %s", mailbox_id)
    assert lease.acquire(app.pool, "f")["id"] == mailbox_id


def test_disabled_and_removed_mailboxes_are_not_leased(app):
    disabled, removed = add(app, 1, enabled=False), add(app, 2)
    sql(app, "UPDATE mailboxes SET removed_at = now() WHERE id = %s", removed)
    assert lease.acquire(app.pool, "f", ignore_schedule=True) is None
    assert {row(app, i)["lease_owner"] for i in (disabled, removed)} == {None}


def test_a_partial_poll_counts_as_success_for_the_schedule_and_as_an_error_for_the_operator(app):
    mailbox_id = add(app, 1)
    lease.acquire(app.pool, "f")
    sql(app, "UPDATE mailboxes SET failures_in_row = 2 WHERE id = %s", mailbox_id)
    lease.record(app.pool, mailbox_id, "f", lease.Outcome(1.0, "message 7: fetch: dropped", partial=True,
                                                          step="fetch", fetched=3))
    after = row(app, mailbox_id)
    assert after["failures_in_row"] == 0 and after["last_success_at"] is not None
    assert after["last_error"] == "message 7: fetch: dropped"
    assert after["lease_owner"] == "f"  # recorded without letting go (an IDLE session keeps it)
    with app.pool.connection() as conn:
        [poll] = conn.execute("SELECT outcome, fetched, step FROM mailbox_polls WHERE mailbox_id = %s",
                              (mailbox_id,)).fetchall()
    assert poll == {"outcome": "partial", "fetched": 3, "step": "fetch"}
