"""Discarding dead letters, with a record of each: what was thrown away, by whom and why.

`discard` is the one way the CLI (`deskmail dead-letters purge`), the JSON
API and the admin pages give dead letters up. It refuses to work without a
reason, and writes one `discarded_events` row per letter BEFORE the broker
removes it: a record of a removal that then failed is harmless (it has no
`confirmed_at`, and the letter is still listed as a dead letter), while a
removal without a record is exactly what this module exists to prevent.
Once the broker has confirmed the removal, the rows get their `confirmed_at`.

The records are also what tells `status.backlog` that the mail or reply
behind a discarded letter is no longer waiting work.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from kombu import Connection
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from shared import broker_admin
from shared.broker_admin import DeadLetter
from shared.db import transaction
from shared.mailboxes import InvalidSetting
from shared.topology import Topology

log = logging.getLogger(__name__)

REASON_MISSING = "must not be empty: say why the message is given up (it is recorded)"
ID_COLUMNS = ("raw_id", "request_id", "outgoing_id")


def check_reason(reason: Any) -> str:
    """The reason, trimmed; InvalidSetting({"reason": ...}) when there is none."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidSetting({"reason": REASON_MISSING})
    if "\x00" in reason:  # PostgreSQL text cannot hold it
        raise InvalidSetting({"reason": "must not contain NUL characters"})
    return reason.strip()


def _id(value: Any) -> int | None:
    # A malformed event may carry anything; the jsonb column keeps it as it came.
    if isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63:
        return value
    return None


_INSERT = """
INSERT INTO discarded_events (letter_id, stage, event_type, event_ids, raw_id, request_id, outgoing_id,
                              error, failed_at, reason, discarded_by)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
"""


def _record(conn: psycopg.Connection, letter: DeadLetter, reason: str, by: str | None) -> int:
    ids = dict(letter.event.ids) if letter.event else {}
    row = conn.execute(_INSERT, (
        letter.id, letter.stage, letter.event.type if letter.event else None, Jsonb(ids),
        *(_id(ids.get(k)) for k in ID_COLUMNS), letter.error, letter.failed_at or None, reason, by,
    )).fetchone()
    assert row is not None
    return int(row["id"])


def cancel_replies(conn: psycopg.Connection, record_ids: list[int]) -> int:
    """Staff replies whose reply.queued was discarded are not sent after all.

    Without this the replier's sweeper would find them still pending and
    announce them again: the discard would not stick.
    """
    return conn.execute(
        "UPDATE outgoing_mail o SET state = 'skipped', updated_at = now(),"
        " reason = 'discarded by an operator: ' || d.reason"
        " FROM discarded_events d WHERE d.id = ANY(%s) AND d.outgoing_id = o.id AND o.state = 'pending'",
        (record_ids,),
    ).rowcount


def discard(pool: ConnectionPool, broker: Connection, topology: Topology, ids: list[str] | None,
            stage: str | None, reason: Any, by: str | None) -> list[DeadLetter]:
    """Remove dead letters for good (those whose id starts with one of `ids`, or all of `stage`).

    Each is recorded (committed) before the broker removes it; if recording
    fails, nothing is removed. Raises InvalidSetting without a reason, and
    whatever broker_admin.purge raises (QueueMissing, ValueError for an
    unknown stage, broker errors).
    """
    why = check_reason(reason)
    recorded: list[int] = []

    def record(letters: list[DeadLetter]) -> None:
        with transaction(pool) as conn:
            recorded[:] = [_record(conn, letter, why, by) for letter in letters]

    done = broker_admin.purge(broker, topology, ids, stage, before=record)
    if recorded:
        try:
            with transaction(pool) as conn:
                conn.execute("UPDATE discarded_events SET confirmed_at = now() WHERE id = ANY(%s)",
                             (recorded,))
                cancel_replies(conn, recorded)
        except Exception as exc:  # noqa: BLE001 - the letters are gone and recorded; only the mark is missing
            log.error("dead letters discarded, but their records could not be marked confirmed",
                      extra={"records": recorded, "error": repr(exc)})
    for letter in done:
        log.warning("dead letter discarded", extra={"dead_letter": letter.id, "stage": letter.stage,
                                                    "by": by, "reason": why})
    return done


def discarded(conn: psycopg.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent discard records, newest first."""
    return conn.execute(
        "SELECT id, letter_id, stage, event_type, event_ids, raw_id, request_id, outgoing_id, error,"
        " failed_at, reason, discarded_by, discarded_at, confirmed_at"
        " FROM discarded_events ORDER BY discarded_at DESC, id DESC LIMIT %s", (limit,),
    ).fetchall()
