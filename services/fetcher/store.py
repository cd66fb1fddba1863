"""The fetcher's database side: raw messages and the remote-message ledger.

Every function commits its own transaction. `store_batch` is the commit
point of invariant 1: raw bytes and the remote id are committed together,
before any event about them is published.

Speed: a batch is written with one binary COPY of the raw bytes and one
INSERT ... SELECT unnest(...) of the ledger rows, in a single transaction;
row-by-row INSERTs cost three round trips per message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg
from psycopg_pool import ConnectionPool

from shared.db import transaction
from shared.mailserver.remote import Fetched


def known_ids(pool: ConnectionPool, mailbox_id: int, folder: str, uidvalidity: int,
              candidates: Sequence[str]) -> set[str]:
    """Which of `candidates` (the ids now on the server) the ledger already holds.

    Asking about the listed ids only keeps this bounded by the mailbox's
    content, not by everything ever imported from it.
    """
    if not candidates:
        return set()
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT remote_id FROM remote_messages"
            " WHERE mailbox_id = %s AND folder = %s AND uidvalidity = %s AND remote_id = ANY(%s)",
            (mailbox_id, folder, uidvalidity, list(candidates)),
        )
        return {r["remote_id"] for r in rows}


def store_batch(
    pool: ConnectionPool, mailbox_id: int, folder: str, uidvalidity: int, batch: Sequence[Fetched]
) -> list[int]:
    """Store new messages; return the raw ids that need a mail.received event.

    A message whose bytes this mailbox already holds under another
    UIDVALIDITY (the server renumbered the folder) is re-keyed, not imported
    again; it needs an event only if its old one was never confirmed.
    """
    if not batch:
        return []
    digests = [hashlib.sha256(item.data).hexdigest() for item in batch]
    with transaction(pool) as conn:
        need_events: list[int] = []
        todo = list(zip(batch, digests, strict=True))
        if _renumbered(conn, mailbox_id, folder, uidvalidity):
            todo = [(item, digest) for item, digest in todo
                    if not _rekey(conn, mailbox_id, folder, uidvalidity, item, digest, need_events)]
        if todo:
            need_events.extend(_insert(conn, mailbox_id, folder, uidvalidity, todo))
    return need_events


def _renumbered(conn: psycopg.Connection, mailbox_id: int, folder: str, uidvalidity: int) -> bool:
    """Does the ledger hold live rows of this folder under another UIDVALIDITY?"""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM remote_messages WHERE mailbox_id = %s AND folder = %s"
        " AND uidvalidity <> %s AND state <> 'archived') AS found",
        (mailbox_id, folder, uidvalidity),
    ).fetchone()
    return bool(row and row["found"])


def _rekey(conn: psycopg.Connection, mailbox_id: int, folder: str, uidvalidity: int,
           item: Fetched, digest: str, need_events: list[int]) -> bool:
    # One old row per message: two identical copies in the folder take two old rows.
    moved = conn.execute(
        "UPDATE remote_messages SET uidvalidity = %(v)s, remote_id = %(rid)s, updated_at = now()"
        " WHERE raw_id = (SELECT rm.raw_id FROM remote_messages rm JOIN raw_messages r ON r.id = rm.raw_id"
        "   WHERE rm.mailbox_id = %(m)s AND rm.folder = %(f)s AND rm.uidvalidity <> %(v)s"
        "   AND rm.state <> 'archived' AND r.sha256 = %(d)s ORDER BY rm.raw_id LIMIT 1 FOR UPDATE OF rm)"
        " RETURNING raw_id, state",
        {"v": uidvalidity, "rid": item.remote_id, "m": mailbox_id, "f": folder, "d": digest},
    ).fetchone()
    if moved is None:
        return False
    if moved["state"] == "stored":
        need_events.append(moved["raw_id"])
    return True


def _insert(conn: psycopg.Connection, mailbox_id: int, folder: str, uidvalidity: int,
            todo: list[tuple[Fetched, str]]) -> list[int]:
    ids = [r["id"] for r in conn.execute(
        "SELECT nextval(pg_get_serial_sequence('raw_messages', 'id')) AS id FROM generate_series(1, %s)",
        (len(todo),),
    )]
    with conn.cursor() as cur:
        with cur.copy("COPY raw_messages (id, mailbox_id, data, size, sha256, truncated)"
                      " FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int8", "bytea", "int4", "text", "bool"])
            for raw_id, (item, digest) in zip(ids, todo, strict=True):
                copy.write_row((raw_id, mailbox_id, item.data, item.size, digest, item.truncated))
        inserted = {r["raw_id"] for r in cur.execute(
            "INSERT INTO remote_messages (mailbox_id, folder, uidvalidity, remote_id, raw_id)"
            " SELECT %s, %s, %s, unnest(%s::text[]), unnest(%s::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING raw_id",
            (mailbox_id, folder, uidvalidity, [item.remote_id for item, _ in todo], ids),
        )}
        lost = [i for i in ids if i not in inserted]
        if lost:
            # Another fetcher stored these first (this one's lease ran out mid-poll): keep its rows.
            cur.execute("DELETE FROM raw_messages WHERE id = ANY(%s)", (lost,))
    return [i for i in ids if i in inserted]


def unpublished(pool: ConnectionPool, mailbox_id: int) -> list[int]:
    """Raw ids stored but whose event was never confirmed (a crash in between)."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT raw_id FROM remote_messages WHERE mailbox_id = %s AND state = 'stored' ORDER BY raw_id",
            (mailbox_id,),
        )
        return [r["raw_id"] for r in rows]


def mark(pool: ConnectionPool, raw_ids: Sequence[int], state: str, only_from: str) -> None:
    with transaction(pool) as conn:
        conn.execute(
            "UPDATE remote_messages SET state = %s, updated_at = now()"
            " WHERE raw_id = ANY(%s) AND state = %s",
            (state, list(raw_ids), only_from),
        )


def committed(pool: ConnectionPool, mailbox_id: int, folder: str, uidvalidity: int
              ) -> list[tuple[str, int, bool]]:
    """(remote id, raw id, truncated) of messages whose request is committed: ready to remove."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT rm.remote_id, rm.raw_id, r.truncated FROM remote_messages rm"
            " JOIN raw_messages r ON r.id = rm.raw_id WHERE rm.mailbox_id = %s AND rm.folder = %s"
            " AND rm.uidvalidity = %s AND rm.state = 'committed' ORDER BY rm.raw_id",
            (mailbox_id, folder, uidvalidity),
        )
        return [(r["remote_id"], r["raw_id"], r["truncated"]) for r in rows]
