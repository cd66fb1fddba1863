"""The parser stage: raw message in, parsed message and attachment blobs out.

Parsing never raises (services/parser/mime.py); a mail that cannot be
parsed is stored with `unparsed` set and still goes on to the ticketer,
which turns it into a flagged request with the original attached (invariant 6).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from services.parser.mime import parse_message
from services.parser.verdicts import SpamStep, store
from shared.db import transaction
from shared.errors import Permanent
from shared.events import MAIL_PARSED, MAIL_RECEIVED, Event
from shared.mailboxes import own_addresses
from shared.settings import Settings
from shared.worker import Output

OWN_ADDRESSES_TTL = 30.0
# Raw mail held in memory at once; a batch is fetched and parsed in chunks of
# about this size, so a batch of large mails stays within a stage's memory.
CHUNK_BYTES = 8 * 1024 * 1024
PIECE_BYTES = 4 * 1024 * 1024  # a mail bigger than this is read in pieces of this size


class ParserHandler:
    stage = "parse"

    def __init__(self, pool: ConnectionPool, settings: Settings | None = None) -> None:
        self.pool = pool
        self.spam = SpamStep(settings or Settings())  # verdicts.py: rspamd, upstream headers
        self._own: frozenset[str] = frozenset()
        self._own_at = 0.0

    def _own_addresses(self) -> frozenset[str]:
        if time.monotonic() - self._own_at > OWN_ADDRESSES_TTL:
            with self.pool.connection() as conn:
                self._own = own_addresses(conn)
            self._own_at = time.monotonic()
        return self._own

    def handle(self, events: Sequence[Event]) -> list[Output]:
        raw_ids = list(dict.fromkeys(e["raw_id"] for e in events if e.type == MAIL_RECEIVED))
        own = self._own_addresses()
        with transaction(self.pool) as conn:
            # Which exist and which are parsed already (a redelivery): one round trip.
            meta = conn.execute(
                "SELECT r.id, r.size, r.truncated, p.raw_id IS NOT NULL AS done FROM raw_messages r"
                " LEFT JOIN parsed_messages p ON p.raw_id = r.id WHERE r.id = ANY(%s)", (raw_ids,)
            ).fetchall() if raw_ids else []
            if len(meta) != len(raw_ids):
                missing = sorted(set(raw_ids) - {r["id"] for r in meta})
                raise Permanent(f"raw messages {missing} do not exist")
            for chunk in _by_size([r for r in meta if not r["done"]], CHUNK_BYTES):
                self._parse_chunk(conn, chunk, own)
        return [("ticket", Event(MAIL_PARSED, {"raw_id": e["raw_id"], "mailbox_id": e["mailbox_id"]}))
                for e in events if e.type == MAIL_RECEIVED]

    def _parse_chunk(self, conn: Connection, chunk: list[dict], own: frozenset[str]) -> None:
        info = {r["id"]: r for r in chunk}
        # Binary: bytea as bytes, not hex text of twice the size. The cursor is
        # closed before parsing, so libpq's copy of the result is freed first.
        if len(chunk) == 1 and chunk[0]["size"] > PIECE_BYTES:
            rows = [(chunk[0]["id"], _fetch_in_pieces(conn, chunk[0]["id"]))]
        else:
            with conn.cursor(binary=True, row_factory=tuple_row) as cur:
                rows = cur.execute("SELECT id, data FROM raw_messages WHERE id = ANY(%s)",
                                   (list(info),)).fetchall()
        blobs: dict[str, tuple[str, int, bytes]] = {}
        parsed_rows = []
        verdicts = self.spam.batch(conn, list(info))
        while rows:
            raw_id, data = rows.pop()  # each raw mail is freed once parsed (and sent to rspamd)
            row = info[raw_id]
            parsed = parse_message(data, own_addresses=own)
            verdicts.add(raw_id, data, parsed)
            del data
            if row["truncated"]:
                parsed.defects.append(
                    f"message of {row['size']} bytes was over the mailbox's size limit;"
                    " only its headers were imported"
                )
                parsed.body_text = (
                    f"[This mail was {row['size']:,} bytes, over the mailbox's size limit."
                    " Only its headers were imported; the full mail is in the mail server's archive.]"
                )
            for a in parsed.attachments:
                blobs.setdefault(a.sha256, (a.sha256, a.size, a.data))
            parsed_rows.append((raw_id, Jsonb(_storable(parsed.to_json()))))
        # Sorted: concurrent parsers insert the same blob keys in the same order (no deadlock).
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO blobs (sha256, size, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [blobs[k] for k in sorted(blobs)],
            )
            cur.executemany(
                "INSERT INTO parsed_messages (raw_id, parsed) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                sorted(parsed_rows, key=lambda r: r[0]),
            )
        store(conn, verdicts.rows())


def _fetch_in_pieces(conn: Connection, raw_id: int) -> bytes:
    """One big raw mail, read PIECE_BYTES at a time.

    libpq reads a whole row into its input buffer, which grows by doubling
    and stays that big for the life of the connection: a 34 MB mail read in
    one piece would pin 64 MB in this process for good.
    """
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        row = cur.execute("SELECT octet_length(data) FROM raw_messages WHERE id = %s", (raw_id,)).fetchone()
        length = int(row[0]) if row else 0
        pieces = []
        for start in range(1, length + 1, PIECE_BYTES):
            piece = cur.execute("SELECT substring(data FROM %s FOR %s) FROM raw_messages WHERE id = %s",
                                (start, PIECE_BYTES, raw_id)).fetchone()
            pieces.append(piece[0] if piece else b"")
    return b"".join(pieces)


def _by_size(rows: list[dict], limit: int) -> list[list[dict]]:
    """Rows in chunks of at most `limit` bytes of raw mail (a bigger mail is a chunk alone)."""
    chunks: list[list[dict]] = []
    current: list[dict] = []
    size = 0
    for row in rows:
        if current and size + row["size"] > limit:
            chunks.append(current)
            current, size = [], 0
        current.append(row)
        size += row["size"]
    if current:
        chunks.append(current)
    return chunks


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
