"""Requests as people read them: one filtered, paged list and one request in full, for every front end.

The list pages by id (newest first): the cursor is the last id seen, so a
page costs the same at request 10 and at request 10,000, and new mail
arriving while someone pages does not shift what they see.

    filters  mailbox_id, category_id, status (open, closed), unparsed (true/false),
             customer (an address), spam (false, the default: spam requests stay out of
             the list; true: only them), cursor, limit (1-200, default 50)

`unmatched` is the automatic mail (bounces) that belonged to no request,
kept for a person to look at. Moving requests to another category is
services/admin/categories.py; answering them is services/admin/replies.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from services.admin import form_values, replies
from services.admin.errors import InvalidSetting, NotFound

STATUSES = ("open", "closed")
MAX_LIMIT = 200
FILTERS = ("mailbox_id", "category_id", "status", "unparsed", "customer", "spam", "cursor", "limit")

_LIST = """
SELECT r.id, r.subject, r.status, r.unparsed, r.spam, r.spam_reason, r.mailbox_id, m.address AS mailbox,
       r.category_id, cat.name AS category, c.address AS customer,
       (SELECT count(*) FROM history h WHERE h.request_id = r.id) AS entries,
       (SELECT count(*) FROM outgoing_mail o WHERE o.request_id = r.id AND o.state = 'failed') AS failed_outgoing,
       r.created_at, r.updated_at
FROM requests r
LEFT JOIN customers c ON c.id = r.customer_id
LEFT JOIN categories cat ON cat.id = r.category_id
LEFT JOIN mailboxes m ON m.id = r.mailbox_id
WHERE (%(m)s::bigint IS NULL OR r.mailbox_id = %(m)s)
  AND (%(c)s::bigint IS NULL OR r.category_id = %(c)s)
  AND (%(s)s::text IS NULL OR r.status = %(s)s)
  AND (%(u)s::boolean IS NULL OR r.unparsed = %(u)s)
  AND r.spam = %(spam)s
  AND (%(who)s::text IS NULL OR lower(c.address) = lower(%(who)s))
  AND (%(before)s::bigint IS NULL OR r.id < %(before)s)
ORDER BY r.id DESC LIMIT %(l)s
"""


def parse_filters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Typed filters from query strings, JSON or arguments; InvalidSetting names each bad one."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {"mailbox_id": None, "category_id": None, "status": None, "unparsed": None,
                           "customer": None, "spam": False, "cursor": None, "limit": 50}
    for name in ("mailbox_id", "category_id", "cursor", "limit"):
        value = raw.get(name)
        if value in (None, ""):
            continue
        try:
            out[name] = int(value)
        except (TypeError, ValueError):
            errors[name] = f"must be a whole number, not {value!r}"
    if not 1 <= out["limit"] <= MAX_LIMIT:
        errors["limit"] = f"must be between 1 and {MAX_LIMIT}, not {out['limit']!r}"
    status = raw.get("status")
    if status not in (None, ""):
        if status not in STATUSES:
            errors["status"] = f"must be one of {', '.join(STATUSES)}, not {status!r}"
        out["status"] = status
    for name in ("unparsed", "spam"):
        flag = raw.get(name)
        if flag not in (None, ""):
            text = str(flag).strip().lower()
            if text not in form_values.TRUE + form_values.FALSE:
                errors[name] = f"must be true or false, not {flag!r}"
            out[name] = text in form_values.TRUE
    customer = raw.get("customer")
    if customer not in (None, ""):
        out["customer"] = str(customer).strip()
    unknown = set(raw) - set(FILTERS)
    errors.update({name: "is not a filter here" for name in sorted(unknown)})
    if errors:
        raise InvalidSetting(errors)
    return out


def page(conn: psycopg.Connection, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{"items": [...], "next_cursor": id or None}: one page of the list, `filters` as parse_filters makes them.

    Each item: id, subject, status, unparsed, mailbox_id, mailbox, category_id,
    category, customer, entries (history), failed_outgoing, created_at, updated_at.
    """
    f = parse_filters({}) if filters is None else filters
    rows = conn.execute(_LIST, {"m": f["mailbox_id"], "c": f["category_id"], "s": f["status"], "u": f["unparsed"],
                                "who": f["customer"], "spam": f.get("spam", False), "before": f["cursor"],
                                "l": f["limit"] + 1}).fetchall()
    more = len(rows) > f["limit"]
    items = rows[:f["limit"]]
    return {"items": items, "next_cursor": items[-1]["id"] if more and items else None}


def detail(conn: psycopg.Connection, request_id: int) -> dict[str, Any]:
    """A request with everyone on its conversation, its history and attachments, and its outgoing mail.

    people: every address on the conversation (From, To, Cc of its mail) but our own mailboxes;
    reply: whom a staff reply goes to by default ({"to", "cc"}: services/admin/replies.py).
    """
    request = conn.execute(
        "SELECT r.id, r.subject, r.status, r.unparsed, r.spam, r.spam_reason, r.mailbox_id,"
        " m.address AS mailbox, r.category_id,"
        " cat.name AS category, c.address AS customer, c.name AS customer_name, r.created_at, r.updated_at"
        " FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN categories cat ON cat.id = r.category_id"
        " LEFT JOIN mailboxes m ON m.id = r.mailbox_id WHERE r.id = %s", (request_id,)
    ).fetchone()
    if request is None:
        raise NotFound(f"no request {request_id}")
    request["people"] = [r["address"] for r in conn.execute(
        "SELECT address FROM request_people WHERE request_id = %s ORDER BY address", (request_id,))]
    history = conn.execute(
        "SELECT id, kind, outcome, message_id, from_address, from_name, subject, body_text,"
        " body_html IS NOT NULL AS has_html, automatic, author, raw_id, created_at"
        " FROM history WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
    attachments: dict[int, list[dict[str, Any]]] = {}
    for a in conn.execute(
        "SELECT a.history_id, a.id, a.filename, a.content_type, a.size, a.sha256, a.content_id, a.inline"
        " FROM attachments a JOIN history h ON h.id = a.history_id WHERE h.request_id = %s ORDER BY a.id",
        (request_id,),
    ):
        attachments.setdefault(a.pop("history_id"), []).append(a)
    for entry in history:
        entry["attachments"] = attachments.get(entry["id"], [])
    request["history"] = history
    request["outgoing"] = conn.execute(
        "SELECT id, kind, message_id, to_address, cc, agent_name, state, reason, attempts, created_at, sent_at"
        " FROM outgoing_mail WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
    request["reply"] = replies.defaults(conn, request_id)
    return request


def raw_message(conn: psycopg.Connection, request_id: int, raw_id: int | None = None) -> bytes:
    """The original bytes of the request's first (or the given) incoming mail."""
    row = conn.execute(
        "SELECT r.data FROM history h JOIN raw_messages r ON r.id = h.raw_id"
        " WHERE h.request_id = %s AND (%s::bigint IS NULL OR h.raw_id = %s) ORDER BY h.id LIMIT 1",
        (request_id, raw_id, raw_id)).fetchone()
    if row is None:
        raise NotFound(f"request {request_id} has no original message"
                       + (f" {raw_id}" if raw_id is not None else ""))
    return bytes(row["data"])


def attachment(conn: psycopg.Connection, request_id: int, attachment_id: int) -> dict[str, Any]:
    """{"filename", "content_type", "data"} of one of the request's attachments."""
    row = conn.execute(
        "SELECT a.filename, a.content_type, b.data FROM attachments a JOIN history h ON h.id = a.history_id"
        " JOIN blobs b ON b.sha256 = a.sha256 WHERE h.request_id = %s AND a.id = %s",
        (request_id, attachment_id)).fetchone()
    if row is None:
        raise NotFound(f"request {request_id} has no attachment {attachment_id}")
    return {"filename": row["filename"], "content_type": row["content_type"], "data": bytes(row["data"])}


def unmatched(conn: psycopg.Connection, include_seen: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """Automatic mail that belonged to no request, newest first (only what is not marked seen, by default)."""
    return conn.execute(
        "SELECT raw_id, mailbox_id, kind, reason, from_address, subject, original_message_id, recipient,"
        " status, created_at, seen_at FROM unmatched_mail WHERE %s OR seen_at IS NULL"
        " ORDER BY created_at DESC, raw_id DESC LIMIT %s",
        (include_seen, max(1, min(int(limit), 1000))),
    ).fetchall()


def mark_unmatched_seen(conn: psycopg.Connection, raw_ids: list[int]) -> int:
    """Mark unmatched mail handled; how many were marked."""
    return conn.execute("UPDATE unmatched_mail SET seen_at = now() WHERE raw_id = ANY(%s) AND seen_at IS NULL",
                        (raw_ids,)).rowcount
