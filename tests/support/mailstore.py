"""Store a mail the way the fetcher does, for tests that start further down the pipeline.

`store_mail` calls the fetcher's own `store_batch` (raw bytes and the remote
ledger row committed together, sha256 and size as the fetcher computes them),
then moves the ledger row to the state the test starts from. One place, so a
change to what the fetcher writes reaches every test that fakes its work.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from services.fetcher import store
from shared.mailserver.remote import Fetched

STATES = ("stored", "published", "committed", "archived")  # the ledger's states, in order
_remote_ids = itertools.count(1)


class _OneConnection:
    """A connection in the shape of a pool: store_batch's transaction becomes part of the caller's."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        yield self.conn


def store_mail(db: ConnectionPool | psycopg.Connection, mailbox_id: int, raw: bytes, *,
               state: str = "published", raw_id: int | None = None, remote_id: str | None = None,
               folder: str = "INBOX", uidvalidity: int = 1, received_ago: float | None = None) -> int:
    """Store `raw` for `mailbox_id` as the fetcher does; return its raw id.

    state         the ledger row's state: 'published' (its mail.received event
                  went out; the default), 'stored', 'committed' or 'archived'
    raw_id        the id the row must get (a test whose events name the mail
                  before it is stored); the id sequence is set so the
                  fetcher's own insert takes it
    remote_id     the server's id of the mail; a fresh one by default
    received_ago  seconds since it was stored (backlog ages)

    With a connection rather than a pool, the rows join the caller's
    transaction: the caller commits.
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, not {state!r}")
    pool = _OneConnection(db) if isinstance(db, psycopg.Connection) else db
    with pool.connection() as conn:
        if raw_id is not None:
            conn.execute("SELECT setval(pg_get_serial_sequence('raw_messages', 'id'), %s, false)", (raw_id,))
    remote_id = remote_id or f"test-{next(_remote_ids)}"
    stored = store.store_batch(pool, mailbox_id, folder, uidvalidity,  # type: ignore[arg-type]
                               [Fetched(remote_id, raw, len(raw))])
    assert len(stored) == 1, f"remote id {remote_id!r} is already in mailbox {mailbox_id}'s ledger"
    [new_id] = stored
    assert raw_id is None or new_id == raw_id, (new_id, raw_id)
    with pool.connection() as conn:
        if state != "stored":
            conn.execute("UPDATE remote_messages SET state = %s WHERE raw_id = %s", (state, new_id))
        if received_ago is not None:
            conn.execute("UPDATE raw_messages SET received_at = now() - make_interval(secs => %s) WHERE id = %s",
                         (received_ago, new_id))
    return new_id
