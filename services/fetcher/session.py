"""One fetcher thread's work on one leased mailbox.

    open the connection -> poll
    while the server offers IDLE, an idle slot is free and the lease holds:
        wait for new mail (IDLE), renewing the lease -> poll
    record the outcome, close, give the lease back

IDLE keeps one connection open per mailbox, so a fetcher idles on at most
`idle_slots` mailboxes (one fewer than its threads: one thread always polls
the rest). While idling it polls on new mail at once (EXISTS) and otherwise
every poll interval, which is also when committed mail gets archived; the
IDLE command itself is restarted at least every 25 minutes (RFC 2177 allows
servers to drop an IDLE after 30).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from services.fetcher import lease
from services.fetcher.poll import Poller, PollResult
from shared import metrics
from shared.crypto import Keys
from shared.mailboxes import Mailbox
from shared.mailserver.connect import open_remote
from shared.mailserver.remote import Remote, RemoteError, can_idle
from shared.oauth2 import login as oauth_login

log = logging.getLogger(__name__)

IDLE_RESTART = 25 * 60  # seconds


class Session:
    def __init__(self, pool: Any, keys: Keys, owner: str, lease_seconds: float,
                 make_poller: Callable[[Callable[[], bool]], Poller],
                 idle_slots: threading.Semaphore, stopping: threading.Event,
                 beat: Callable[[], None]) -> None:
        self.pool = pool
        self.keys = keys
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.make_poller = make_poller
        self.idle_slots = idle_slots
        self.stopping = stopping
        self.beat = beat

    def _renew(self, mailbox_id: int) -> bool:
        # A long import is progress: it keeps /healthz alive as well as the lease.
        self.beat()
        return lease.renew(self.pool, mailbox_id, self.owner, self.lease_seconds)

    def serve(self, row: dict[str, Any]) -> None:
        mailbox_id = int(row["id"])
        label = str(mailbox_id)
        poller = self.make_poller(lambda: self._renew(mailbox_id))
        remote: Remote | None = None
        idling = False
        # When what is under way began (connecting and the first poll, an IDLE
        # wait, a poll): a failure's entry in the poll log starts there.
        started = time.monotonic()
        try:
            mailbox = Mailbox.from_row(row, self.keys)
            mailbox.oauth = oauth_login.source_for(self.pool, self.keys, row, f"mailbox connect {mailbox_id}")
            remote = open_remote(mailbox)
            self._poll(poller, mailbox, remote, started)
            idling = can_idle(remote) and self.idle_slots.acquire(blocking=False)
            while idling and not self.stopping.is_set():
                started = time.monotonic()
                if not self._wait(remote, mailbox):
                    break
                started = time.monotonic()
                self._poll(poller, mailbox, remote, started)
            lease.let_go(self.pool, mailbox_id, self.owner)
        except RemoteError as exc:
            self._failed(mailbox_id, label, exc.step, str(exc), exc.transient, started)
        except Exception as exc:  # noqa: BLE001 - one mailbox must not stop the others
            self._failed(mailbox_id, label, "unexpected", f"unexpected: {exc!r}", True, started, trace=True)
            raise
        finally:
            if idling:
                self.idle_slots.release()
            if remote is not None:
                remote.close()

    def _poll(self, poller: Poller, mailbox: Mailbox, remote: Remote, started: float) -> PollResult:
        result = poller.poll(mailbox, remote)
        label = str(mailbox.id)
        error = "; ".join(result.skipped) or None
        if error:
            metrics.MAILBOX_ERRORS.labels(label).inc()
            log.warning("poll skipped messages the server could not deliver",
                        extra={"step": "fetch", "error": error, "fetched": result.fetched})
        level = logging.INFO if (result.fetched or result.removed or result.republished) else logging.DEBUG
        log.log(level, "poll finished", extra={"fetched": result.fetched, "removed": result.removed,
                                               "republished": result.republished})
        metrics.MAILBOX_LAST_SUCCESS.labels(label).set_to_current_time()
        lease.record(self.pool, mailbox.id, self.owner, lease.Outcome(
            time.monotonic() - started, error, partial=True, step="fetch" if error else None,
            fetched=result.fetched, removed=result.removed))
        return result

    def _wait(self, remote: Remote, mailbox: Mailbox) -> bool:
        """IDLE until new mail or the poll interval; False if the lease or the mailbox is gone."""
        until = time.monotonic() + min(mailbox.poll_interval, IDLE_RESTART)
        while not self.stopping.is_set():
            self.beat()
            if not lease.renew(self.pool, mailbox.id, self.owner, self.lease_seconds):
                return False
            left = until - time.monotonic()
            if left <= 0:
                return True
            if remote.wait_for_mail(min(left, self.lease_seconds / 3), self.stopping):  # type: ignore[attr-defined]
                return True
        return False

    def _failed(self, mailbox_id: int, label: str, step: str, error: str, transient: bool, started: float,
                trace: bool = False) -> None:
        metrics.MAILBOX_ERRORS.labels(label).inc()
        log.warning("poll failed", extra={"step": step, "error": error, "transient": transient}, exc_info=trace)
        try:
            lease.release(self.pool, mailbox_id, self.owner,
                          lease.Outcome(time.monotonic() - started, error, step=step))
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            log.warning("cannot record the poll's failure", extra={"error": repr(exc)})
