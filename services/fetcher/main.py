"""The fetcher stage: take a due mailbox under its lease, poll it, record the outcome."""

from __future__ import annotations

import logging
import os
import socket
import threading

from psycopg_pool import ConnectionPool

from services.fetcher import lease
from services.fetcher.poll import Poller
from services.fetcher.remote import RemoteError
from shared import metrics
from shared.crypto import Keys
from shared.health import Heartbeat
from shared.log import bind
from shared.mailboxes import Mailbox
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import connect

log = logging.getLogger(__name__)


class Fetcher:
    stage = "fetch"

    def __init__(self, settings: Settings, pool: ConnectionPool, keys: Keys, topology: Topology) -> None:
        self.settings = settings
        self.pool = pool
        self.keys = keys
        self.topology = topology
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.heartbeat = Heartbeat("fetcher", max_age=lease.LEASE_SECONDS)
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        with connect(self.settings) as conn:
            conn.ensure_connection(max_retries=10)
            self.topology.declare(conn)
            publisher = Publisher(conn)
            while not self.stopping.is_set():
                self.heartbeat.beat()
                try:
                    row = lease.acquire(self.pool, self.owner)
                except Exception as exc:  # noqa: BLE001 - database down: wait and retry
                    log.warning("cannot take a mailbox lease", extra={"error": repr(exc)})
                    self.stopping.wait(5)
                    continue
                if row is None:
                    self.stopping.wait(0.5)
                    continue
                with bind(mailbox_id=row["id"]):
                    self.poll_one(row, publisher)
        log.info("stopped")

    def poll_one(self, row: dict, publisher: Publisher) -> None:
        mailbox_id = row["id"]
        label = str(mailbox_id)
        error: str | None = None
        try:
            mailbox = Mailbox.from_row(row, self.keys)
            poller = Poller(self.pool, publisher, self.topology,
                            keep_lease=lambda: lease.renew(self.pool, mailbox_id, self.owner))
            result = poller.poll(mailbox)
            log.info("poll finished", extra={"fetched": result.fetched, "removed": result.removed,
                                             "republished": result.republished})
            metrics.MAILBOX_LAST_SUCCESS.labels(label).set_to_current_time()
        except RemoteError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one mailbox must not stop the others
            error = f"unexpected: {exc!r}"
            log.exception("poll crashed")
            publisher.reset()
        if error is not None:
            metrics.MAILBOX_ERRORS.labels(label).inc()
            log.warning("poll failed", extra={"error": error})
        try:
            lease.release(self.pool, mailbox_id, self.owner, error)
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            log.warning("cannot release lease", extra={"error": repr(exc)})
