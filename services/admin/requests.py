"""Reading requests for people: a filtered, cursor-paginated list and one request in full.

The list pages by id (newest first): the cursor is the last id seen, so a
page costs the same at request 10 and at request 10,000, and new mail
arriving while someone pages does not shift what they see.
"""

from __future__ import annotations

from typing import Any

import psycopg

from services.admin.errors import NotFound
from shared.mailboxes import InvalidSetting

STATUSES = ("open", "closed")
MAX_LIMIT = 200

_LIST = """
SELECT r.id, r.subject, r.status, r.unparsed, r.mailbox_id, r.category_id, r.created_at, r.updated_at,
       c.address AS customer, cat.name AS category, m.address AS mailbox,
       (SELECT count(*) FROM history h WHERE h.request_id = r.id) AS entries
FROM requests r
LEFT JOIN customers c ON c.id = r.customer_id
LEFT JOIN categories cat ON cat.id = r.category_id
LEFT JOIN mailboxes m ON m.id = r.mailbox_id
WHERE (%(m)s::bigint IS NULL OR r.mailbox_id = %(m)s)
  AND (%(c)s::bigint IS NULL OR r.category_id = %(c)s)
  AND (%(s)s::text IS NULL OR r.status = %(s)s)
  AND (%(u)s::boolean IS NULL OR r.unparsed = %(u)s)
  AND (%(before)s::bigint IS NULL OR r.id < %(before)s)
ORDER BY r.id DESC LIMIT %(l)s
"""


def parse_filters(raw: dict[str, Any]) -> dict[str, Any]:
    """Typed filters from query strings or arguments; InvalidSetting names a bad one."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {"mailbox_id": None, "category_id": None, "status": None, "unparsed": None,
                           "cursor": None, "limit": 50}
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
    unparsed = raw.get("unparsed")
    if unparsed not in (None, ""):
        text = str(unparsed).lower()
        if text not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
            errors["unparsed"] = f"must be true or false, not {unparsed!r}"
        out["unparsed"] = text in ("true", "1", "on", "yes")
    if errors:
        raise InvalidSetting(errors)
    return out


def page(conn: psycopg.Connection, *, mailbox_id: int | None = None, category_id: int | None = None,
         status: str | None = None, unparsed: bool | None = None, cursor: int | None = None,
         limit: int = 50) -> dict[str, Any]:
    """{"items": [...], "next_cursor": id or None} for one page of the filtered list."""
    rows = conn.execute(_LIST, {"m": mailbox_id, "c": category_id, "s": status, "u": unparsed,
                                "before": cursor, "l": limit + 1}).fetchall()
    more = len(rows) > limit
    items = rows[:limit]
    return {"items": items, "next_cursor": items[-1]["id"] if more and items else None}


def detail(conn: psycopg.Connection, request_id: int) -> dict[str, Any]:
    """A request with its conversation, attachments and outgoing mail (with why)."""
    request = conn.execute(
        "SELECT r.*, c.address AS customer, c.name AS customer_name, cat.name AS category,"
        " m.address AS mailbox FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN categories cat ON cat.id = r.category_id"
        " LEFT JOIN mailboxes m ON m.id = r.mailbox_id WHERE r.id = %s", (request_id,)
    ).fetchone()
    if request is None:
        raise NotFound(f"no request {request_id}")
    history = conn.execute(
        "SELECT id, kind, outcome, message_id, from_address, from_name, subject, body_text, automatic,"
        " author, raw_id, created_at FROM history WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
    attachments = conn.execute(
        "SELECT a.history_id, a.id, a.filename, a.content_type, a.size, a.sha256, a.content_id, a.inline"
        " FROM attachments a JOIN history h ON h.id = a.history_id WHERE h.request_id = %s ORDER BY a.id",
        (request_id,)).fetchall()
    for entry in history:
        entry["attachments"] = [{k: v for k, v in a.items() if k != "history_id"}
                                for a in attachments if a["history_id"] == entry["id"]]
    request["history"] = history
    request["outgoing"] = conn.execute(
        "SELECT id, kind, message_id, to_address, agent_name, state, reason, attempts, created_at, sent_at"
        " FROM outgoing_mail WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
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
    row = conn.execute(
        "SELECT a.filename, a.content_type, b.data FROM attachments a JOIN history h ON h.id = a.history_id"
        " JOIN blobs b ON b.sha256 = a.sha256 WHERE h.request_id = %s AND a.id = %s",
        (request_id, attachment_id)).fetchone()
    if row is None:
        raise NotFound(f"request {request_id} has no attachment {attachment_id}")
    return {"filename": row["filename"], "content_type": row["content_type"], "data": bytes(row["data"])}
