"""The ticketer stage: parsed mail in, requests out, exactly once.

A batch of mail.parsed events is recorded in one transaction (a commit per
mail would cost most of the stage's time):

  1. read every parsed mail of the batch in one query;
  2. take the conversation locks of all of them (record.lock_conversations),
     so a reply and its parent handled by two ticketers at once are decided
     one after the other, and a redelivery racing its original waits;
  3. mails that already have an outcome (history row, or unmatched_mail row,
     by raw_id) are redeliveries: their stored outcome is published again,
     never a new one;
  4. the rest are recorded (record.record_batch) and their remote messages
     marked committed, so the fetcher may archive them.

After the commit the worker publishes request.created / request.updated
(with `automatic`: the kind of automatic mail, or null for a person) to the
replier and only then acks the batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from prometheus_client import Counter
from psycopg_pool import ConnectionPool

from services.ticketer.filtering import Filters
from services.ticketer.record import (
    Mail,
    Outcome,
    existing_outcomes,
    lock_conversations,
    record_batch,
)
from shared.db import transaction
from shared.errors import Permanent
from shared.events import MAIL_PARSED, REQUEST_CREATED, REQUEST_UPDATED, Event
from shared.mailboxes import own_addresses
from shared.parsed import ParsedMessage
from shared.tags import tag_pattern
from shared.worker import Output

log = logging.getLogger(__name__)

OWN_ADDRESSES_TTL = 30.0

MAILS = Counter(
    "deskmail_ticketer_mails",
    "Mails the ticketer recorded, by what they did (created, updated, unmatched, blocked, discarded,"
    " redelivered)",
    ["outcome"],
)


class TicketerHandler:
    stage = "ticket"

    def __init__(self, pool: ConnectionPool, msgid_key: bytes, tag_format: str | None = None) -> None:
        self.pool = pool
        self.msgid_key = msgid_key
        self.tag_re = tag_pattern(tag_format)
        self._own: frozenset[str] = frozenset()
        self._own_at = -OWN_ADDRESSES_TTL

    def _own_addresses(self) -> frozenset[str]:
        if time.monotonic() - self._own_at > OWN_ADDRESSES_TTL:
            with self.pool.connection() as conn:
                self._own = own_addresses(conn)
            self._own_at = time.monotonic()
        return self._own

    def handle(self, events: Sequence[Event]) -> list[Output]:
        raw_ids = list(dict.fromkeys(e["raw_id"] for e in events if e.type == MAIL_PARSED))
        if not raw_ids:
            return []
        own = self._own_addresses()
        with transaction(self.pool) as conn:
            rows = conn.execute(
                "SELECT p.raw_id, p.parsed, r.mailbox_id, m.category_id FROM parsed_messages p"
                " JOIN raw_messages r ON r.id = p.raw_id LEFT JOIN mailboxes m ON m.id = r.mailbox_id"
                " WHERE p.raw_id = ANY(%s)",
                (raw_ids,),
            ).fetchall()
            found = {r["raw_id"]: r for r in rows}
            missing = [r for r in raw_ids if r not in found]
            if missing:
                raise Permanent(f"mail.parsed names raw messages {missing} that have no parsed form")
            mails = [
                Mail(r, found[r]["mailbox_id"], found[r]["category_id"],
                     ParsedMessage.from_json(found[r]["parsed"]))
                for r in raw_ids
            ]
            lock_conversations(conn, [(m.raw_id, m.parsed) for m in mails])
            done = existing_outcomes(conn, raw_ids)
            todo = [m for m in mails if m.raw_id not in done]
            filters = Filters.load(conn, [(m.raw_id, m.mailbox_id) for m in todo]) if todo else None
            recorded = {o.raw_id: o for o in record_batch(
                conn, todo, msgid_key=self.msgid_key, tag_re=self.tag_re, own=own, filters=filters)}
            conn.execute(
                "UPDATE remote_messages SET state = 'committed', updated_at = now()"
                " WHERE raw_id = ANY(%s) AND state IN ('stored', 'published')",
                (raw_ids,),
            )
        for raw_id in raw_ids:
            self._count(recorded.get(raw_id) or done[raw_id], redelivered=raw_id in done)
        # One output per event, a duplicate in the same batch included: every
        # delivery of a mail.parsed is answered with the mail's one outcome.
        outputs: list[Output] = []
        for event in events:
            if event.type != MAIL_PARSED:
                continue
            outcome = recorded.get(event["raw_id"]) or done[event["raw_id"]]
            if outcome.request_id is not None:
                outputs.append(("reply", _event(outcome)))
        return outputs

    def _count(self, outcome: Outcome, *, redelivered: bool) -> None:
        if redelivered:
            MAILS.labels("redelivered").inc()
        elif outcome.held is not None:
            MAILS.labels(outcome.held).inc()
            log.info("mail held: no request (deskmail held list)",
                     extra={"raw_id": outcome.raw_id, "held": outcome.held})
        elif outcome.request_id is None:
            MAILS.labels("unmatched").inc()
            log.warning(
                "automatic mail matched no request; kept for an operator in unmatched_mail"
                " (deskmail requests unmatched)",
                extra={"raw_id": outcome.raw_id, "kind": outcome.automatic},
            )
        else:
            MAILS.labels("created" if outcome.created else "updated").inc()


def _event(outcome: Outcome) -> Event:
    return Event(
        REQUEST_CREATED if outcome.created else REQUEST_UPDATED,
        {"request_id": outcome.request_id, "history_id": outcome.history_id, "automatic": outcome.automatic},
    )
