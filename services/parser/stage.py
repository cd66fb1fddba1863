"""The parser stage: raw message in, parsed message and attachment blobs out.

Parsing never raises (services/parser/mime.py); a mail that cannot be
parsed is stored with `unparsed` set and still goes on to the ticketer,
which turns it into a flagged request with the original attached (invariant 6).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from services.parser.mime import parse_message
from shared.db import transaction
from shared.errors import Permanent
from shared.events import MAIL_PARSED, MAIL_RECEIVED, Event
from shared.mailboxes import own_addresses
from shared.worker import Output

OWN_ADDRESSES_TTL = 30.0


class ParserHandler:
    stage = "parse"

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._own: frozenset[str] = frozenset()
        self._own_at = 0.0

    def _own_addresses(self) -> frozenset[str]:
        if time.monotonic() - self._own_at > OWN_ADDRESSES_TTL:
            with self.pool.connection() as conn:
                self._own = own_addresses(conn)
            self._own_at = time.monotonic()
        return self._own

    def handle(self, events: Sequence[Event]) -> list[Output]:
        raw_ids = [e["raw_id"] for e in events if e.type == MAIL_RECEIVED]
        own = self._own_addresses()
        with transaction(self.pool) as conn:
            done = {
                r["raw_id"]
                for r in conn.execute("SELECT raw_id FROM parsed_messages WHERE raw_id = ANY(%s)", (raw_ids,))
            }
            todo = [r for r in raw_ids if r not in done]
            rows = conn.execute(
                "SELECT id, mailbox_id, data, truncated, size FROM raw_messages WHERE id = ANY(%s)", (todo,)
            ).fetchall() if todo else []
            if len(rows) != len(todo):
                missing = sorted(set(todo) - {r["id"] for r in rows})
                raise Permanent(f"raw messages {missing} do not exist")
            for row in rows:
                parsed = parse_message(bytes(row["data"]), own_addresses=own)
                if row["truncated"]:
                    parsed.defects.append(
                        f"message of {row['size']} bytes was over the mailbox's size limit;"
                        " only its headers were imported"
                    )
                    parsed.body_text = (
                        f"[This mail was {row['size']:,} bytes, over the mailbox's size limit."
                        " Only its headers were imported; the full mail is in the mail server's archive.]"
                    )
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO blobs (sha256, size, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        [(a.sha256, a.size, a.data) for a in parsed.attachments],
                    )
                conn.execute(
                    "INSERT INTO parsed_messages (raw_id, parsed) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (row["id"], Jsonb(_storable(parsed.to_json()))),
                )
        return [("ticket", Event(MAIL_PARSED, {"raw_id": e["raw_id"], "mailbox_id": e["mailbox_id"]}))
                for e in events if e.type == MAIL_RECEIVED]


def _storable(value: Any) -> Any:
    """`value` without U+0000, which PostgreSQL's jsonb and text cannot hold.

    A NUL byte in a header, a body or a file name (broken or hostile mail)
    would otherwise fail the INSERT every time and dead-letter the mail
    instead of making it a request (invariant 6). Nothing readable is lost.
    """
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value
