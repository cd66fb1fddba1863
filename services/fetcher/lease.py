"""Invariant 5: one fetcher per mailbox at a time, through a lease in the database.

A fetcher takes the mailbox that is due and not leased (or whose lease ran
out: its fetcher died), renews the lease while it works and releases it with
the poll's outcome. SKIP LOCKED lets many fetchers pick different mailboxes
without waiting on each other. A mailbox that keeps failing is polled less
often (exponential backoff, capped at an hour).
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool

from shared.db import transaction

LEASE_SECONDS = 120

_ACQUIRE = """
UPDATE mailboxes SET lease_owner = %(owner)s, lease_until = now() + make_interval(secs => %(secs)s)
WHERE id = (
    SELECT id FROM mailboxes
    WHERE enabled
      AND (lease_until IS NULL OR lease_until < now())
      AND (last_poll_at IS NULL OR %(ignore_schedule)s OR last_poll_at
           + make_interval(secs => least(poll_interval * power(2, least(failures_in_row, 6)), 3600))
           <= now())
    ORDER BY last_poll_at NULLS FIRST, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING *
"""


def acquire(pool: ConnectionPool, owner: str, ignore_schedule: bool = False) -> dict[str, Any] | None:
    with transaction(pool) as conn:
        return conn.execute(
            _ACQUIRE, {"owner": owner, "secs": LEASE_SECONDS, "ignore_schedule": ignore_schedule}
        ).fetchone()


def renew(pool: ConnectionPool, mailbox_id: int, owner: str) -> bool:
    """Extend the lease; False if it was lost (then stop touching the mailbox)."""
    with transaction(pool) as conn:
        row = conn.execute(
            "UPDATE mailboxes SET lease_until = now() + make_interval(secs => %s)"
            " WHERE id = %s AND lease_owner = %s RETURNING id",
            (LEASE_SECONDS, mailbox_id, owner),
        ).fetchone()
        return row is not None


def release(pool: ConnectionPool, mailbox_id: int, owner: str, error: str | None) -> None:
    """Give the lease back and record the poll's outcome on the mailbox's status."""
    with transaction(pool) as conn:
        if error is None:
            conn.execute(
                "UPDATE mailboxes SET lease_owner = NULL, lease_until = NULL, last_poll_at = now(),"
                " last_success_at = now(), failures_in_row = 0 WHERE id = %s AND lease_owner = %s",
                (mailbox_id, owner),
            )
        else:
            conn.execute(
                "UPDATE mailboxes SET lease_owner = NULL, lease_until = NULL, last_poll_at = now(),"
                " last_error = %s, last_error_at = now(), failures_in_row = failures_in_row + 1"
                " WHERE id = %s AND lease_owner = %s",
                (error, mailbox_id, owner),
            )
