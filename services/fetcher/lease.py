"""Invariant 5: one fetcher per mailbox at a time, through a lease in the database.

A fetcher takes the mailbox that is due and not leased (or whose lease ran
out: its fetcher died), renews the lease while it works and releases it with
the poll's outcome. A fetcher that waits for new mail with IMAP IDLE keeps
the lease for as long as it idles, renewing it, and records each poll's
outcome without letting go. SKIP LOCKED lets many fetchers pick different
mailboxes without waiting on each other. A mailbox that keeps failing is
polled less often (exponential backoff, capped at an hour).
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool

from shared.db import transaction

LEASE_SECONDS = 60

_ACQUIRE = """
UPDATE mailboxes SET lease_owner = %(owner)s, lease_until = now() + make_interval(secs => %(secs)s)
WHERE id = (
    SELECT id FROM mailboxes
    WHERE enabled AND removed_at IS NULL
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

_SUCCESS = ("last_poll_at = now(), last_success_at = now(), failures_in_row = 0")
_FAILURE = ("last_poll_at = now(), last_error = %(error)s, last_error_at = now(),"
            " failures_in_row = failures_in_row + 1")
# A poll that imported the mailbox but had to skip a message the server could
# not deliver: a success for the schedule, an error for the operator to see.
_PARTIAL = ("last_poll_at = now(), last_success_at = now(), failures_in_row = 0,"
            " last_error = %(error)s, last_error_at = now()")


def acquire(pool: ConnectionPool, owner: str, ignore_schedule: bool = False,
            seconds: float = LEASE_SECONDS) -> dict[str, Any] | None:
    with transaction(pool) as conn:
        return conn.execute(
            _ACQUIRE, {"owner": owner, "secs": seconds, "ignore_schedule": ignore_schedule}
        ).fetchone()


def renew(pool: ConnectionPool, mailbox_id: int, owner: str, seconds: float = LEASE_SECONDS) -> bool:
    """Extend the lease; False if it was lost (then stop touching the mailbox)."""
    with transaction(pool) as conn:
        row = conn.execute(
            "UPDATE mailboxes SET lease_until = now() + make_interval(secs => %s)"
            " WHERE id = %s AND lease_owner = %s AND enabled AND removed_at IS NULL RETURNING id",
            (seconds, mailbox_id, owner),
        ).fetchone()
        return row is not None


def record(pool: ConnectionPool, mailbox_id: int, owner: str, error: str | None,
           partial: bool = False, release: bool = False) -> None:
    """Record a poll's outcome on the mailbox's status; give the lease back if `release`."""
    status = _SUCCESS if error is None else _PARTIAL if partial else _FAILURE
    lease = ", lease_owner = NULL, lease_until = NULL" if release else ""
    with transaction(pool) as conn:
        conn.execute(
            f"UPDATE mailboxes SET {status}{lease} WHERE id = %(id)s AND lease_owner = %(owner)s",
            {"id": mailbox_id, "owner": owner, "error": error},
        )


def release(pool: ConnectionPool, mailbox_id: int, owner: str, error: str | None, partial: bool = False) -> None:
    """Give the lease back and record the poll's outcome on the mailbox's status."""
    record(pool, mailbox_id, owner, error, partial=partial, release=True)


def let_go(pool: ConnectionPool, mailbox_id: int, owner: str) -> None:
    """Give the lease back without a poll outcome (the status was recorded already)."""
    with transaction(pool) as conn:
        conn.execute(
            "UPDATE mailboxes SET lease_owner = NULL, lease_until = NULL WHERE id = %s AND lease_owner = %s",
            (mailbox_id, owner),
        )
