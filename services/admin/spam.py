"""Spam and held mail: what an administrator sees and decides.

    requests       requests in the spam state (left out of the request list), newest first
    release        a spam request becomes a normal one; its auto-reply is decided anew (once)
    mark           a request into the spam state
    delete         a spam request goes (its raw mail stays)
    held           mail that made no request: a blocked sender's, or discarded by a rule
    release_held   held mail becomes a request after all
    set_threshold  a mailbox's spam threshold (rspamd's score; none: rspamd's own verdict)
    health         is rspamd checking every mail? (also in the status)

Decisions commit first, then wake the stage (a lost wake-up is re-sent by
the replier's sweep) and teach rspamd (`/learnspam`, `/learnham`); what
rspamd answered comes back with the result, and a failure to teach is
reported, never raised: the decision stands (shared/spam/decisions.py).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from services.admin.errors import Conflict, InvalidSetting, NotFound
from services.app import App
from shared.db import transaction
from shared.spam import decisions
from shared.spam.health import spam_check_health

log = logging.getLogger(__name__)

MAX_LIMIT = 500


def _limit(value: Any) -> int:
    try:
        limit = int(value)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidSetting({"limit": f"must be a whole number from 1 to {MAX_LIMIT}, not {value!r}"}) from None
    return limit


def requests(conn: psycopg.Connection, limit: Any = 100) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT r.id, r.subject, r.spam_reason, r.mailbox_id, m.address AS mailbox, c.address AS customer,"
        " r.created_at, v.score, v.action FROM requests r LEFT JOIN mailboxes m ON m.id = r.mailbox_id"
        " LEFT JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN LATERAL (SELECT raw_id FROM history h WHERE h.request_id = r.id AND h.kind = 'incoming'"
        "  ORDER BY h.id LIMIT 1) first ON true LEFT JOIN spam_verdicts v ON v.raw_id = first.raw_id"
        " WHERE r.spam ORDER BY r.id DESC LIMIT %s", (_limit(limit),)).fetchall()


def held(conn: psycopg.Connection, *, released: bool = False, limit: Any = 100) -> list[dict[str, Any]]:
    """Held mail, newest first; `released` includes what was released already."""
    return conn.execute(
        "SELECT h.raw_id, h.mailbox_id, m.address AS mailbox, h.kind, h.reason, h.from_address, h.subject,"
        " h.created_at, h.released_at, h.released_by, h.request_id FROM held_mail h"
        " LEFT JOIN mailboxes m ON m.id = h.mailbox_id WHERE %s OR h.released_at IS NULL"
        " ORDER BY h.raw_id DESC LIMIT %s", (released, _limit(limit))).fetchall()


def _decide(app: App, action: Any, ref: int, by: str) -> dict[str, Any]:
    who = (by or "").strip() or "an administrator"
    try:
        with transaction(app.pool) as conn:
            decided = action(conn, ref, who)
    except decisions.NotSpam as exc:
        raise Conflict(str(exc)) from None
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    announced = True
    if decided.events:
        try:
            decisions.announce(app.settings, app.topology, decided.events)
        except Exception as exc:  # noqa: BLE001 - the replier's sweep sends it again
            announced = False
            log.warning("release announced later by the sweep", extra={"error": repr(exc)})
    taught = decisions.teach(app.pool, app.settings, decided.training_ids)
    return {"id": ref, "announced": announced, "taught": taught}


def release(app: App, request_id: int, by: str) -> dict[str, Any]:
    return _decide(app, decisions.release, request_id, by)


def mark(app: App, request_id: int, by: str) -> dict[str, Any]:
    return _decide(app, decisions.mark_spam, request_id, by)


def delete(app: App, request_id: int, by: str) -> dict[str, Any]:
    return _decide(app, decisions.delete, request_id, by)


def release_held(app: App, raw_id: int, by: str) -> dict[str, Any]:
    return _decide(app, decisions.release_held, raw_id, by)


def set_threshold(conn: psycopg.Connection, mailbox_id: int, value: Any) -> dict[str, Any]:
    """A mailbox's spam threshold: a number (a mail scoring at least this is spam), or none/empty."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        threshold = None
    else:
        try:
            threshold = float(value)
            if threshold != threshold or not -1000 <= threshold <= 1000:
                raise ValueError
        except (TypeError, ValueError):
            raise InvalidSetting({"spam_threshold": f"must be a number from -1000 to 1000 or none,"
                                                    f" not {value!r}"}) from None
    row = conn.execute("UPDATE mailboxes SET spam_threshold = %s WHERE id = %s AND removed_at IS NULL"
                       " RETURNING id, address, spam_threshold", (threshold, mailbox_id)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return row


def thresholds(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every mailbox with its spam threshold (None: rspamd's own verdict)."""
    return conn.execute("SELECT id, address, spam_threshold FROM mailboxes WHERE removed_at IS NULL"
                        " ORDER BY lower(address)").fetchall()


def health(conn: psycopg.Connection, app: App) -> dict[str, Any]:
    h = spam_check_health(conn, configured=app.settings.rspamd_url is not None)
    return {"configured": h.configured, "unchecked": h.unchecked, "last_problem": h.last_problem,
            "last_at": h.last_at, "needs_attention": h.needs_attention, "summary": h.describe()}
