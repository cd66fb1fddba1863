"""Helpers for the ticketer tests: a mailbox, small .eml mails, and feeding them in.

Mail reaches the ticketer the way the parser leaves it: a raw_messages row,
its blobs and a parsed_messages row (parse_message on the real bytes), and a
remote_messages row so the test can see the "committed" hand-off to the
fetcher. No tests live here.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services.parser.mime import parse_message
from shared.events import MAIL_PARSED, Event
from shared.parsed import ParsedMessage
from tests.support.mailstore import store_mail

SUPPORT = "support@acme.test"


def make_mailbox(conn: psycopg.Connection, address: str = SUPPORT, category: str = "Support") -> dict:
    cat = conn.execute(
        "INSERT INTO categories (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
        " RETURNING id", (category,)
    ).fetchone()
    row = conn.execute(
        "INSERT INTO mailboxes (from_name, address, host, username, account_type, category_id)"
        " VALUES ('Acme Support', %s, 'imap.acme.test', 'support', 'imap', %s) RETURNING id, category_id",
        (address, cat["id"]),
    ).fetchone()
    conn.commit()
    return dict(row)


def eml(message_id: str | None, sender: str = "Alice <alice@example.com>", subject: str = "Printer broken",
        body: str = "It does not print.", *, in_reply_to: str | None = None,
        references: list[str] | None = None, headers: dict[str, str] | None = None,
        cc: str | None = None) -> bytes:
    lines = [f"From: {sender}", f"To: Acme <{SUPPORT}>", f"Subject: {subject}",
             "Date: Tue, 9 Jan 2024 08:00:00 +0000"]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        lines.append("References: " + " ".join(f"<{r}>" for r in references))
    if cc:
        lines.append(f"Cc: {cc}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


def store(conn: psycopg.Connection, mailbox_id: int, raw: bytes,
          parsed: ParsedMessage | None = None) -> int:
    """Insert a mail as the fetcher and parser would; return its raw id (committed)."""
    parsed = parsed if parsed is not None else parse_message(raw, own_addresses=frozenset({SUPPORT}))
    raw_id = store_mail(conn, mailbox_id, raw)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO blobs (sha256, size, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [(a.sha256, a.size, a.data) for a in parsed.attachments],
        )
    conn.execute("INSERT INTO parsed_messages (raw_id, parsed) VALUES (%s, %s)",
                 (raw_id, Jsonb(parsed.to_json())))
    conn.commit()
    return raw_id


def parsed_event(raw_id: int, mailbox_id: int) -> Event:
    return Event(MAIL_PARSED, {"raw_id": raw_id, "mailbox_id": mailbox_id})


def one(conn: psycopg.Connection, sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args).fetchone()
    conn.commit()
    return None if row is None else next(iter(row.values()))
