"""What an operator watches and acts on: status, queues and dead letters, for every front end.

The rules live beside this module (status.py: what needs attention;
dead_letters.py: a discard is recorded before the broker removes it) and
in shared/broker_admin.py (looking into the broker). These functions take
the App (its pool, broker, topology and settings) and return plain dicts:

    status(app)          per queue: depth, consumers, work waiting and its age, the problem;
                         per mailbox: its health; needs_attention and the problems in words
    queues(app)          depth, consumers and rates per queue, with the age of the oldest work
    dead_letters(app)    the letters waiting, oldest first; dead_letter(app, id) one in full
    replay(app, ...)     back to their stage; discard(app, ...) given up, with a reason, recorded
    discarded(conn)      the record of discards, newest first

A broker that does not answer raises Unavailable (status reports it instead).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import psycopg
from kombu import Connection

from services.admin import dead_letters as discards
from services.admin import status as rules
from services.admin.errors import InvalidSetting, NotFound, Unavailable
from shared import broker_admin
from shared.broker_admin import DeadLetter, QueueMissing
from shared.spam.health import SpamCheckHealth, spam_check_health

if TYPE_CHECKING:
    from services.app import App

RATES = ("unacked", "publish_rate", "deliver_rate", "change_rate")


@contextmanager
def broker(app: App) -> Iterator[Connection]:
    """A broker connection that answers, or Unavailable."""
    with app.broker() as conn:
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=5)
        except Exception as exc:  # noqa: BLE001 - kombu raises several kinds for "down"
            raise Unavailable(f"the message broker does not answer: {exc}") from exc
        yield conn


def check_stage(stage: Any) -> str | None:
    if stage in (None, ""):
        return None
    if stage not in broker_admin.STAGES:
        raise InvalidSetting({"stage": f"must be one of {', '.join(broker_admin.STAGES)}, not {stage!r}"})
    return str(stage)


def _age(failed_at: str) -> float | None:
    try:
        when = dt.datetime.strptime(failed_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return max(0.0, (dt.datetime.now(dt.UTC) - when).total_seconds())


def _queue(q: rules.QueueHealth, oldest_letter: dict[str, float]) -> dict[str, Any]:
    info = q.info
    return {"name": info.name, "stage": info.stage, "kind": info.kind, "messages": info.messages,
            "consumers": info.consumers, **{k: getattr(info, k) for k in RATES},
            "waiting": q.backlog.waiting if q.backlog else None,
            "oldest_age_seconds": q.backlog.oldest_age_seconds if q.backlog else oldest_letter.get(info.name),
            "problem": q.problem}


class _LazyPool:
    """app.pool on first use, so that an unreachable database is reported, not raised."""

    def __init__(self, app: App) -> None:
        self.app = app

    def connection(self, timeout: float = 5.0) -> Any:
        return self.app.pool.connection(timeout=timeout)


def status(app: App, window: float = 0.0) -> dict[str, Any]:
    """Queues (depth, consumers, work waiting and its age, oldest dead letter) and mailbox health.

    A work queue's age is its stage's backlog in the database (status.backlog);
    a dead-letter queue's is its oldest letter's failed-at header. A part that
    cannot be checked (database, broker) is itself one of the problems.
    """
    with app.broker() as conn:
        found = rules.collect(_LazyPool(app), conn, app.topology, window, app.settings.rabbitmq_api)
        oldest: dict[str, float] = {}
        if any(q.info.kind == "dead" and q.info.messages for q in found.queues):
            for letter in broker_admin.list_dead_letters(conn, app.topology, limit=500):
                age = _age(letter.failed_at)
                if age is not None:
                    oldest[letter.queue] = max(age, oldest.get(letter.queue, 0.0))
    problems = list(found.problems)
    spam_check = _spam_check(app)
    if spam_check is not None and spam_check.needs_attention:
        problems.append(spam_check.describe())
    return {
        "needs_attention": found.needs_attention or bool(spam_check and spam_check.needs_attention),
        "problems": problems,
        "queues": [_queue(q, oldest) for q in found.queues],
        "mailboxes": [asdict(m) for m in found.mailboxes],
    }


def _spam_check(app: App) -> SpamCheckHealth | None:
    """rspamd's share of the status: mail it did not check lately (None: the database did not answer;
    that is a problem of its own already)."""
    try:
        with app.pool.connection(timeout=5) as conn:
            return spam_check_health(conn, configured=app.settings.rspamd_url is not None)
    except Exception:  # noqa: BLE001 - the database's own problem is reported by collect
        return None


def queues(app: App, window: float = 2.0) -> dict[str, Any]:
    """{"queues": [...], "backlog_error": why the database's figures are missing, or None}."""
    with broker(app) as conn:
        infos = broker_admin.sample_queues(conn, app.topology, window, app.settings.rabbitmq_api)
    backlog: dict[str, rules.Backlog] = {}
    error = None
    try:
        with app.pool.connection(timeout=5) as db:
            backlog = rules.backlog(db)
    except Exception as exc:  # noqa: BLE001 - the database is down: say so, show the broker's view
        error = f"database: {exc}"
    rows = []
    for info in infos:
        row = {k: getattr(info, k) for k in ("name", "stage", "kind", "messages", "consumers", *RATES)}
        if info.kind == "work":
            found = backlog.get(info.stage)
            row["waiting"] = found.waiting if found else None
            row["oldest_age_seconds"] = found.oldest_age_seconds if found else None
        rows.append(row)
    return {"queues": rows, "backlog_error": error}


def _letter(letter: DeadLetter) -> dict[str, Any]:
    return {"id": letter.id, "stage": letter.stage, "queue": letter.queue, "failed_at": letter.failed_at,
            "error": letter.error, "event_type": letter.event.type if letter.event else None,
            "ids": dict(letter.event.ids) if letter.event else {}, "event_error": letter.event_error}


def dead_letters(app: App, stage: Any = None, limit: int | None = 200) -> list[dict[str, Any]]:
    """The dead letters waiting, per stage, oldest first; nothing leaves its queue."""
    chosen = check_stage(stage)
    with broker(app) as conn:
        try:
            return [_letter(x) for x in broker_admin.list_dead_letters(conn, app.topology, chosen, limit)]
        except QueueMissing as exc:
            raise NotFound(str(exc)) from None


def dead_letter(app: App, letter_id: str) -> dict[str, Any]:
    """One dead letter (a unique prefix of its id is enough) with its headers and the mail it concerns.

    mail: From, Subject, Date and mailbox of its raw message, None when the
    event names none, {"missing": raw_id} when the raw message is not stored.
    """
    with broker(app) as conn:
        letter = broker_admin.find_dead_letter(conn, app.topology, letter_id)
    if letter is None:
        raise NotFound(f"no dead letter with id {letter_id!r} (`deskmail dead-letters list` shows them)")
    out = {**_letter(letter), "headers": letter.headers, "mail": None}
    raw_id = letter.event.ids.get("raw_id") if letter.event else None
    if raw_id is not None:
        with app.pool.connection() as db:
            out["mail"] = rules.mail_summary(db, raw_id) or {"missing": raw_id}
    return out


def replay(app: App, ids: list[str] | None, stage: Any = None) -> dict[str, Any]:
    """Send dead letters (those whose id starts with one of `ids`, or all of `stage`) back to their stage.

    {"count", "ids", "letters"}; NotFound when ids were given and none matched.
    """
    chosen = check_stage(stage)
    _check_ids(ids)
    with broker(app) as conn, broker(app) as publish_conn:
        try:
            done = broker_admin.replay(conn, publish_conn, app.topology, ids, chosen)
        except QueueMissing as exc:
            raise NotFound(str(exc)) from None
    return _handled(done, ids)


def discard(app: App, ids: list[str] | None, stage: Any, reason: Any, by: str) -> dict[str, Any]:
    """Give dead letters up for good, recorded with the reason and who (before the broker removes them)."""
    discards.check_reason(reason)  # before touching the broker: the same words everywhere
    chosen = check_stage(stage)
    _check_ids(ids)
    with broker(app) as conn:
        try:
            done = discards.discard(app.pool, conn, app.topology, ids, chosen, reason, by)
        except QueueMissing as exc:
            raise NotFound(str(exc)) from None
    return _handled(done, ids)


def _check_ids(ids: Any) -> None:
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids)):
        raise InvalidSetting({"ids": "must be a list of dead-letter ids"})


def _handled(done: list[DeadLetter], ids: list[str] | None) -> dict[str, Any]:
    if ids is not None and not done:
        raise NotFound(f"no dead letter {', '.join(ids)} (`deskmail dead-letters list` shows them)")
    return {"count": len(done), "ids": [x.id for x in done], "letters": [_letter(x) for x in done]}


def discarded(conn: psycopg.Connection, limit: Any = 50) -> list[dict[str, Any]]:
    """Dead letters discarded so far, newest first: what, when, by whom and why."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidSetting({"limit": f"must be between 1 and 1000, not {limit!r}"})
    return discards.discarded(conn, limit)


def check_database(pool: Any) -> None:
    """Raise if the database does not answer within two seconds (the web's /readyz)."""
    with pool.connection(timeout=2) as conn:
        conn.execute("SELECT 1")


# ---- the demo's figures ------------------------------------------------------------


def unfinished(conn: psycopg.Connection, mailbox_id: int) -> int:
    """Mail of the mailbox not yet archived, plus outgoing mail not yet sent: 0 when all is done."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM remote_messages WHERE mailbox_id = %(m)s AND state <> 'archived')"
        " + (SELECT count(*) FROM outgoing_mail WHERE state IN ('pending', 'sending')) AS n",
        {"m": mailbox_id}).fetchone()
    return int(row["n"])


def outgoing_summary(conn: psycopg.Connection) -> dict[str, Any]:
    """{"sent": how many mails went out, "skipped": [{"to_address", "reason"}]}."""
    sent = conn.execute("SELECT count(*) AS n FROM outgoing_mail WHERE state = 'sent'").fetchone()["n"]
    skipped = conn.execute("SELECT to_address, reason FROM outgoing_mail WHERE state = 'skipped'"
                           " ORDER BY id").fetchall()
    return {"sent": int(sent), "skipped": skipped}
