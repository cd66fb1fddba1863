"""Deskmail's health at a glance: every mailbox and every queue, and what needs a person.

`deskmail status` prints this and exits non-zero when `needs_attention`, so
it also serves as a check (cron, monitoring); an admin web can show the same
`Status`. The rules, in plain words:

- a mailbox needs attention when its last poll failed, or when it has had no
  successful poll for longer than STALE_AFTER (or three poll intervals, if
  that is longer) although it is enabled;
- a dead-letter queue needs attention as soon as it holds a message;
- a work queue needs attention when it holds messages and has no consumer,
  or did not get shorter over the sampling window (with the management API:
  and nothing was delivered from it).

`backlog` says, per stage, how much work waits for it and since when, from
the database ledger (see its docstring): a quorum queue cannot be peeked at
without the look counting as a delivery, and its head has no timestamp.

`mail_summary` gives the From and Subject of a raw message, for showing a
dead letter to an operator.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from typing import Any

import psycopg
from kombu import Connection

from shared.broker_admin import QueueInfo, sample_queues
from shared.topology import Topology

# One lease (a dead fetcher's mailboxes wait for it to expire) and some slack.
OVERDUE_SLACK = dt.timedelta(seconds=90)
STALE_AFTER = dt.timedelta(minutes=10)


@dataclass
class MailboxHealth:
    id: int
    address: str
    enabled: bool
    state: str  # ok | failing | stale | waiting | disabled
    detail: str
    last_success_at: dt.datetime | None
    needs_reconnect: bool = False  # OAuth2: the provider refused the sign-in; someone must Connect again

    @property
    def needs_attention(self) -> bool:
        return self.state in ("failing", "stale")


@dataclass
class Backlog:
    """Work waiting for one stage, by the database's ledger (not the queue's)."""

    stage: str
    waiting: int
    oldest_at: dt.datetime | None  # when the oldest waiting work reached this stage
    oldest_age_seconds: float | None  # its age now, by the database's clock


@dataclass
class QueueHealth:
    info: QueueInfo
    problem: str | None = None
    backlog: Backlog | None = None  # work queues only

    @property
    def needs_attention(self) -> bool:
        return self.problem is not None


@dataclass
class Status:
    mailboxes: list[MailboxHealth] = field(default_factory=list)
    queues: list[QueueHealth] = field(default_factory=list)
    backlog: dict[str, Backlog] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # a part that could not be checked at all

    @property
    def problems(self) -> list[str]:
        out = list(self.errors)
        out += [f"mailbox {m.id} ({m.address}): {m.detail}" for m in self.mailboxes if m.needs_attention]
        out += [f"queue {q.info.name}: {q.problem}" for q in self.queues if q.problem]
        return out

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)


_MAILBOX_SQL = """
SELECT id, address, enabled, poll_interval, created_at, last_poll_at, last_success_at,
       last_error, last_error_at, failures_in_row, now() AS now,
       (SELECT g.reconnect_reason FROM oauth_grants g WHERE g.id = oauth_grant_id AND g.needs_reconnect
         AND auth_method = 'oauth2') AS reconnect_reason
FROM mailboxes WHERE removed_at IS NULL ORDER BY id
"""


def mailbox_health(conn: psycopg.Connection) -> list[MailboxHealth]:
    out = []
    for row in conn.execute(_MAILBOX_SQL).fetchall():
        stale_after = max(STALE_AFTER, dt.timedelta(seconds=3 * row["poll_interval"]))
        overdue_after = dt.timedelta(seconds=row["poll_interval"]) + OVERDUE_SLACK
        since = row["last_success_at"] or row["created_at"]
        if not row["enabled"]:
            state, detail = "disabled", "disabled"
        elif row["reconnect_reason"]:
            state = "failing"
            detail = (f"needs reconnect (OAuth2): {row['reconnect_reason']};"
                      f" deskmail mailbox connect {row['id']}, or Connect in the admin web")
        elif row["failures_in_row"]:
            state = "failing"
            detail = f"{row['failures_in_row']} failed poll(s) in a row, last: {row['last_error']}"
        elif row["now"] - (row["last_poll_at"] or row["created_at"]) > overdue_after:
            # A fetcher takes a due mailbox within a second, or within a lease
            # if the last one died: longer than that, no fetcher is polling it.
            state = "stale"
            ago = int((row["now"] - (row["last_poll_at"] or row["created_at"])).total_seconds())
            detail = (f"not polled for {ago} s although due every {row['poll_interval']} s:"
                      " is a fetcher running?")
        elif row["now"] - since > stale_after:
            state = "stale"
            ago = int((row["now"] - since).total_seconds() // 60)
            detail = (f"no successful poll for {ago} min" if row["last_success_at"]
                      else f"never polled in the {ago} min since it was added: is a fetcher running?")
        elif row["last_success_at"] is None:
            state, detail = "waiting", "waiting for its first poll"
        else:
            state, detail = "ok", "ok"
        out.append(MailboxHealth(row["id"], row["address"], row["enabled"], state, detail,
                                 row["last_success_at"], needs_reconnect=bool(row["reconnect_reason"])))
    return out


def queue_health(infos: list[QueueInfo]) -> list[QueueHealth]:
    out = []
    for info in infos:
        problem = None
        if not info.exists:
            problem = "does not exist (no stage has started, or DESKMAIL_QUEUE_PREFIX differs)"
        elif info.kind == "dead" and info.messages:
            problem = f"{info.messages} dead letter(s): `deskmail dead-letters list`"
        elif info.kind == "work" and info.messages:
            if not info.consumers:
                problem = f"{info.messages} message(s) waiting and no consumer: is the {info.stage} stage running?"
            elif info.deliver_rate is not None:
                if info.deliver_rate == 0 and (info.change_rate is None or info.change_rate >= 0):
                    problem = f"{info.messages} message(s) waiting and none delivered: consumers stuck?"
            elif info.change_rate is not None and info.change_rate >= 0:
                problem = f"{info.messages} message(s) waiting and the queue did not shrink"
        out.append(QueueHealth(info, problem))
    return out


# Mail in flight (remote_messages stored or published: the ticketer marks it
# committed in the transaction that records its outcome) is waiting for the
# parser until it has a parsed form, then for the ticketer. Every lookup is a
# scalar subquery on a primary or unique key (or an EXISTS on an index),
# fenced by OFFSET 0 so that the planner probes per row instead of hashing or
# merging whole tables: the cost follows the mail in flight (about 3 ms per
# 1,000), not the mail ever received. A parsed mail with a history row (a
# request) or an unmatched_mail row (a bounce that matched no request, which
# never gets history) has its outcome and is not waiting, whatever its ledger
# state says; mail whose dead letter was discarded at the parse or ticket
# stage (discarded_events) is given up and not waiting either.
_MAIL_BACKLOG_SQL = """
SELECT count(*) FILTER (WHERE w.parsed_at IS NULL) AS parse_waiting,
       min(w.received_at) FILTER (WHERE w.parsed_at IS NULL) AS parse_oldest,
       count(*) FILTER (WHERE w.parsed_at IS NOT NULL AND NOT w.done) AS ticket_waiting,
       min(w.parsed_at) FILTER (WHERE NOT w.done) AS ticket_oldest,
       now() AS now
FROM (
    SELECT (SELECT r.received_at FROM raw_messages r WHERE r.id = rm.raw_id) AS received_at,
           (SELECT p.created_at FROM parsed_messages p WHERE p.raw_id = rm.raw_id) AS parsed_at,
           (SELECT 1 FROM history h WHERE h.raw_id = rm.raw_id) IS NOT NULL
             OR (SELECT 1 FROM unmatched_mail u WHERE u.raw_id = rm.raw_id) IS NOT NULL AS done,
           EXISTS (SELECT 1 FROM discarded_events d WHERE d.raw_id = rm.raw_id
                   AND d.stage IN ('parse', 'ticket')) AS discarded
    FROM remote_messages rm
    WHERE rm.state IN ('stored', 'published')
    OFFSET 0
) w
WHERE NOT w.discarded
"""

# Outgoing mail not yet handed over to SMTP (index outgoing_mail_unsent),
# except what was given up at the reply stage: a discarded reply.queued names
# its outgoing mail, a discarded request.created its request's auto-reply.
_REPLY_BACKLOG_SQL = """
SELECT count(*) AS waiting, min(created_at) AS oldest
FROM outgoing_mail o WHERE state IN ('pending', 'sending')
AND NOT EXISTS (SELECT 1 FROM discarded_events d WHERE d.outgoing_id = o.id AND d.stage = 'reply')
AND NOT (o.kind = 'auto_reply' AND EXISTS (
    SELECT 1 FROM discarded_events d WHERE d.request_id = o.request_id AND d.stage = 'reply'
    AND d.event_type = 'request.created'))
"""


def backlog(conn: psycopg.Connection) -> dict[str, Backlog]:
    """Per stage: how many items wait for it, and since when the oldest has waited.

    parse:  mail stored (remote_messages stored/published) without a parsed
            form; its age counts from when it was stored (raw received_at);
    ticket: parsed mail without an outcome (no history row, not in
            unmatched_mail); its age counts from when it was parsed;
    reply:  outgoing mail pending or sending (auto-replies and staff
            replies), from when it was queued (created_at).

    This is the work itself, not the queue: it includes work whose event
    waits in a retry or dead-letter queue, and mail stored but not yet
    announced. Work whose dead letter an operator discarded is not waiting
    (services/admin/dead_letters.py records each discard): mail discarded at
    the parse or ticket stage, replies discarded at the reply stage. A
    request.created not yet handled by the replier has no outgoing row yet,
    so it is not counted. Peeking at a quorum queue instead would count as a
    delivery toward its delivery limit.
    """
    mail = conn.execute(_MAIL_BACKLOG_SQL).fetchone()
    reply = conn.execute(_REPLY_BACKLOG_SQL).fetchone()
    now = mail["now"]

    def one(stage: str, waiting: int, oldest: dt.datetime | None) -> Backlog:
        age = None if oldest is None else max(0.0, (now - oldest).total_seconds())
        return Backlog(stage, int(waiting), oldest, age)

    return {
        "parse": one("parse", mail["parse_waiting"], mail["parse_oldest"]),
        "ticket": one("ticket", mail["ticket_waiting"], mail["ticket_oldest"]),
        "reply": one("reply", reply["waiting"], reply["oldest"]),
    }


def age_text(seconds: float | None) -> str:
    """3s, 4m05s, 2h10m, 3d04h: an age short enough for a table column; '-' for none."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def collect(pool: Any, broker: Connection, topology: Topology, window: float = 5.0,
            api_url: str | None = None) -> Status:
    """Mailboxes from the database, queues from the broker; a part that fails is itself a problem."""
    status = Status()
    try:
        with pool.connection(timeout=5) as conn:
            status.mailboxes = mailbox_health(conn)
            status.backlog = backlog(conn)
    except Exception as exc:  # noqa: BLE001 - report, and still show the queues
        status.errors.append(f"database: {exc}")
    try:
        status.queues = queue_health(sample_queues(broker, topology, window, api_url))
    except Exception as exc:  # noqa: BLE001 - report, and still show the mailboxes
        status.errors.append(f"broker: {exc}")
    for q in status.queues:
        if q.info.kind == "work":
            q.backlog = status.backlog.get(q.info.stage)
    return status


def _header(value: str | None) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - a broken encoded word: show it as it came
        return value


def mail_summary(conn: psycopg.Connection, raw_id: int) -> dict[str, Any] | None:
    """From, Subject, Date and mailbox of a stored raw message; None if there is no such row."""
    row = conn.execute(
        "SELECT r.id, r.mailbox_id, r.size, r.received_at, m.address AS mailbox"
        " FROM raw_messages r LEFT JOIN mailboxes m ON m.id = r.mailbox_id WHERE r.id = %s",
        (raw_id,),
    ).fetchone()
    if row is None:
        return None
    head = conn.execute(
        "SELECT substring(data FROM 1 FOR 65536) AS head FROM raw_messages WHERE id = %s", (raw_id,)
    ).fetchone()["head"]
    headers = BytesHeaderParser().parsebytes(bytes(head))
    return {
        "raw_id": row["id"],
        "mailbox_id": row["mailbox_id"],
        "mailbox": row["mailbox"],
        "from": _header(headers.get("From")),
        "subject": _header(headers.get("Subject")),
        "date": _header(headers.get("Date")),
        "message_id": _header(headers.get("Message-ID")),
        "size": row["size"],
        "received_at": row["received_at"],
    }
