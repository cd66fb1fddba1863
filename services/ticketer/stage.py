"""The ticketer stage: parsed mail in, requests out, exactly once.

A batch of mail.parsed events is recorded in one transaction (a commit per
mail would cost most of the stage's time). Redelivered mail finds its
history entry by raw_id and its stored outcome is published again, never a
new one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from services.ticketer.record import (
    Outcome,
    conversation_keys,
    existing_outcome,
    lock_keys,
    record_mail,
)
from shared.db import transaction
from shared.errors import Permanent
from shared.events import MAIL_PARSED, REQUEST_CREATED, REQUEST_UPDATED, Event
from shared.parsed import ParsedMessage
from shared.worker import Output

log = logging.getLogger(__name__)


class TicketerHandler:
    stage = "ticket"

    def __init__(self, pool: ConnectionPool, msgid_key: bytes) -> None:
        self.pool = pool
        self.msgid_key = msgid_key

    def handle(self, events: Sequence[Event]) -> list[Output]:
        raw_ids = [e["raw_id"] for e in events if e.type == MAIL_PARSED]
        outcomes: list[Outcome] = []
        with transaction(self.pool) as conn:
            rows = conn.execute(
                "SELECT p.raw_id, p.parsed, r.mailbox_id FROM parsed_messages p"
                " JOIN raw_messages r ON r.id = p.raw_id WHERE p.raw_id = ANY(%s)",
                (raw_ids,),
            ).fetchall()
            found = {r["raw_id"]: r for r in rows}
            missing = [r for r in raw_ids if r not in found]
            if missing:
                raise Permanent(f"no parsed message for raw ids {missing}")
            parsed = {r: ParsedMessage.from_json(found[r]["parsed"]) for r in raw_ids}
            lock_keys(conn, [k for r in raw_ids for k in conversation_keys(parsed[r], r)])
            mailboxes = {
                m["id"]: m
                for m in conn.execute(
                    "SELECT id, category_id FROM mailboxes WHERE id = ANY(%s)",
                    (list({found[r]["mailbox_id"] for r in raw_ids}),),
                )
            }
            for raw_id in raw_ids:
                outcome = existing_outcome(conn, raw_id)
                if outcome is None:
                    mailbox = mailboxes[found[raw_id]["mailbox_id"]]
                    outcome = record_mail(
                        conn, raw_id=raw_id, mailbox=mailbox, parsed=parsed[raw_id], msgid_key=self.msgid_key
                    )
                if outcome is None:
                    log.warning("bounce matched no request; recorded nothing", extra={"raw_id": raw_id})
                else:
                    outcomes.append(outcome)
            conn.execute(
                "UPDATE remote_messages SET state = 'committed', updated_at = now()"
                " WHERE raw_id = ANY(%s) AND state IN ('stored', 'published')",
                (raw_ids,),
            )
        return [
            (
                "reply",
                Event(
                    REQUEST_CREATED if o.created else REQUEST_UPDATED,
                    {"request_id": o.request_id, "history_id": o.history_id, "automatic": o.automatic},
                ),
            )
            for o in outcomes
        ]
