"""The replier stage: auto-replies to new requests, and staff replies.

Auto-replies are sent at most once, staff replies at least once:

    outgoing_mail row  pending --commit--> sending --SMTP--> sent | failed
                                              |
    found 'sending' again:  auto-reply  -> 'unknown' (never sent twice)
                            staff reply -> sent again with the same Message-ID
                                           (once the claim is stale: STALE_SENDING)

'sending' is committed before each mail's DATA; 'sent' (and the request
history entry with the mail's Message-ID) is committed once per batch. A
crash between the two leaves 'sending', which is exactly the uncertain case.

The auto-reply row is unique per request (a unique index), so a redelivered
request.created finds it instead of making another; every decision not to
answer is recorded on it (state 'skipped', reason). The per-recipient rate
limit counts rows, under an advisory lock per recipient, so neither a batch
nor several replicas can exceed it.

The sender: From is the mailbox's address with its account name as display
name, placeholders filled in (the agent on a staff reply): shared/outgoing.py
renders it, and the subject and bodies, for this stage and for the admin
layer's preview alike. A staff reply goes to its To and its Cc (the other
people of the conversation, or whom the agent chose); an auto-reply to the
sender alone. `mailbox.name` in
templates is the account name as it reads when no agent acts (an auto-reply);
an account name that refers to `mailbox.name` itself sees the address there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from services.replier.compose import build_message, validate_address
from services.replier.loops import auto_reply_refusal, parse_rate_windows, rate_limit_refusal
from services.replier.outbox_folder import write_outbox
from shared import metrics, outgoing, smtp_settings, template_store, templates
from shared.crypto import Keys, SecretError
from shared.db import transaction
from shared.errors import Permanent, Transient
from shared.events import REPLY_QUEUED, REQUEST_CREATED, Event
from shared.log import bind
from shared.mailboxes import own_addresses
from shared.mailserver.smtp import Ambiguous, Refused, Sender
from shared.msgid import make_message_id
from shared.oauth2 import login as oauth_login
from shared.parsed import ParsedMessage
from shared.settings import Settings
from shared.smtp_settings import SmtpSettings
from shared.worker import Output

log = logging.getLogger(__name__)

STALE_SENDING = 120.0  # seconds: a staff reply 'sending' longer than this was abandoned
# A mail the server took but not yet recorded 'sent' becomes 'unknown' if the
# replier dies (an auto-reply is then never sent again): recording every few
# mails bounds how many customers that can leave without their auto-reply,
# at a small cost in statements.
SENT_FLUSH = 8
LANES = 4  # mails sent side by side: sending is mostly waiting for the SMTP server and the database
_COUNTED_STATES = ("pending", "sending", "sent", "unknown")  # toward the rate limit


def rate_windows(settings: Settings) -> list:
    try:
        return parse_rate_windows(settings.auto_reply_limits)
    except ValueError as exc:
        raise SystemExit(f"setting DESKMAIL_AUTO_REPLY_LIMITS: {exc}") from None


@dataclass
class _Prepared:
    row: dict[str, Any]
    message_id: str
    data: bytes
    subject: str
    body_text: str
    from_name: str


class ReplierHandler:
    stage = "reply"

    def __init__(self, settings: Settings, pool: ConnectionPool, keys: Keys,
                 sender: Sender | None = None, lanes: int = LANES) -> None:
        self.settings = settings
        self.pool = pool
        self.keys = keys
        self.sender = sender or Sender()
        # Each lane has its own SMTP sessions and database connection.
        self._senders = [self.sender, *(Sender(self.sender.timeout) for _ in range(lanes - 1))]
        self._lanes = ThreadPoolExecutor(lanes, "replier-lane") if lanes > 1 else None
        self.windows = rate_windows(settings)
        self.outbox = settings.outbox_dir or (settings.data_dir / "outbox")
        self.stale_sending = STALE_SENDING

    def handle(self, events: Sequence[Event]) -> list[Output]:
        created = [e for e in events if e.type == REQUEST_CREATED]
        ids = self._decide(created) if created else []
        ids += [e["outgoing_id"] for e in events if e.type == REPLY_QUEUED]
        if ids:
            self._send_all(list(dict.fromkeys(ids)))
        return []

    # -- auto-reply decisions ---------------------------------------------

    def _decide(self, events: Sequence[Event]) -> list[int]:
        """Record an auto-reply (pending or skipped) per new request; ids to send."""
        to_send: list[int] = []
        with transaction(self.pool) as conn:
            rows = conn.execute(_DECIDE_SQL, ([e["request_id"] for e in events],
                                              [e["history_id"] for e in events])).fetchall()
            existing = {
                r["request_id"]: r for r in conn.execute(
                    "SELECT id, request_id, state FROM outgoing_mail"
                    " WHERE kind = 'auto_reply' AND request_id = ANY(%s)",
                    ([r["request_id"] for r in rows],))
            }
            wanted = []
            for row in rows:
                old = existing.get(row["request_id"])
                if old is not None:  # a redelivery: the decision is made already
                    if old["state"] in ("pending", "sending"):
                        to_send.append(old["id"])
                elif row["auto_reply"] and row["removed_at"] is None:
                    wanted.append(row)
            if not wanted:
                return to_send
            own = own_addresses(conn)
            decided = [(row, *_recipient(row)) for row in wanted]
            recent = self._recent_auto_replies(conn, [a for _, a, _, _ in decided if a])
            now = conn.execute("SELECT now() AS now").fetchone()["now"]
            choices = []
            for row, address, name, reason in decided:
                reason = _filter_refusal(row) or reason
                if reason is None:
                    parsed = (ParsedMessage.from_json(row["parsed"]) if row["parsed"]
                              else ParsedMessage(unparsed="no parsed form recorded"))
                    reason = auto_reply_refusal(parsed, own_addresses=own)
                if reason is None:
                    times = recent.setdefault(address.lower(), [])
                    reason = rate_limit_refusal(times, now, self.windows)
                    if reason is None:
                        times.append(now)
                choices.append((row["request_id"], row["history_id"], address or "", name,
                                "skipped" if reason else "pending", reason))
            # One statement for the batch; a row another replica inserted first
            # is left alone (its decision stands) and not returned here.
            inserted = conn.execute(
                "INSERT INTO outgoing_mail (request_id, history_id, kind, to_address, to_name,"
                " state, reason) SELECT r, h, 'auto_reply', a, n, s, why FROM unnest("
                "%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[])"
                " AS c(r, h, a, n, s, why)"
                " ON CONFLICT (request_id) WHERE kind = 'auto_reply' DO NOTHING"
                " RETURNING id, request_id, to_address, state, reason",
                [list(col) for col in zip(*choices, strict=True)],
            ).fetchall()
            by_request = {r["request_id"]: r for r in inserted}
            for request_id, *_ in choices:
                new = by_request.get(request_id)
                if new is None:
                    continue
                if new["state"] == "skipped":
                    metrics.NOT_SENT.labels("auto_reply", "skipped").inc()
                    log.info("auto-reply not sent", extra={
                        "request_id": request_id, "reason": new["reason"],
                        "to": new["to_address"], "outgoing_id": new["id"]})
                else:
                    to_send.append(new["id"])
        return to_send

    def _recent_auto_replies(self, conn: psycopg.Connection, addresses: list[str]
                             ) -> dict[str, list[Any]]:
        """Recipient -> when earlier auto-replies to it were made, inside the longest window."""
        keys = sorted({a.lower() for a in addresses})
        # Sorted: two batches lock in the same order and never deadlock.
        conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended('auto-reply:' || k, 0)"
            " AS h FROM unnest(%s::text[]) AS k ORDER BY k) AS ordered", (keys,))
        longest = max(span for span, _ in self.windows)
        recent: dict[str, list[Any]] = {}
        for r in conn.execute(
            "SELECT lower(to_address) AS a, created_at FROM outgoing_mail"
            " WHERE kind = 'auto_reply' AND state = ANY(%s) AND lower(to_address) = ANY(%s)"
            " AND created_at > now() - %s",
            (list(_COUNTED_STATES), keys, longest),
        ):
            recent.setdefault(r["a"], []).append(r["created_at"])
        return recent

    # -- sending ----------------------------------------------------------

    def _send_all(self, ids: list[int]) -> None:
        """Send each mail; record sent ones in one transaction; re-raise the first transient error."""
        lanes = [ids[i::len(self._senders)] for i in range(len(self._senders))]
        lanes = [lane for lane in lanes if lane]
        if self._lanes is None or len(lanes) == 1:
            self._send_lane(0, ids)
            return
        futures = [self._lanes.submit(self._send_lane, i, lane) for i, lane in enumerate(lanes)]
        errors = [f.exception() for f in futures]
        # Permanent and unexpected errors first: they say more than a transient one.
        for exc in sorted((e for e in errors if e is not None),
                          key=lambda e: isinstance(e, Transient)):
            raise exc

    def close(self) -> None:
        if self._lanes is not None:
            self._lanes.shutdown(wait=True)
        for sender in self._senders:
            sender.close()

    def _send_lane(self, lane: int, ids: list[int]) -> None:
        # One connection per lane, in autocommit: each mail's 'sending' claim
        # is one statement, durable before its DATA.
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                self._send_batch(conn, self._senders[lane], ids)
            finally:
                conn.autocommit = False

    def _send_batch(self, conn: psycopg.Connection, sender: Sender, ids: list[int]) -> None:
        rows = outgoing.rows(conn, ids)
        by_id = {r["outgoing_id"]: r for r in rows}
        smtps = self._smtp_settings(conn, {r["smtp_id"] for r in rows})
        tmpls = template_store.effective_many(conn, {(r["mailbox_id"], r["kind"]) for r in rows})
        sent: list[_Prepared] = []
        first_transient: Transient | None = None
        try:
            for oid in ids:
                row = by_id.get(oid)
                if row is None:
                    raise Permanent(f"no outgoing mail {oid}")
                with bind(request_id=row["request_id"], outgoing_id=oid, kind=row["kind"]):
                    try:
                        done = self._send_one(conn, sender, row, smtps.get(row["smtp_id"]),
                                              tmpls[(row["mailbox_id"], row["kind"])])
                    except Transient as exc:
                        first_transient = first_transient or exc
                        continue
                    if done is not None:
                        sent.append(done)
                    if len(sent) >= SENT_FLUSH:
                        self._record_sent(conn, sent)
                        sent = []
        finally:
            if sent:
                self._record_sent(conn, sent)
        if first_transient is not None:
            raise first_transient

    def _smtp_settings(self, conn: psycopg.Connection, ids: set[int | None]
                       ) -> dict[int | None, SmtpSettings | Exception | None]:
        out: dict[int | None, SmtpSettings | Exception | None] = {}
        for smtp_id in ids:
            try:
                out[smtp_id] = oauth_login.attach_smtp(self.pool, self.keys, conn,
                                                       smtp_settings.for_mailbox(conn, self.keys, smtp_id))
            except SecretError as exc:
                out[smtp_id] = exc
        return out

    def _send_one(self, conn: psycopg.Connection, sender: Sender, row: dict[str, Any], smtp: SmtpSettings | Exception | None,
                  tmpl: templates.Template) -> _Prepared | None:
        oid = row["outgoing_id"]
        message_id = row["message_id"] or self._message_id(row)
        if not self._claim(conn, oid, message_id):
            return None
        try:
            prepared = self._prepare(row, tmpl, message_id)
        except (templates.RenderError, ValueError, TypeError) as exc:
            self._failed(conn, row, f"could not be written: {exc}")
            return None
        try:
            if isinstance(smtp, Exception):
                raise Transient(f"SMTP settings unusable: {smtp}")
            if smtp is None:
                if not (self.settings.embedded or self.settings.outbox_dir):
                    raise Transient("no SMTP settings: set the system default with"
                                    " `deskmail smtp set-system` or give the mailbox its own")
                write_outbox(self.outbox, message_id, prepared.data)
            else:
                recipients = [row["to_address"], *(row["cc"] if row["kind"] == "staff_reply" else ())]
                sender.send(smtp, row["mailbox_address"], recipients, prepared.data)
        except Transient as exc:
            # Nothing was accepted: the mail may go again, with the same Message-ID.
            self._set(conn, oid, "pending", str(exc))
            log.warning("mail not sent yet, will retry", extra={"reason": str(exc)})
            raise
        except Refused as exc:
            self._failed(conn, row, f"refused: {exc}")
            return None
        except Ambiguous as exc:
            if row["kind"] == "auto_reply":
                self._unknown(conn, row, str(exc))
                return None
            self._set(conn, oid, "pending", f"{exc}; will be sent again with the same Message-ID")
            raise Transient(str(exc)) from exc
        return prepared

    def _message_id(self, row: dict[str, Any]) -> str:
        # The mailbox's own domain: a Message-ID matching From reads as less spammy.
        try:
            domain = validate_address(row["mailbox_address"]).rpartition("@")[2]
            return make_message_id(row["request_id"], row["outgoing_id"],
                                   self.keys.message_id_key, domain)
        except ValueError:
            return make_message_id(row["request_id"], row["outgoing_id"],
                                   self.keys.message_id_key, self.settings.mail_domain)

    def _claim(self, conn: psycopg.Connection, oid: int, message_id: str) -> bool:
        """Commit 'sending' before any byte goes out; False when this mail must not be sent now."""
        # The connection is in autocommit: the UPDATE is durable when it returns.
        claimed = conn.execute(
            "UPDATE outgoing_mail SET state = 'sending', message_id = %s,"
            " attempts = attempts + 1, updated_at = now()"
            " WHERE id = %s AND (state = 'pending' OR (state = 'sending'"
            " AND kind = 'staff_reply' AND updated_at < now() - make_interval(secs => %s)))"
            " RETURNING id",
            (message_id, oid, self.stale_sending),
        ).fetchone()
        if claimed is not None:
            return True
        row = conn.execute(
            "SELECT o.*, m.address AS mailbox_address FROM outgoing_mail o"
            " JOIN requests r ON r.id = o.request_id JOIN mailboxes m ON m.id = r.mailbox_id"
            " WHERE o.id = %s", (oid,)).fetchone()
        if row is None or row["state"] != "sending":
            return False  # sent, failed, skipped or unknown: nothing to do
        if row["kind"] == "auto_reply":
            # We may have died after the server took it: at most once.
            self._unknown(conn, {**row, "outgoing_id": oid},
                          "the replier stopped while sending it; not sent again")
            return False
        raise Transient("another replier is sending this staff reply; checking again later")

    def _prepare(self, row: dict[str, Any], tmpl: templates.Template, message_id: str
                 ) -> _Prepared:
        staff = row["kind"] == "staff_reply"
        parts = outgoing.render(row, tmpl)
        references = [*(row["parent_references"] or []),
                      *([row["parent_message_id"]] if row["parent_message_id"] else [])]
        data = build_message(
            from_name=parts.from_name, from_address=row["mailbox_address"],
            to_name=row["to_name"] or "", to_address=row["to_address"],
            cc=row["cc"] if staff else (),  # an auto-reply goes to the sender alone
            subject=parts.subject, body_text=parts.body_text,
            body_html=parts.body_html or None, message_id=message_id,
            in_reply_to=row["parent_message_id"], references=references,
            auto_reply=not staff,
        )
        return _Prepared(row, message_id, data, parts.subject, parts.body_text, parts.from_name)

    # -- recording outcomes -------------------------------------------------

    def _record_sent(self, conn: psycopg.Connection, sent: list[_Prepared]) -> None:
        with conn.transaction():
            updated = {
                r["id"] for r in conn.execute(
                    "UPDATE outgoing_mail SET state = 'sent', sent_at = now(), updated_at = now(),"
                    " reason = NULL WHERE id = ANY(%s) AND state IN ('sending', 'unknown') RETURNING id",
                    ([p.row["outgoing_id"] for p in sent],))
            }
            entries = [p for p in sent if p.row["outgoing_id"] in updated]
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO history (request_id, kind, message_id, from_address, from_name,"
                    " subject, body_text, author) VALUES (%s, 'outgoing', %s, %s, %s, %s, %s, %s)",
                    [(p.row["request_id"], p.message_id, p.row["mailbox_address"], p.from_name,
                      p.subject, p.body_text, p.row["agent_name"]) for p in entries],
                )
        for p in entries:
            metrics.SENT.labels(p.row["kind"]).inc()
        log.info("mails sent", extra={"count": len(entries),
                                      "message_ids": [p.message_id for p in entries][:10]})

    def _set(self, conn: psycopg.Connection, oid: int, state: str, reason: str | None) -> None:
        with conn.transaction():
            conn.execute("UPDATE outgoing_mail SET state = %s, reason = %s, updated_at = now()"
                         " WHERE id = %s", (state, reason, oid))

    def _failed(self, conn: psycopg.Connection, row: dict[str, Any], reason: str) -> None:
        self._conclude(conn, row, "failed", reason, "was not sent")
        log.error("mail not sent", extra={"reason": reason, "to": row["to_address"]})

    def _unknown(self, conn: psycopg.Connection, row: dict[str, Any], reason: str) -> None:
        self._conclude(conn, row, "unknown", reason, "may or may not have been sent")
        log.warning("auto-reply left unknown", extra={"reason": reason, "to": row["to_address"]})

    def _conclude(self, conn: psycopg.Connection, row: dict[str, Any], state: str, reason: str,
                  what: str) -> None:
        """A final state other than sent: on the row, on the request's history, in metrics."""
        kind = row["kind"]
        with conn.transaction():
            done = conn.execute(
                "UPDATE outgoing_mail SET state = %s, reason = %s, updated_at = now()"
                " WHERE id = %s AND state IN ('pending', 'sending') RETURNING id",
                (state, reason, row["outgoing_id"])).fetchone()
            if done is None:
                return
            conn.execute(
                "INSERT INTO history (request_id, kind, from_address, subject, body_text, author)"
                " VALUES (%s, 'note', %s, %s, %s, 'Deskmail')",
                (row["request_id"], row["mailbox_address"], f"{kind.replace('_', '-')} {state}",
                 f"The {kind.replace('_', '-')} to {row['to_address']} {what}: {reason}"),
            )
        metrics.NOT_SENT.labels(kind, state).inc()


def _filter_refusal(row: dict[str, Any]) -> str | None:
    """What the ticketer's filters decided (services/ticketer/filtering.py): spam, a rule, DMARC."""
    if row["spam"]:
        return f"spam ({row['spam_reason']})" if row["spam_reason"] else "spam"
    if row["no_auto_reply"]:
        return f"no auto-reply: {row['no_auto_reply']}"
    return None


def _recipient(row: dict[str, Any]) -> tuple[str, str, str | None]:
    """(address, name, refusal) of whom an auto-reply goes to: Reply-To, else From."""
    parsed = row["parsed"] or {}
    candidates = [*(parsed.get("reply_to") or []), *([parsed["from"]] if parsed.get("from") else [])]
    if not candidates and row["customer_address"]:
        candidates = [{"address": row["customer_address"], "name": row["customer_name"] or ""}]
    if not candidates:
        return "", "", "no address to reply to"
    address, name = candidates[0].get("address") or "", candidates[0].get("name") or ""
    try:
        # The checked form: an internationalised domain IDNA-encoded, as SMTP needs it.
        address = validate_address(address)
    except ValueError as exc:
        return address, name, f"cannot reply to this address: {exc}"
    return address, name, None


_DECIDE_SQL = """
SELECT e.request_id, e.history_id, r.mailbox_id, m.auto_reply, m.removed_at,
       r.spam, r.spam_reason, r.no_auto_reply,
       c.address AS customer_address, c.name AS customer_name, p.parsed
FROM unnest(%s::bigint[], %s::bigint[]) AS e(request_id, history_id)
JOIN requests r ON r.id = e.request_id
JOIN mailboxes m ON m.id = r.mailbox_id
LEFT JOIN customers c ON c.id = r.customer_id
LEFT JOIN history h ON h.id = e.history_id
LEFT JOIN parsed_messages p ON p.raw_id = h.raw_id
"""

