"""The core every Deskmail process shares: settings, logging, database, keys, broker.

`App.from_env()` reads the settings and sets up logging once per process;
the database pool, the keys and the broker topology are made when first
used. The stages, the admin web and the CLI all take what they need from an
App; running stages is services/runner.py's job. With AMQP_URL and
DATABASE_URL unset this is the embedded default (memory:// broker, an
embedded PostgreSQL), on the same code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import psycopg
from kombu import Connection
from psycopg_pool import ConnectionPool

from shared import db
from shared import log as logsetup
from shared.crypto import Keys, load_secret
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import connect


@dataclass
class App:
    settings: Settings

    @classmethod
    def from_env(cls) -> App:
        settings = Settings.from_env()
        logsetup.setup(settings.log_level)
        return cls(settings)

    @cached_property
    def database_url(self) -> str:
        return db.database_url(self.settings)

    @cached_property
    def pool(self) -> ConnectionPool:
        db.migrate(self.database_url)
        return db.make_pool(self.database_url, max_size=8)

    @cached_property
    def keys(self) -> Keys:
        return Keys(load_secret(self.settings))

    @cached_property
    def topology(self) -> Topology:
        return Topology(self.settings.queue_prefix, self.settings.retry_delay_ms)

    def broker(self) -> Connection:
        return connect(self.settings)

    def ready_checks(self) -> dict[str, Callable[[], None]]:
        def database() -> None:
            if "pool" in self.__dict__:
                with self.pool.connection(timeout=2) as conn:
                    conn.execute("SELECT 1")
            else:  # the stages are not built yet (database down at start): try directly
                with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")

        def broker() -> None:
            with self.broker() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)

        return {"database": database, "broker": broker}
