"""Writing a parsed mail into a request: customer, request, history, attachments.

All of it runs inside the caller's transaction, together with marking the
remote message committed, so the fetcher archives it only once this is durable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import psycopg

from services.ticketer.conversation import find_request, thread_ids
from shared.parsed import Address, ParsedMessage


@dataclass(frozen=True)
class Outcome:
    request_id: int
    history_id: int
    created: bool
    automatic: str | None


def lock_keys(conn: psycopg.Connection, keys: list[str]) -> None:
    """Serialise mails of one conversation across ticketers (reply-before-parent race).

    Locks are taken in sorted order so two batches never deadlock.
    """
    for key in sorted(set(keys)):
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


def conversation_keys(parsed: ParsedMessage, raw_id: int) -> list[str]:
    keys = [f"raw:{raw_id}"]
    keys += [f"mid:{m}" for m in thread_ids(parsed)]
    if parsed.message_id:
        keys.append(f"mid:{parsed.message_id}")
    return keys


def existing_outcome(conn: psycopg.Connection, raw_id: int) -> Outcome | None:
    row = conn.execute(
        "SELECT id, request_id, outcome, automatic FROM history WHERE raw_id = %s", (raw_id,)
    ).fetchone()
    if row is None:
        return None
    return Outcome(row["request_id"], row["id"], row["outcome"] == "created", row["automatic"])


def upsert_customer(conn: psycopg.Connection, sender: Address) -> int:
    row = conn.execute(
        "INSERT INTO customers (address, name) VALUES (%s, %s)"
        " ON CONFLICT (lower(address)) DO UPDATE SET name ="
        " CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE customers.name END"
        " RETURNING id",
        (sender.address, sender.name),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def record_mail(
    conn: psycopg.Connection,
    *,
    raw_id: int,
    mailbox: dict,
    parsed: ParsedMessage,
    msgid_key: bytes,
) -> Outcome | None:
    """Create or update the request for one mail; None when the mail creates nothing (a bounce)."""
    match = None if parsed.unparsed else find_request(conn, parsed, msgid_key)
    if parsed.bounce is not None or parsed.automatic == "bounce":
        return _record_bounce(conn, raw_id, parsed, match.request_id if match else None)
    sender = parsed.from_ or Address("", "")
    if match is None:
        customer_id = upsert_customer(conn, sender) if sender.address else None
        row = conn.execute(
            "INSERT INTO requests (mailbox_id, category_id, customer_id, subject, unparsed)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (mailbox["id"], mailbox["category_id"], customer_id, parsed.subject[:1000],
             parsed.unparsed is not None),
        ).fetchone()
        assert row is not None
        request_id, created = int(row["id"]), True
    else:
        request_id, created = match.request_id, False
        if sender.address:
            upsert_customer(conn, sender)
        # A person's mail reopens; an out-of-office or similar is only recorded.
        reopen = parsed.automatic is None
        conn.execute(
            "UPDATE requests SET updated_at = now(),"
            " status = CASE WHEN %s THEN 'open' ELSE status END WHERE id = %s",
            (reopen, request_id),
        )
    history_id = _add_history(conn, request_id, raw_id, parsed, "created" if created else "updated")
    _add_people(conn, request_id, parsed)
    return Outcome(request_id, history_id, created, parsed.automatic)


def _add_history(conn: psycopg.Connection, request_id: int, raw_id: int, parsed: ParsedMessage,
                 outcome: str) -> int:
    sender = parsed.from_ or Address("", "")
    body = parsed.body_text
    if parsed.unparsed:
        body = f"[Deskmail could not parse this mail: {parsed.unparsed}. The original is attached.]\n\n{body}"
    row = conn.execute(
        "INSERT INTO history (request_id, kind, raw_id, outcome, message_id, from_address, from_name,"
        " subject, body_text, body_html, automatic, thread_ids)"
        " VALUES (%s, 'incoming', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (request_id, raw_id, outcome, parsed.message_id, sender.address, sender.name,
         parsed.subject, body, parsed.body_html, parsed.automatic, thread_ids(parsed)),
    ).fetchone()
    assert row is not None
    history_id = int(row["id"])
    rows = [(history_id, a.sha256, a.filename, a.content_type, a.size, a.content_id, a.inline)
            for a in parsed.attachments]
    if parsed.unparsed:
        rows.append(_attach_original(conn, history_id, raw_id))
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO attachments (history_id, sha256, filename, content_type, size, content_id, inline)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
    return history_id


def _attach_original(conn: psycopg.Connection, history_id: int, raw_id: int) -> tuple:
    """Invariant 6: the unparsed mail reaches a person with its original bytes attached."""
    row = conn.execute("SELECT data FROM raw_messages WHERE id = %s", (raw_id,)).fetchone()
    data = bytes(row["data"]) if row else b""
    digest = hashlib.sha256(data).hexdigest()
    conn.execute(
        "INSERT INTO blobs (sha256, size, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (digest, len(data), data),
    )
    return (history_id, digest, "original.eml", "message/rfc822", len(data), None, False)


def _add_people(conn: psycopg.Connection, request_id: int, parsed: ParsedMessage) -> None:
    people = {a.address.lower() for a in [*( [parsed.from_] if parsed.from_ else []), *parsed.cc]
              if a.address}
    if people:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO request_people (request_id, address) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(request_id, p) for p in sorted(people)],
            )


def _record_bounce(conn: psycopg.Connection, raw_id: int, parsed: ParsedMessage,
                   request_id: int | None) -> Outcome | None:
    """A bounce marks our outgoing mail failed and lands on its request; it never opens one."""
    original = parsed.bounce.original_message_id if parsed.bounce else None
    if original:
        row = conn.execute(
            "UPDATE outgoing_mail SET state = 'failed', reason = %s WHERE message_id = %s"
            " RETURNING request_id",
            (f"bounced: {parsed.bounce.status or ''} {parsed.bounce.recipient or ''}".strip()
             if parsed.bounce else "bounced", original),
        ).fetchone()
        if row is not None:
            request_id = row["request_id"]
    if request_id is None:
        return None
    history_id = _add_history(conn, request_id, raw_id, parsed, "updated")
    return Outcome(request_id, history_id, False, "bounce")
