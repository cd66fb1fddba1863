"""The fetcher stage: threads that each take a due mailbox under its lease and serve it.

Each thread has its own broker connection (kombu connections are not
thread-safe) and serves one mailbox at a time (session.py). Many fetcher
processes share the mailboxes through the leases in the database (lease.py).
`deskmail fetcher` runs it (registered below for services/runner.py).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading

from psycopg_pool import ConnectionPool

from services.app import App
from services.fetcher import lease
from services.fetcher.poll import Poller
from services.fetcher.session import Session
from services.stages import register
from shared.crypto import Keys
from shared.health import Heartbeat
from shared.log import bind
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import connect

log = logging.getLogger(__name__)


class Fetcher:
    stage = "fetch"

    def __init__(self, settings: Settings, pool: ConnectionPool, keys: Keys, topology: Topology,
                 threads: int | None = None, lease_seconds: float | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.keys = keys
        self.topology = topology
        self.threads = max(1, threads or settings.fetch_threads)
        self.lease_seconds = lease_seconds or settings.fetch_lease_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat = Heartbeat("fetcher", max_age=self.lease_seconds)
        self.stopping = threading.Event()
        # One thread always stays free to poll the mailboxes nobody idles on.
        self.idle_slots = threading.Semaphore(self.threads - 1)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        workers = [threading.Thread(target=self._work, args=(i,), name=f"fetcher-{i}", daemon=True)
                   for i in range(self.threads)]
        for worker in workers:
            worker.start()
        log.info("started", extra={"threads": self.threads, "lease_seconds": self.lease_seconds})
        for worker in workers:
            worker.join()
        log.info("stopped")

    def _work(self, index: int) -> None:
        owner = f"{self.name}:{index}"
        with connect(self.settings) as conn:
            conn.ensure_connection(max_retries=10)
            self.topology.declare(conn)
            publisher = Publisher(conn)
            session = Session(self.pool, self.keys, owner, self.lease_seconds,
                              lambda keep: Poller(self.pool, publisher, self.topology, keep),
                              self.idle_slots, self.stopping, self.heartbeat.beat)
            while not self.stopping.is_set():
                self.heartbeat.beat()
                row = self._next(owner)
                if row is None:
                    self.stopping.wait(0.3 + random.random() * 0.4)  # jitter: fetchers don't poll in step
                    continue
                with bind(mailbox_id=row["id"], fetcher=owner):
                    try:
                        session.serve(row)
                    except Exception:  # noqa: BLE001 - logged and recorded by the session
                        publisher.reset()

    def _next(self, owner: str) -> dict | None:
        try:
            return lease.acquire(self.pool, owner, seconds=self.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - database down: wait and retry
            log.warning("cannot take a mailbox lease", extra={"error": repr(exc)})
            self.stopping.wait(5)
            return None


@register("fetcher")
def build(app: App) -> Fetcher:
    return Fetcher(app.settings, app.pool, app.keys, app.topology)
