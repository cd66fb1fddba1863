"""Which request a mail belongs to: the threading rules, in order.

1. An id in In-Reply-To or References that belongs to a request's mail:
   Deskmail's own signed Message-IDs (tamper-evident, shared/msgid.py), any
   incoming or outgoing mail in a request's history, or a mail that already
   replied to this one (the reply arrived first).
2. The request tag in the subject, but only from the request's customer or
   someone already on its conversation: guessing a number must not let a
   stranger write into another customer's request.
3. Otherwise: a new request.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from shared.msgid import request_id_from_message_id
from shared.parsed import ParsedMessage
from shared.tags import tag_pattern


@dataclass(frozen=True)
class Match:
    request_id: int
    rule: str  # "message-id", "reply-first", "subject-tag"


def thread_ids(parsed: ParsedMessage) -> list[str]:
    """In-Reply-To first, then References newest first: the likeliest parent first."""
    seen: dict[str, None] = {}
    for mid in [*parsed.in_reply_to, *reversed(parsed.references)]:
        if mid:
            seen.setdefault(mid, None)
    return list(seen)


def find_request(conn: psycopg.Connection, parsed: ParsedMessage, msgid_key: bytes) -> Match | None:
    ids = thread_ids(parsed)
    for mid in ids:
        request_id = request_id_from_message_id(mid, msgid_key)
        if request_id is not None and _exists(conn, request_id):
            return Match(request_id, "message-id")
    if ids:
        row = conn.execute(
            "SELECT request_id FROM history WHERE message_id = ANY(%s)"
            " UNION ALL SELECT request_id FROM outgoing_mail WHERE message_id = ANY(%s)"
            " LIMIT 1",
            (ids, ids),
        ).fetchone()
        if row is not None:
            return Match(row["request_id"], "message-id")
    if parsed.message_id:
        row = conn.execute(
            "SELECT request_id FROM history WHERE thread_ids @> ARRAY[%s]::text[] ORDER BY id LIMIT 1",
            (parsed.message_id,),
        ).fetchone()
        if row is not None:
            return Match(row["request_id"], "reply-first")
    sender = parsed.from_.address.lower() if parsed.from_ else ""
    for number in tag_pattern().findall(parsed.subject):
        request_id = int(number)
        if sender and _on_conversation(conn, request_id, sender):
            return Match(request_id, "subject-tag")
    return None


def _exists(conn: psycopg.Connection, request_id: int) -> bool:
    return conn.execute("SELECT 1 FROM requests WHERE id = %s", (request_id,)).fetchone() is not None


def _on_conversation(conn: psycopg.Connection, request_id: int, sender: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM requests r JOIN customers c ON c.id = r.customer_id"
        " WHERE r.id = %(r)s AND lower(c.address) = %(s)s"
        " UNION ALL SELECT 1 FROM request_people WHERE request_id = %(r)s AND address = %(s)s"
        " LIMIT 1",
        {"r": request_id, "s": sender},
    ).fetchone()
    return row is not None
