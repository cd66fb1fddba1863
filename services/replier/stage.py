"""The replier stage: auto-replies to new requests, and staff replies.

Auto-replies are sent at most once, staff replies at least once:

    outgoing_mail row  pending --commit--> sending --SMTP--> sent | failed
                                              |
    redelivered while 'sending':  auto-reply -> 'unknown' (never sent twice)
                                  staff reply -> sent again, same Message-ID

The row for an auto-reply is unique per request (a unique index), so a
redelivered request.created finds it instead of making another; every
decision not to answer is recorded on it with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from services.replier import templates
from services.replier.compose import build_message
from services.replier.loops import (
    DEFAULT_RATE_WINDOWS,
    auto_reply_refusal,
    parse_rate_windows,
    rate_limit_refusal,
)
from services.replier.smtp import Ambiguous, Refused, Sender, settings_for, write_outbox
from shared import metrics
from shared.crypto import Keys
from shared.db import transaction
from shared.errors import Transient
from shared.events import REPLY_QUEUED, REQUEST_CREATED, Event
from shared.log import bind
from shared.mailboxes import own_addresses
from shared.msgid import make_message_id
from shared.parsed import ParsedMessage
from shared.settings import Settings
from shared.tags import with_tag
from shared.worker import Output

log = logging.getLogger(__name__)


class ReplierHandler:
    stage = "reply"

    def __init__(self, settings: Settings, pool: ConnectionPool, keys: Keys) -> None:
        self.settings = settings
        self.pool = pool
        self.keys = keys
        self.sender = Sender()
        windows = settings.extra.get("rate_windows")
        self.windows = parse_rate_windows(windows) if windows else DEFAULT_RATE_WINDOWS
        self.outbox = settings.outbox_dir or (settings.data_dir / "outbox")

    def handle(self, events: Sequence[Event]) -> list[Output]:
        for event in events:
            with bind(request_id=event["request_id"]):
                if event.type == REQUEST_CREATED and not event.ids.get("automatic"):
                    self._auto_reply(event["request_id"], event["history_id"])
                elif event.type == REPLY_QUEUED:
                    self._send(event["outgoing_id"])
        return []

    # -- auto-replies -----------------------------------------------------

    def _auto_reply(self, request_id: int, history_id: int) -> None:
        with transaction(self.pool) as conn:
            ctx = _load(conn, request_id, history_id)
            if ctx is None or not ctx["auto_reply"]:
                return
            reason = self._refusal(conn, ctx)
            row = conn.execute(
                "INSERT INTO outgoing_mail (request_id, history_id, kind, to_address, to_name, state, reason)"
                " VALUES (%s, %s, 'auto_reply', %s, %s, %s, %s)"
                " ON CONFLICT (request_id) WHERE kind = 'auto_reply' DO NOTHING RETURNING id",
                (
                    request_id,
                    history_id,
                    ctx["reply_address"] or "",
                    ctx["customer_name"] or "",
                    "skipped" if reason else "pending",
                    reason,
                ),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT id, state FROM outgoing_mail WHERE request_id = %s AND kind = 'auto_reply'",
                    (request_id,),
                ).fetchone()
                if existing is None or existing["state"] != "pending":
                    return
                outgoing_id = existing["id"]
            elif reason:
                log.info("auto-reply not sent", extra={"reason": reason})
                return
            else:
                outgoing_id = row["id"]
        self._send(outgoing_id)

    def _refusal(self, conn: psycopg.Connection, ctx: dict[str, Any]) -> str | None:
        parsed = (
            ParsedMessage.from_json(ctx["parsed"])
            if ctx["parsed"]
            else ParsedMessage(unparsed="missing")
        )
        reason = auto_reply_refusal(parsed, own_addresses=own_addresses(conn))
        if reason or not ctx["reply_address"]:
            return reason or "no address to reply to"
        sent = [
            r["created_at"]
            for r in conn.execute(
                "SELECT created_at FROM outgoing_mail WHERE kind = 'auto_reply' AND state IN ('sent', 'sending', 'unknown')"
                " AND lower(to_address) = lower(%s) AND created_at > now() - interval '1 day'",
                (ctx["reply_address"],),
            )
        ]
        return rate_limit_refusal(sent, datetime.now(UTC), self.windows)

    # -- sending ------------------------------------------------------------

    def _send(self, outgoing_id: int) -> None:
        with transaction(self.pool) as conn:
            out = conn.execute(
                "SELECT * FROM outgoing_mail WHERE id = %s FOR UPDATE", (outgoing_id,)
            ).fetchone()
            if out is None or out["state"] in ("sent", "failed", "skipped", "unknown"):
                return
            if out["state"] == "sending" and out["kind"] == "auto_reply":
                # We may have crashed after the server took it: at most once.
                conn.execute(
                    "UPDATE outgoing_mail SET state = 'unknown',"
                    " reason = 'replier stopped while sending; not sent again' WHERE id = %s",
                    (outgoing_id,),
                )
                return
            message_id = out["message_id"] or make_message_id(
                out["request_id"], outgoing_id, self.keys.message_id_key, self.settings.mail_domain
            )
            conn.execute(
                "UPDATE outgoing_mail SET state = 'sending', message_id = %s, attempts = attempts + 1"
                " WHERE id = %s",
                (message_id, outgoing_id),
            )
            ctx = _load(conn, out["request_id"], out["history_id"])
            assert ctx is not None
            smtp = settings_for(conn, self.keys, ctx["smtp_id"])
            tmpl = _template(conn, ctx["mailbox_id"], out["kind"])
        data = self._compose(ctx, out, tmpl, message_id)
        try:
            if smtp is None:
                write_outbox(self.outbox, message_id, data)
            else:
                self.sender.send(smtp, ctx["mailbox_address"], [out["to_address"]], data)
        except Transient:
            self._set(outgoing_id, "pending", None)  # nothing was accepted: safe to send again
            raise
        except Refused as exc:
            self._set(outgoing_id, "failed", str(exc))
            log.error(
                "mail refused by SMTP server",
                extra={"outgoing_id": outgoing_id, "reason": str(exc)},
            )
            return
        except Ambiguous as exc:
            state = "unknown" if out["kind"] == "auto_reply" else "sending"
            self._set(outgoing_id, state, str(exc))
            if state == "sending":
                raise Transient(str(exc)) from exc
            return
        with transaction(self.pool) as conn:
            conn.execute(
                "UPDATE outgoing_mail SET state = 'sent', sent_at = now(), reason = NULL WHERE id = %s",
                (outgoing_id,),
            )
            conn.execute(
                "INSERT INTO history (request_id, kind, message_id, from_address, subject, body_text, author)"
                " VALUES (%s, 'outgoing', %s, %s, %s, %s, %s)",
                (
                    out["request_id"],
                    message_id,
                    ctx["mailbox_address"],
                    ctx["subject"],
                    out["body_text"] or f"[{out['kind'].replace('_', '-')} sent]",
                    out["agent_name"],
                ),
            )
        metrics.SENT.labels(out["kind"]).inc()
        log.info(
            "mail sent",
            extra={"outgoing_id": outgoing_id, "kind": out["kind"], "message_id": message_id},
        )

    def _compose(
        self, ctx: dict[str, Any], out: dict[str, Any], tmpl: templates.Template, message_id: str
    ) -> bytes:
        render_ctx = templates.build_context(
            request_id=ctx["request_id"],
            request_subject=ctx["subject"],
            request_status=ctx["status"],
            customer_name=ctx["customer_name"] or "",
            customer_address=out["to_address"],
            mailbox_name=ctx["mailbox_name"],
            mailbox_address=ctx["mailbox_address"],
            agent_name=out["agent_name"],
            message_subject=ctx["message_subject"] or "",
            message_body_text=ctx["message_body"] or "",
            reply_body_text=out["body_text"] if out["kind"] == "staff_reply" else None,
        )
        rendered = templates.render(tmpl, render_ctx)
        return build_message(
            from_name=templates.render_from_name(ctx["from_name"], render_ctx),
            from_address=ctx["mailbox_address"],
            to_name=out["to_name"] or "",
            to_address=out["to_address"],
            subject=with_tag(rendered.subject, ctx["request_id"]),
            body_text=rendered.body_text,
            body_html=rendered.body_html or None,
            message_id=message_id,
            in_reply_to=ctx["parent_message_id"],
            references=ctx["references"],
            auto_reply=out["kind"] == "auto_reply",
        )

    def _set(self, outgoing_id: int, state: str, reason: str | None) -> None:
        with transaction(self.pool) as conn:
            conn.execute(
                "UPDATE outgoing_mail SET state = %s, reason = %s WHERE id = %s",
                (state, reason, outgoing_id),
            )


def _template(conn: psycopg.Connection, mailbox_id: int, kind: str) -> templates.Template:
    row = conn.execute(
        "SELECT name, subject, body_text, coalesce(body_html, '') AS body_html FROM templates"
        " WHERE name = %s AND (mailbox_id = %s OR mailbox_id IS NULL) ORDER BY mailbox_id NULLS LAST LIMIT 1",
        (kind, mailbox_id),
    ).fetchone()
    return templates.Template(**row) if row else templates.system_template(kind)


_LOAD = """
SELECT r.id AS request_id, r.subject, r.status, r.mailbox_id,
       m.address AS mailbox_address, m.from_name, m.auto_reply, m.smtp_id,
       split_part(m.address, '@', 1) AS mailbox_name,
       c.address AS customer_address, c.name AS customer_name,
       h.message_id AS parent_message_id, h.subject AS message_subject, h.body_text AS message_body,
       h.thread_ids, p.parsed
FROM requests r
JOIN mailboxes m ON m.id = r.mailbox_id
LEFT JOIN customers c ON c.id = r.customer_id
LEFT JOIN history h ON h.id = %(h)s
LEFT JOIN parsed_messages p ON p.raw_id = h.raw_id
WHERE r.id = %(r)s
"""


def _load(
    conn: psycopg.Connection, request_id: int, history_id: int | None
) -> dict[str, Any] | None:
    ctx = conn.execute(_LOAD, {"r": request_id, "h": history_id}).fetchone()
    if ctx is None:
        return None
    parsed = ctx["parsed"] or {}
    reply_to = parsed.get("reply_to") or []
    ctx["reply_address"] = reply_to[0]["address"] if reply_to else ctx["customer_address"]
    ctx["references"] = [
        *(parsed.get("references") or []),
        *([ctx["parent_message_id"]] if ctx["parent_message_id"] else []),
    ]
    return ctx
