"""Invariant 5: one fetcher per mailbox at a time, through a lease in the database.

A fetcher takes the mailbox that is due and not leased (or whose lease ran
out: its fetcher died), renews the lease while it works and releases it with
the poll's outcome. A fetcher that waits for new mail with IMAP IDLE keeps
the lease for as long as it idles, renewing it, and records each poll's
outcome without letting go. SKIP LOCKED lets many fetchers pick different
mailboxes without waiting on each other. A mailbox that keeps failing is
polled less often (exponential backoff, capped at an hour).

Recording a poll's outcome also appends it to the mailbox's poll log
(mailbox_polls, the newest KEEP_POLLS rows per mailbox): one statement, so
the log and the mailbox's status always agree, and an IDLE session that
polls every few seconds costs one small insert per poll, nothing per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from shared.db import transaction
from shared.mailboxes import KEEP_POLLS

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


@dataclass(frozen=True)
class Outcome:
    """What one poll did: for the mailbox's status and its poll log.

    error None: ok. error with partial: the mail was imported but the server
    could not deliver some messages (a success for the schedule, an error for
    the operator). error without partial: the poll failed at `step`.
    `seconds` is how long it ran (the first poll of a session includes
    connecting and logging in; a failed IDLE wait, the wait).
    """

    seconds: float
    error: str | None = None
    partial: bool = False
    step: str | None = None
    fetched: int = 0
    removed: int = 0

    @property
    def kind(self) -> str:
        return "ok" if self.error is None else "partial" if self.partial else "failed"


# Data-modifying CTEs share one snapshot: the DELETE does not see the row just
# inserted, so it keeps KEEP_POLLS - 1 older ones. It walks the index
# mailbox_polls_recent for at most KEEP_POLLS entries and, once the log is
# full, removes one row. Nothing is logged when the lease was lost (the
# mailbox's status is not recorded either).
_RECORD = """
WITH status AS (
    UPDATE mailboxes SET {status}{lease} WHERE id = %(id)s AND lease_owner = %(owner)s RETURNING id
), logged AS (
    INSERT INTO mailbox_polls (mailbox_id, started_at, outcome, fetched, removed, step, error)
    SELECT id, now() - make_interval(secs => %(seconds)s), %(outcome)s, %(fetched)s, %(removed)s,
           %(step)s, %(error)s
    FROM status
    RETURNING mailbox_id
)
DELETE FROM mailbox_polls WHERE id IN (
    SELECT p.id FROM mailbox_polls p WHERE p.mailbox_id = %(id)s
    ORDER BY p.finished_at DESC, p.id DESC OFFSET %(older)s
) AND EXISTS (SELECT FROM logged)
"""


def record(pool: ConnectionPool, mailbox_id: int, owner: str, outcome: Outcome, release: bool = False) -> None:
    """Record a poll's outcome on the mailbox's status and in its poll log; give the lease back if `release`."""
    kind = outcome.kind
    status = {"ok": _SUCCESS, "partial": _PARTIAL, "failed": _FAILURE}[kind]
    lease = ", lease_owner = NULL, lease_until = NULL" if release else ""
    with transaction(pool) as conn:
        conn.execute(
            _RECORD.format(status=status, lease=lease),
            {"id": mailbox_id, "owner": owner, "error": outcome.error, "outcome": kind,
             "seconds": max(outcome.seconds, 0.0), "fetched": outcome.fetched, "removed": outcome.removed,
             "step": outcome.step, "older": KEEP_POLLS - 1},
        )


def release(pool: ConnectionPool, mailbox_id: int, owner: str, outcome: Outcome) -> None:
    """Give the lease back and record the poll's outcome."""
    record(pool, mailbox_id, owner, outcome, release=True)


def let_go(pool: ConnectionPool, mailbox_id: int, owner: str) -> None:
    """Give the lease back without a poll outcome (the status was recorded already)."""
    with transaction(pool) as conn:
        conn.execute(
            "UPDATE mailboxes SET lease_owner = NULL, lease_until = NULL WHERE id = %s AND lease_owner = %s",
            (mailbox_id, owner),
        )
