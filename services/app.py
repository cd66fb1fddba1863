"""Wiring: settings, logging, database, keys and topology, and running stages.

`deskmail <stage>` runs one stage in its own process; `deskmail run` runs all
of them as threads of one process (the embedded default: memory:// broker and
an embedded PostgreSQL when AMQP_URL and DATABASE_URL are unset). Same code
path either way.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import psycopg
from kombu import Connection
from psycopg_pool import ConnectionPool

from shared import db
from shared import log as logsetup
from shared.crypto import Keys, load_secret
from shared.health import HealthServer, Heartbeat
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import Worker, connect

log = logging.getLogger(__name__)

STAGES = ("fetcher", "parser", "ticketer", "replier")

# Within Kubernetes' default grace period (30 s) with room for the process to exit.
SHUTDOWN_SECONDS = 25.0


class Runnable(Protocol):
    heartbeat: Heartbeat

    def run(self) -> None: ...

    def stop(self) -> None: ...


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

    def stage(self, name: str) -> Runnable:
        if name == "fetcher":
            from services.fetcher.main import Fetcher

            return Fetcher(self.settings, self.pool, self.keys, self.topology)
        if name == "parser":
            from services.parser.stage import ParserHandler

            return Worker(self.settings, self.topology, ParserHandler(self.pool))
        if name == "ticketer":
            from services.ticketer.stage import TicketerHandler

            return Worker(self.settings, self.topology, TicketerHandler(self.pool, self.keys.message_id_key))
        if name == "replier":
            from services.replier.outbox import ReplierStage

            return ReplierStage(self.settings, self.pool, self.keys, self.topology)
        if name == "web":  # the admin web and API (services/web), served by uvicorn in a thread
            from services.web.server import WebServer

            return WebServer(self)
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")

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

    def _build(self, names: list[str], stop: threading.Event) -> list[Runnable]:
        """The stages, once the database answers; until then /readyz says why (no crash loop)."""
        while not stop.is_set():
            try:
                return [self.stage(n) for n in names]
            except psycopg.OperationalError as exc:
                log.warning("database unreachable; retrying in 5 s", extra={"error": str(exc)})
                stop.wait(5)
        return []

    def run(self, names: list[str], serve_http: bool = True) -> None:
        """Run stages until SIGTERM/SIGINT; each finishes what it holds before exiting.

        The health port (DESKMAIL_HTTP_PORT) comes up first, so /readyz can
        tell an orchestrator that the database or broker is missing. On a
        signal every stage stops taking work, finishes and acks what it holds;
        whatever is still unacked after SHUTDOWN_SECONDS goes back to the
        queue when the process exits (at-least-once, idempotent stages).
        """
        stop = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("stopping", extra={"signal": signal.Signals(signum).name})
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        heartbeats: list[Heartbeat] = []
        server = None
        if serve_http:
            server = HealthServer(self.settings.http_port, heartbeats, self.ready_checks()).start()
            log.info("serving /healthz, /readyz and /metrics", extra={"port": server.port})
        runnables = self._build(names, stop)
        heartbeats.extend(r.heartbeat for r in runnables)
        threads = [threading.Thread(target=r.run, name=n, daemon=True) for n, r in zip(names, runnables, strict=False)]
        for t in threads:
            t.start()
        if threads:
            log.info("started", extra={"stages": names, "embedded": self.settings.embedded})
        while not stop.is_set() and threads and all(t.is_alive() for t in threads):
            stop.wait(0.5)
        for r in runnables:
            r.stop()
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        unfinished = [t.name for t in threads if t.is_alive()]
        if unfinished:
            log.warning("stages did not finish in time; their unacked messages return to the queue",
                        extra={"stages": unfinished})
        if server is not None:
            server.stop()
        log.info("exited")
