"""Database access: the connection pool, the embedded server and migrations.

Migrations are plain numbered SQL files in shared/migrations, applied in
order, each in its own transaction, and recorded in `schema_migrations`. An
advisory lock makes concurrent starts (several stages at once) safe.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from shared.settings import Settings

log = logging.getLogger(__name__)

MIGRATION_LOCK = 72_616_001  # arbitrary constant for pg_advisory_lock


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under data_dir and return its URL."""
    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver  # imported here: production never needs it

    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def database_url(settings: Settings) -> str:
    return settings.database_url or embedded_url(settings.data_dir)


LOCK_TIMEOUT = "30s"


def _configure(conn: psycopg.Connection) -> None:
    """A forgotten session holding a row lock must not stall a stage for ever.

    Waiting for a lock gives up after LOCK_TIMEOUT: a transient error, retried
    and in the end dead-lettered for that one mail. An operator's own
    lock_timeout on the database or role wins.
    """
    conn.execute(
        "SELECT set_config('lock_timeout', %s, false) WHERE current_setting('lock_timeout') = '0'",
        (LOCK_TIMEOUT,),
    )
    conn.commit()


def make_pool(url: str, *, min_size: int = 1, max_size: int = 4, name: str = "deskmail") -> ConnectionPool:
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": False},
        name=name,
        open=False,
        # A connection broken by a database restart is found and replaced
        # before use instead of failing the first query after the restart.
        check=ConnectionPool.check_connection,
        configure=_configure,
    )
    pool.open(wait=True, timeout=30)
    return pool


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A connection inside one transaction: committed on success, rolled back on error."""
    with pool.connection() as conn, conn.transaction():
        yield conn


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("shared.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def migrate(url: str) -> list[str]:
    """Apply pending migrations; return the names applied."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in _migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                log.info("migration applied", extra={"migration": name})
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied
