"""Staff replies: queued in the database first, announced second, swept if the announcement is lost.

`queue_staff_reply` commits an outgoing_mail row (kind staff_reply, state
pending) in the caller's transaction; `announce` then publishes reply.queued
for it. The row is the truth and the event only a wake-up call (an outbox):
if the process dies between the commit and the publish, or the broker is
down, or the event was dead-lettered after long SMTP trouble, the replier's
`Sweeper` finds the row and announces it again:

    pending  and untouched for `grace` seconds       -> announced again
    sending  and untouched for STALE_SENDING seconds -> announced again (its replier died)
    pending  and older than MAX_AGE                  -> failed, visibly ("gave up")

Announcing twice is harmless: the replier claims a row before sending it.
`ReplierStage` runs the replier's worker and its sweeper together; it is what
`App.stage("replier")` returns.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from services.replier.compose import validate_address
from services.replier.stage import STALE_SENDING, ReplierHandler
from shared import metrics
from shared.crypto import Keys
from shared.db import transaction
from shared.events import REPLY_QUEUED, Event
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import Worker, connect

log = logging.getLogger(__name__)

MAX_AGE = timedelta(days=1)
_SWEEP_LOCK = 72_616_005  # one replica sweeps at a time (pg_try_advisory_xact_lock)


class ReplyRefused(ValueError):
    """A staff reply that cannot be queued, in words for the agent."""


def queue_staff_reply(conn: psycopg.Connection, request_id: int, agent: str, body: str) -> int:
    """Queue a public staff reply on request `request_id`; returns the outgoing mail's id.

    It answers the request's latest mail written by a person (else its latest
    mail): to that mail's Reply-To, else its sender, else the request's customer.
    """
    agent, text = agent.strip(), body.replace("\r\n", "\n").strip("\n")
    if not agent:
        raise ReplyRefused("the agent's name must not be empty")
    if not text.strip():
        raise ReplyRefused("the reply is empty")
    request = conn.execute(
        "SELECT r.id, c.address, c.name FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " WHERE r.id = %s", (request_id,)).fetchone()
    if request is None:
        raise LookupError(f"no request {request_id}")
    parent = conn.execute(
        "SELECT h.id, h.from_address, h.from_name, p.parsed->'reply_to' AS reply_to FROM history h"
        " LEFT JOIN parsed_messages p ON p.raw_id = h.raw_id"
        " WHERE h.request_id = %s AND h.kind = 'incoming'"
        " ORDER BY (h.automatic IS NULL) DESC, h.id DESC LIMIT 1", (request_id,)).fetchone()
    candidates: list[dict[str, Any]] = []
    if parent is not None:
        candidates += list(parent["reply_to"] or [])
        if parent["from_address"]:
            candidates.append({"address": parent["from_address"], "name": parent["from_name"] or ""})
    if request["address"]:
        candidates.append({"address": request["address"], "name": request["name"] or ""})
    if not candidates:
        raise ReplyRefused(f"request {request_id} has no customer address to reply to")
    to = candidates[0]
    try:
        validate_address(to["address"])
    except ValueError as exc:
        raise ReplyRefused(f"cannot reply to {to['address']!r}: {exc}") from None
    row = conn.execute(
        "INSERT INTO outgoing_mail (request_id, history_id, kind, to_address, to_name, agent_name,"
        " body_text, state) VALUES (%s, %s, 'staff_reply', %s, %s, %s, %s, 'pending') RETURNING id",
        (request_id, parent["id"] if parent else None, to["address"], to.get("name") or "",
         agent, text),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def announce(settings: Settings, topology: Topology, pairs: list[tuple[int, int]]) -> None:
    """Publish reply.queued for (request_id, outgoing_id) pairs, confirmed by the broker."""
    if not pairs:
        return
    with connect(settings) as conn:
        topology.declare(conn)
        Publisher(conn).publish_events(
            topology.exchange, "reply",
            [Event(REPLY_QUEUED, {"request_id": r, "outgoing_id": o}) for r, o in pairs])


class Sweeper:
    """Announces staff replies whose reply.queued event got lost; gives up on very old ones."""

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
        if due:
            announce(self.settings, self.topology, [(r["request_id"], r["id"]) for r in due])
            log.info("staff replies announced again", extra={"count": len(due)})
        return len(due)

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
