"""An administrator's spam decisions: release, mark as spam, delete, release held mail.

Each decision is one transaction in the caller's connection, written into
the request's history, and recorded in `spam_training` so that rspamd learns
it (`teach`, called after the commit: rspamd being down must not undo the
decision; the outcome is recorded either way and shown to the administrator).

Releasing wakes a stage after the commit (an outbox, as for staff replies):

    released spam request -> request.created to the replier, which decides
        its auto-reply as for any new request (still due? rate limits?); the
        auto-reply that was withheld as spam is removed first, so the one
        auto-reply a request may have is decided anew, at most once;
    released held mail    -> mail.parsed to the ticketer, which makes it a
        request without the block or the discard.

`announce` publishes those events; if that is lost (the broker down, the
process killed, the embedded mode's CLI in another process), the replier's
sweep finds the released work still undone after a grace period and
announces it again (`due`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from shared.events import MAIL_PARSED, REQUEST_CREATED, Event
from shared.publisher import Publisher
from shared.settings import Settings
from shared.spam.rspamd import Rspamd, RspamdError
from shared.topology import Topology
from shared.worker import connect


class NotSpam(LookupError):
    """The request or held mail is not in the state the decision needs; in words."""


@dataclass(frozen=True)
class Decided:
    """What a decision did: the training rows to teach rspamd, the events to announce."""

    training_ids: list[int]
    events: list[tuple[str, Event]]  # (route, event)


def _note(conn: psycopg.Connection, request_id: int, text: str, by: str) -> None:
    conn.execute("INSERT INTO history (request_id, kind, subject, body_text, author)"
                 " VALUES (%s, 'note', 'spam', %s, %s)", (request_id, text, by))


def _train(conn: psycopg.Connection, request_id: int, verdict: str, by: str) -> list[int]:
    """A training row per incoming mail of the request (its first one is what made it)."""
    rows = conn.execute(
        "INSERT INTO spam_training (raw_id, verdict, decided_by) SELECT raw_id, %s, %s FROM history"
        " WHERE request_id = %s AND kind = 'incoming' AND raw_id IS NOT NULL ORDER BY id LIMIT 1"
        " RETURNING id", (verdict, by, request_id)).fetchall()
    return [r["id"] for r in rows]


def _first_mail(conn: psycopg.Connection, request_id: int) -> int | None:
    row = conn.execute("SELECT min(id) AS id FROM history WHERE request_id = %s AND kind = 'incoming'",
                       (request_id,)).fetchone()
    return row["id"] if row else None


def _lock(conn: psycopg.Connection, request_id: int, *, spam: bool, refusal: str) -> None:
    """Lock the request; LookupError if there is none, NotSpam(refusal) unless its spam state is `spam`."""
    row = conn.execute("SELECT spam FROM requests WHERE id = %s FOR UPDATE", (request_id,)).fetchone()
    if row is None:
        raise LookupError(f"no request {request_id}")
    if row["spam"] is not spam:
        raise NotSpam(f"request {request_id} {refusal}")


def release(conn: psycopg.Connection, request_id: int, by: str) -> Decided:
    """A spam request becomes a normal one; its auto-reply is decided anew."""
    _lock(conn, request_id, spam=True, refusal="is not spam")
    conn.execute("UPDATE requests SET spam = false, released_at = now(), updated_at = now()"
                 " WHERE id = %s", (request_id,))
    # Only an auto-reply withheld (never sent) can be decided again: at most once.
    conn.execute("DELETE FROM outgoing_mail WHERE request_id = %s AND kind = 'auto_reply'"
                 " AND state = 'skipped'", (request_id,))
    _note(conn, request_id, f"released from spam by {by}; rspamd is taught it is not spam", by)
    history_id = _first_mail(conn, request_id)
    events = ([("reply", Event(REQUEST_CREATED, {"request_id": request_id, "history_id": history_id,
                                                 "automatic": None}))] if history_id else [])
    return Decided(_train(conn, request_id, "ham", by), events)


def mark_spam(conn: psycopg.Connection, request_id: int, by: str) -> Decided:
    """A request an administrator calls spam: into the spam state, and rspamd learns it."""
    _lock(conn, request_id, spam=False, refusal="is spam already")
    conn.execute("UPDATE requests SET spam = true, spam_reason = %s, updated_at = now() WHERE id = %s",
                 (f"marked by {by}", request_id))
    _note(conn, request_id, f"marked as spam by {by}; rspamd is taught it is spam", by)
    return Decided(_train(conn, request_id, "spam", by), [])


def delete(conn: psycopg.Connection, request_id: int, by: str) -> Decided:
    """Delete a spam request (its history goes with it; the raw mail stays, as all raw mail does)."""
    _lock(conn, request_id, spam=True, refusal="is not spam; only spam requests are deleted")
    training = _train(conn, request_id, "spam", by)
    conn.execute("UPDATE held_mail SET request_id = NULL WHERE request_id = %s", (request_id,))
    conn.execute("DELETE FROM requests WHERE id = %s", (request_id,))
    return Decided(training, [])


def release_held(conn: psycopg.Connection, raw_id: int, by: str) -> Decided:
    """Held mail (blocked sender, discarded by a rule) goes through the ticketer again, let through."""
    row = conn.execute("SELECT raw_id, mailbox_id, released_at FROM held_mail WHERE raw_id = %s FOR UPDATE",
                       (raw_id,)).fetchone()
    if row is None:
        raise LookupError(f"no held mail {raw_id}")
    if row["released_at"] is not None:
        raise NotSpam(f"held mail {raw_id} was released already")
    conn.execute("UPDATE held_mail SET released_at = now(), released_by = %s WHERE raw_id = %s", (by, raw_id))
    return Decided([], [("ticket", Event(MAIL_PARSED, {"raw_id": raw_id, "mailbox_id": row["mailbox_id"]}))])


def announce(settings: Settings, topology: Topology, events: list[tuple[str, Event]]) -> None:
    """Publish (route, event) pairs, confirmed by the broker."""
    by_route: dict[str, list[Event]] = {}
    for route, event in events:
        by_route.setdefault(route, []).append(event)
    if not by_route:
        return
    with connect(settings) as conn:
        topology.declare(conn)
        publisher = Publisher(conn)
        for route, batch in by_route.items():
            publisher.publish_events(topology.exchange, route, batch)


def due(conn: psycopg.Connection, grace_seconds: float, limit: int = 1000) -> list[tuple[str, Event]]:
    """Released work whose announcement got lost: still undone `grace_seconds` after the release."""
    out: list[tuple[str, Event]] = []
    for row in conn.execute(
        "SELECT r.id, (SELECT min(h.id) FROM history h WHERE h.request_id = r.id AND h.kind = 'incoming')"
        " AS history_id FROM requests r JOIN mailboxes m ON m.id = r.mailbox_id"
        " WHERE r.released_at IS NOT NULL AND r.released_at < now() - make_interval(secs => %s)"
        " AND NOT r.spam AND m.auto_reply AND m.removed_at IS NULL AND NOT EXISTS (SELECT 1 FROM"
        " outgoing_mail o WHERE o.request_id = r.id AND o.kind = 'auto_reply') ORDER BY r.id LIMIT %s",
        (grace_seconds, limit)):
        if row["history_id"] is not None:
            out.append(("reply", Event(REQUEST_CREATED, {"request_id": row["id"],
                                                         "history_id": row["history_id"], "automatic": None})))
    for row in conn.execute(
        "SELECT raw_id, mailbox_id FROM held_mail WHERE released_at IS NOT NULL AND request_id IS NULL"
        " AND released_at < now() - make_interval(secs => %s) AND NOT EXISTS"
        " (SELECT 1 FROM history h WHERE h.raw_id = held_mail.raw_id) ORDER BY raw_id LIMIT %s",
        (grace_seconds, limit)):
        out.append(("ticket", Event(MAIL_PARSED, {"raw_id": row["raw_id"], "mailbox_id": row["mailbox_id"]})))
    return out


def teach(pool: ConnectionPool, settings: Settings, training_ids: list[int]) -> list[dict[str, Any]]:
    """Send the decisions to rspamd's controller; record and return each outcome.

    Without DESKMAIL_RSPAMD_URL nothing is sent (learned stays NULL). A failure,
    or rspamd declining (too short to learn), is recorded (learned false, the
    reason) and returned, never raised: the decision itself is already committed.
    """
    if not training_ids:
        return []
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT t.id, t.verdict, r.data FROM spam_training t JOIN raw_messages r ON r.id = t.raw_id"
            " WHERE t.id = ANY(%s) ORDER BY t.id", (training_ids,)).fetchall()
    client = (Rspamd(settings.rspamd_url, controller_url=settings.rspamd_controller_url,
                     password=settings.rspamd_password, timeout=max(settings.rspamd_timeout, 10.0))
              if settings.rspamd_url else None)
    results = []
    for row in rows:
        if client is None:
            learned, outcome = None, "rspamd is not configured (DESKMAIL_RSPAMD_URL)"
        else:
            try:
                learned, outcome = client.learn(bytes(row["data"]), spam=row["verdict"] == "spam")
            except RspamdError as exc:
                learned, outcome = False, str(exc)
        results.append({"id": row["id"], "verdict": row["verdict"], "learned": learned, "outcome": outcome})
    with pool.connection() as conn:
        with conn.cursor() as cur:
            cur.executemany("UPDATE spam_training SET learned = %s, outcome = %s WHERE id = %s",
                            [(r["learned"], r["outcome"], r["id"]) for r in results])
        conn.commit()
    return results
