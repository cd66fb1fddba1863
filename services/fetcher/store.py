"""The fetcher's database side: raw messages and the remote-message ledger.

Every function commits its own transaction. `store_batch` is the commit
point of invariant 1: raw bytes and the remote id are committed together,
before any event about them is published.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from services.fetcher.remote import Fetched
from shared.db import transaction


def known_ids(pool: ConnectionPool, mailbox_id: int, folder: str, uidvalidity: int) -> set[str]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT remote_id FROM remote_messages"
            " WHERE mailbox_id = %s AND folder = %s AND uidvalidity = %s",
            (mailbox_id, folder, uidvalidity),
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
    new_raw_ids: list[int] = []
    with transaction(pool) as conn:
        for item in batch:
            digest = hashlib.sha256(item.data).hexdigest()
            moved = conn.execute(
                "UPDATE remote_messages rm SET uidvalidity = %s, remote_id = %s, updated_at = now()"
                " FROM raw_messages r WHERE rm.raw_id = r.id AND r.mailbox_id = %s AND r.sha256 = %s"
                " AND rm.folder = %s AND rm.uidvalidity <> %s AND rm.state <> 'archived'"
                " RETURNING rm.raw_id, rm.state",
                (uidvalidity, item.remote_id, mailbox_id, digest, folder, uidvalidity),
            ).fetchone()
            if moved is not None:
                if moved["state"] == "stored":
                    new_raw_ids.append(moved["raw_id"])
                continue
            raw = conn.execute(
                "INSERT INTO raw_messages (mailbox_id, data, size, sha256, truncated)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (mailbox_id, item.data, item.size, digest, item.truncated),
            ).fetchone()
            assert raw is not None
            inserted = conn.execute(
                "INSERT INTO remote_messages (mailbox_id, folder, uidvalidity, remote_id, raw_id)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING raw_id",
                (mailbox_id, folder, uidvalidity, item.remote_id, raw["id"]),
            ).fetchone()
            if inserted is None:
                # Another fetcher got here first (its lease expired mid-poll); keep its row.
                conn.execute("DELETE FROM raw_messages WHERE id = %s", (raw["id"],))
                continue
            new_raw_ids.append(raw["id"])
    return new_raw_ids


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


def committed(pool: ConnectionPool, mailbox_id: int, folder: str, uidvalidity: int) -> list[tuple[str, int]]:
    """(remote id, raw id) of messages whose request is committed: ready to archive."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT remote_id, raw_id FROM remote_messages WHERE mailbox_id = %s AND folder = %s"
            " AND uidvalidity = %s AND state = 'committed' ORDER BY raw_id",
            (mailbox_id, folder, uidvalidity),
        )
        return [(r["remote_id"], r["raw_id"]) for r in rows]
