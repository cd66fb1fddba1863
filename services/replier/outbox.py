"""Staff replies swept if their announcement is lost; the replier stage that runs the sweep.

`queue_staff_reply` (shared/staff_replies.py) commits an outgoing_mail row
(kind staff_reply, state pending) in the caller's transaction; `announce`
then publishes reply.queued for it. The row is the truth and the event only a
wake-up call (an outbox): if the process dies between the commit and the
publish, or the broker is down, or the event was dead-lettered after long
SMTP trouble, the replier's `Sweeper` finds the row and announces it again:

    pending  and untouched for `grace` seconds       -> announced again
    sending  and untouched for STALE_SENDING seconds -> announced again (its replier died)
    pending  and older than MAX_AGE                  -> failed, visibly ("gave up")

Announcing twice is harmless: the replier claims a row before sending it.
`ReplierStage` runs the replier's worker and its sweeper together: it is the
replier stage (services/replier/main.py).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import psycopg
from psycopg_pool import ConnectionPool

from services.replier.stage import STALE_SENDING, ReplierHandler
from shared import metrics
from shared.crypto import Keys
from shared.db import transaction
from shared.settings import Settings
from shared.spam import decisions as spam_decisions
from shared.staff_replies import announce
from shared.topology import Topology
from shared.worker import Worker

log = logging.getLogger(__name__)

MAX_AGE = timedelta(days=1)
_SWEEP_LOCK = 72_616_005  # one replica sweeps at a time (pg_try_advisory_xact_lock)


class Sweeper:
    """Announces staff replies whose reply.queued event got lost, gives up on very old ones,
    and announces again released spam and held mail whose wake-up got lost (shared/spam/decisions.py)."""

    def __init__(self, settings: Settings, pool: ConnectionPool, topology: Topology, *,
                 interval: float | None = None, grace: float | None = None,
                 stale_sending: float = STALE_SENDING) -> None:
        self.settings = settings
        self.pool = pool
        self.topology = topology
        # Embedded mode: `deskmail requests reply` in another process cannot
        # reach this process's in-memory broker, so the sweep is the delivery.
        self.interval = interval if interval is not None else (2.0 if settings.embedded else 30.0)
        self.grace = grace if grace is not None else (2.0 if settings.embedded else 60.0)
        self.stale_sending = stale_sending
        self.stopping = threading.Event()

    def sweep_once(self) -> int:
        """Announce what is due; return how many were announced."""
        with transaction(self.pool) as conn:
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok",
                                (_SWEEP_LOCK,)).fetchone()["ok"]:
                return 0
            self._give_up(conn)
            due = conn.execute(
                "UPDATE outgoing_mail SET updated_at = CASE WHEN state = 'pending' THEN now()"
                " ELSE updated_at END WHERE id IN (SELECT id FROM outgoing_mail"
                " WHERE kind = 'staff_reply' AND ((state = 'pending'"
                " AND updated_at < now() - make_interval(secs => %s)) OR (state = 'sending'"
                " AND updated_at < now() - make_interval(secs => %s))) ORDER BY id LIMIT 1000)"
                " RETURNING id, request_id",
                (self.grace, self.stale_sending)).fetchall()
            released = spam_decisions.due(conn, self.grace)
        if due:
            announce(self.settings, self.topology, [(r["request_id"], r["id"]) for r in due])
            log.info("staff replies announced again", extra={"count": len(due)})
        if released:  # spam and held mail released by an administrator (shared/spam/decisions.py)
            spam_decisions.announce(self.settings, self.topology, released)
            log.info("released mail announced again", extra={"count": len(released)})
        return len(due) + len(released)

    def _give_up(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(
            "UPDATE outgoing_mail SET state = 'failed', updated_at = now(),"
            " reason = 'gave up after ' || %s || ' of trying; last error: '"
            " || coalesce(reason, 'none recorded')"
            " WHERE kind = 'staff_reply' AND state = 'pending' AND created_at < now() - %s"
            " RETURNING id, request_id, to_address, reason",
            (_days(MAX_AGE), MAX_AGE)).fetchall()
        for r in rows:
            conn.execute(
                "INSERT INTO history (request_id, kind, subject, body_text, author)"
                " VALUES (%s, 'note', 'staff-reply failed', %s, 'Deskmail')",
                (r["request_id"], f"The staff-reply to {r['to_address']} was not sent: {r['reason']}"))
            metrics.NOT_SENT.labels("staff_reply", "failed").inc()
            log.error("staff reply given up", extra={"outgoing_id": r["id"], "reason": r["reason"]})

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried next interval
                log.warning("staff-reply sweep failed", extra={"error": repr(exc)})
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} day" + ("" if days == 1 else "s")


class ReplierStage:
    """The replier's worker (events) and its sweeper (lost announcements), run together."""

    def __init__(self, settings: Settings, pool: ConnectionPool, keys: Keys,
                 topology: Topology) -> None:
        self.handler = ReplierHandler(settings, pool, keys)
        self.worker = Worker(settings, topology, self.handler)
        self.sweeper = Sweeper(settings, pool, topology)
        self.heartbeat = self.worker.heartbeat

    def run(self) -> None:
        sweep = threading.Thread(target=self.sweeper.run, name="replier-sweep", daemon=True)
        sweep.start()
        try:
            self.worker.run()
        finally:
            self.sweeper.stop()
            sweep.join(timeout=10)
            self.handler.close()

    def stop(self) -> None:
        self.worker.stop()
        self.sweeper.stop()
