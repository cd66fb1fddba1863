"""`deskmail queues`, `deskmail dead-letters ...` and `deskmail status`: what an operator runs.

The logic lives in shared/broker_admin.py, services/admin/status.py and
services/admin/dead_letters.py (a purge needs --reason and is recorded); this
module only parses arguments and prints. Rates need the RabbitMQ management
API: set DESKMAIL_RABBITMQ_API (http://user:password@host:15672). The age of
the oldest work waiting for a stage comes from the database (status.backlog).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

import psycopg
from kombu.exceptions import OperationalError

from services.admin import dead_letters as dead_letter_admin
from services.admin import status as ops_status
from services.app import App
from shared import broker_admin
from shared.broker_admin import DeadLetter, QueueInfo, QueueMissing
from shared.mailboxes import InvalidSetting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("queues", help="depth, consumers and rates of every queue")
    p.add_argument("--window", type=float, default=2.0,
                   help="seconds to watch depths for the net change per second (0: no sampling)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queues)

    p = sub.add_parser("dead-letters", help="list, show, replay or purge dead-lettered messages")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = dsub.add_parser("list", help="every dead letter with its stage, time and error")
    a.add_argument("--stage", help="only this stage's dead letters (parse, ticket, reply)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_dead_list)
    a = dsub.add_parser("show", help="one dead letter: headers, event and the mail it concerns")
    a.add_argument("id", help="the id from `list` (a unique prefix is enough)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_dead_show)
    for action, func, verb in (("replay", cmd_dead_replay, "send back to their stage's queue"),
                               ("purge", cmd_dead_purge, "delete for good, recording why")):
        a = dsub.add_parser(action, help=f"{verb}: the given ids, or --all")
        a.add_argument("ids", nargs="*", help="ids from `list` (unique prefixes are enough)")
        a.add_argument("--all", action="store_true", help="every dead letter (of --stage, if given)")
        a.add_argument("--stage", help="only this stage's dead letters")
        if action == "purge":
            a.add_argument("--reason", required=True,
                           help="why they are given up; recorded with each (`deskmail dead-letters discarded`)")
        a.set_defaults(func=func)
    a = dsub.add_parser("discarded", help="the dead letters discarded so far: what, when, by whom and why")
    a.add_argument("--limit", type=int, default=50, help="the most recent N (default 50)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_dead_discarded)

    p = sub.add_parser("status", help="mailboxes and queues at a glance; exit 1 if something needs attention")
    p.add_argument("--window", type=float, default=5.0,
                   help="seconds to watch the queues to judge whether they drain (default 5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


# -- queues -------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _queue_row(info: QueueInfo, backlog: ops_status.Backlog | None = None) -> dict[str, Any]:
    row = {k: getattr(info, k) for k in ("name", "stage", "kind", "messages", "consumers", "unacked",
                                         "publish_rate", "deliver_rate", "change_rate")}
    if info.kind == "work":
        row["waiting"] = backlog.waiting if backlog else None
        row["oldest_age_seconds"] = backlog.oldest_age_seconds if backlog else None
    return row


def _backlog(app: App) -> tuple[dict[str, ops_status.Backlog], str | None]:
    """The ledger's backlog per stage, or why it could not be read (the queues still show)."""
    try:
        with app.pool.connection(timeout=5) as db:
            return ops_status.backlog(db), None
    except Exception as exc:  # noqa: BLE001 - the database is down: say so, show the broker's view
        return {}, f"database: {exc}"


def cmd_queues(args: argparse.Namespace) -> int:
    app = App.from_env()
    try:
        with app.broker() as conn:
            infos = broker_admin.sample_queues(conn, app.topology, args.window, app.settings.rabbitmq_api)
    except (OperationalError, ConnectionError) as exc:
        return _fail(f"cannot reach the broker: {exc}")
    backlog, db_error = _backlog(app)
    if args.json:
        print(json.dumps([_queue_row(i, backlog.get(i.stage)) for i in infos], indent=2))
        return 0
    print(f"{'QUEUE':40} {'READY':>7} {'CONSUMERS':>9} {'IN/s':>7} {'OUT/s':>7} {'CHANGE/s':>9} {'OLDEST':>8}")
    for info in infos:
        backlog_of = backlog.get(info.stage) if info.kind == "work" else None
        oldest = ops_status.age_text(backlog_of.oldest_age_seconds) if backlog_of else ""
        if not info.exists:  # the work may wait all the same: show its age
            print(f"{info.name:40} {'(missing)':>7} {'':>9} {'':>7} {'':>7} {'':>9} {oldest:>8}".rstrip())
            continue
        print(f"{info.name:40} {info.messages:>7} {info.consumers:>9} {_rate(info.publish_rate):>7}"
              f" {_rate(info.deliver_rate):>7} {_rate(info.change_rate):>9} {oldest:>8}")
    print("\nOLDEST: age of the oldest work waiting for the stage, from the database"
          " (retries and dead letters included).")
    if db_error:
        print(f"OLDEST unknown: {db_error}")
    if app.settings.rabbitmq_api is None:
        print("IN/s and OUT/s need the management API (DESKMAIL_RABBITMQ_API);"
              " CHANGE/s is the net change of the depth while watching.")
    return 0


# -- dead letters -------------------------------------------------------------


def _letter_row(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "stage": letter.stage,
        "queue": letter.queue,
        "failed_at": letter.failed_at,
        "error": letter.error,
        "event": {"type": letter.event.type, "ids": letter.event.ids} if letter.event else None,
        "event_error": letter.event_error,
    }


def _event_text(letter: DeadLetter) -> str:
    if letter.event is None:
        return f"(unreadable: {letter.event_error})"
    ids = " ".join(f"{k}={v}" for k, v in letter.event.ids.items())
    return f"{letter.event.type} {ids}"


def cmd_dead_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    try:
        with app.broker() as conn:
            letters = broker_admin.list_dead_letters(conn, app.topology, args.stage)
    except (QueueMissing, ValueError, OperationalError, ConnectionError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps([_letter_row(x) for x in letters], indent=2, default=str))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    print(f"{'ID':12}  {'STAGE':6}  {'FAILED AT':20}  {'EVENT':40}  ERROR")
    for x in letters:
        print(f"{x.id:12}  {x.stage:6}  {x.failed_at:20}  {_event_text(x)[:40]:40}  {x.error[:120]}")
    print(f"\n{len(letters)} dead letter(s). `deskmail dead-letters show ID` for details;"
          " fix the cause, then `deskmail dead-letters replay ID` (or --all).")
    return 0


def cmd_dead_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    try:
        with app.broker() as conn:
            letter = broker_admin.find_dead_letter(conn, app.topology, args.id)
    except (QueueMissing, OperationalError, ConnectionError) as exc:
        return _fail(str(exc))
    if letter is None:
        return _fail(f"no dead letter with id {args.id!r} (`deskmail dead-letters list` shows them)")
    mail = None
    if letter.event is not None and "raw_id" in letter.event.ids:
        with app.pool.connection() as db:
            mail = ops_status.mail_summary(db, letter.event.ids["raw_id"])
    if args.json:
        row = _letter_row(letter)
        row["headers"] = letter.headers
        row["mail"] = mail
        print(json.dumps(row, indent=2, default=str))
        return 0
    print(f"id          {letter.id}")
    print(f"queue       {letter.queue}  (replay sends it to stage {letter.stage!r})")
    print(f"event       {_event_text(letter)}")
    print("headers")
    for key, value in sorted(letter.headers.items()):
        print(f"  {key}: {value}")
    if letter.event is not None and "raw_id" in letter.event.ids:
        if mail is None:
            print(f"mail        raw message {letter.event.ids['raw_id']} is not in the database")
        else:
            print(f"mail        raw message {mail['raw_id']} of mailbox {mail['mailbox_id']} ({mail['mailbox']})")
            for key in ("from", "subject", "date", "message_id"):
                print(f"  {key}: {mail[key]}")
    return 0


def _choose(args: argparse.Namespace) -> list[str] | None | int:
    if args.all and args.ids:
        return _fail("give ids or --all, not both")
    if not args.all and not args.ids:
        return _fail("give the ids to act on (from `deskmail dead-letters list`), or --all")
    return None if args.all else list(args.ids)


def cmd_dead_replay(args: argparse.Namespace) -> int:
    ids = _choose(args)
    if isinstance(ids, int):
        return ids
    app = App.from_env()
    try:
        with app.broker() as conn, app.broker() as publish_conn:
            done = broker_admin.replay(conn, publish_conn, app.topology, ids, args.stage)
    except (QueueMissing, ValueError, OperationalError, ConnectionError) as exc:
        return _fail(str(exc))
    for letter in done:
        print(f"replayed {letter.id} to {letter.stage}: {_event_text(letter)}")
    print(f"{len(done)} dead letter(s) replayed")
    return 0 if done or ids is None else 1


def _operator() -> str:
    try:
        return f"{getpass.getuser()} (cli)"
    except Exception:  # noqa: BLE001 - no login name (a container without a passwd entry)
        return "(cli)"


def cmd_dead_purge(args: argparse.Namespace) -> int:
    ids = _choose(args)
    if isinstance(ids, int):
        return ids
    try:
        dead_letter_admin.check_reason(args.reason)
    except InvalidSetting as exc:
        return _fail(f"--reason {exc.errors['reason']}")
    app = App.from_env()
    try:
        with app.broker() as conn:
            done = dead_letter_admin.discard(app.pool, conn, app.topology, ids, args.stage,
                                             args.reason, _operator())
    except (QueueMissing, ValueError, OperationalError, ConnectionError, psycopg.Error) as exc:
        return _fail(str(exc))
    for letter in done:
        print(f"purged {letter.id} ({letter.stage}): {_event_text(letter)}")
    if done:
        print(f"{len(done)} dead letter(s) purged, each recorded with the reason"
              " (`deskmail dead-letters discarded`)")
    else:
        print("0 dead letter(s) purged")
    return 0 if done or ids is None else 1


def cmd_dead_discarded(args: argparse.Namespace) -> int:
    app = App.from_env()
    try:
        with app.pool.connection(timeout=5) as db:
            rows = dead_letter_admin.discarded(db, max(1, args.limit))
    except Exception as exc:  # noqa: BLE001 - the database is down: say so in plain words
        return _fail(f"database: {exc}")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no dead letters discarded")
        return 0
    print(f"{'DISCARDED AT':19}  {'ID':12}  {'STAGE':6}  {'EVENT':40}  {'BY':20}  REASON")
    for r in rows:
        ids = " ".join(f"{k}={v}" for k, v in (r["event_ids"] or {}).items())
        event = f"{r['event_type'] or '(unreadable)'} {ids}"
        mark = "" if r["confirmed_at"] else "  [removal not confirmed: see `deskmail dead-letters list`]"
        print(f"{r['discarded_at']:%Y-%m-%d %H:%M:%S}  {r['letter_id']:12}  {r['stage']:6}  {event[:40]:40}"
              f"  {(r['discarded_by'] or '-')[:20]:20}  {r['reason']}{mark}")
    return 0


# -- status -------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.broker() as conn:
        status = ops_status.collect(_LazyPool(app), conn, app.topology, args.window, app.settings.rabbitmq_api)
    if args.json:
        print(json.dumps({
            "needs_attention": status.needs_attention,
            "problems": status.problems,
            "mailboxes": [m.__dict__ for m in status.mailboxes],
            "queues": [{**_queue_row(q.info, q.backlog), "problem": q.problem} for q in status.queues],
        }, indent=2, default=str))
        return 1 if status.needs_attention else 0
    print("MAILBOXES")
    if not status.mailboxes:
        print("  (none)")
    for m in status.mailboxes:
        last = m.last_success_at.strftime("%Y-%m-%d %H:%M:%S") if m.last_success_at else "never"
        print(f"  {'!!' if m.needs_attention else 'ok'}  {m.id:>3} {m.address:32} last success {last:19}  {m.detail}")
    print("QUEUES")
    for q in status.queues:
        info = q.info
        shown = "(missing)" if not info.exists else f"{info.messages} ready, {info.consumers} consumer(s)"
        waiting = ""
        if q.backlog is not None:
            waiting = f"{q.backlog.waiting} waiting"
            if q.backlog.oldest_age_seconds is not None:
                waiting += f", oldest {ops_status.age_text(q.backlog.oldest_age_seconds)}"
        print(f"  {'!!' if q.needs_attention else 'ok'}  {info.name:36} {shown:28} {waiting:26} {q.problem or ''}")
    for error in status.errors:
        print(f"!! {error}")
    print("\nneeds attention:" if status.needs_attention else "\nall well")
    for problem in status.problems:
        print(f"  - {problem}")
    return 1 if status.needs_attention else 0


class _LazyPool:
    """App.pool on first use, so that an unreachable database is reported, not raised."""

    def __init__(self, app: App) -> None:
        self.app = app

    def connection(self, timeout: float = 5.0) -> Any:
        return self.app.pool.connection(timeout=timeout)
