"""`deskmail queues`, `deskmail dead-letters ...` and `deskmail status`: what an operator runs.

Through services/admin/operations.py, like the API and the status page (a
purge needs --reason and is recorded); this module only parses arguments and
prints. Rates need the RabbitMQ management API: set DESKMAIL_RABBITMQ_API
(http://user:password@host:15672). The age of the oldest work waiting for a
stage comes from the database (status.backlog).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from services.admin import operations
from services.admin.errors import InvalidSetting
from services.admin.status import age_text
from services.app import App


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


def cmd_queues(args: argparse.Namespace) -> int:
    app = App.from_env()
    found = operations.queues(app, args.window)
    if args.json:
        print(json.dumps(found["queues"], indent=2))
        return 0
    print(f"{'QUEUE':40} {'READY':>7} {'CONSUMERS':>9} {'IN/s':>7} {'OUT/s':>7} {'CHANGE/s':>9} {'OLDEST':>8}")
    for q in found["queues"]:
        oldest = age_text(q["oldest_age_seconds"]) if q.get("waiting") is not None else ""
        if q["messages"] is None:  # the work may wait all the same: show its age
            print(f"{q['name']:40} {'(missing)':>7} {'':>9} {'':>7} {'':>7} {'':>9} {oldest:>8}".rstrip())
            continue
        print(f"{q['name']:40} {q['messages']:>7} {q['consumers']:>9} {_rate(q['publish_rate']):>7}"
              f" {_rate(q['deliver_rate']):>7} {_rate(q['change_rate']):>9} {oldest:>8}")
    print("\nOLDEST: age of the oldest work waiting for the stage, from the database"
          " (retries and dead letters included).")
    if found["backlog_error"]:
        print(f"OLDEST unknown: {found['backlog_error']}")
    if app.settings.rabbitmq_api is None:
        print("IN/s and OUT/s need the management API (DESKMAIL_RABBITMQ_API);"
              " CHANGE/s is the net change of the depth while watching.")
    return 0


# -- dead letters -------------------------------------------------------------


def _letter_row(letter: dict[str, Any]) -> dict[str, Any]:
    """The letter as `--json` has always printed it: its event as {"type", "ids"}."""
    row = {k: letter[k] for k in ("id", "stage", "queue", "failed_at", "error")}
    row["event"] = {"type": letter["event_type"], "ids": letter["ids"]} if letter["event_type"] else None
    row["event_error"] = letter["event_error"]
    return row


def _event_text(letter: dict[str, Any]) -> str:
    if letter["event_type"] is None:
        return f"(unreadable: {letter['event_error']})"
    ids = " ".join(f"{k}={v}" for k, v in letter["ids"].items())
    return f"{letter['event_type']} {ids}"


def cmd_dead_list(args: argparse.Namespace) -> int:
    letters = operations.dead_letters(App.from_env(), args.stage, limit=None)
    if args.json:
        print(json.dumps([_letter_row(x) for x in letters], indent=2, default=str))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    print(f"{'ID':12}  {'STAGE':6}  {'FAILED AT':20}  {'EVENT':40}  ERROR")
    for x in letters:
        print(f"{x['id']:12}  {x['stage']:6}  {x['failed_at']:20}  {_event_text(x)[:40]:40}  {x['error'][:120]}")
    print(f"\n{len(letters)} dead letter(s). `deskmail dead-letters show ID` for details;"
          " fix the cause, then `deskmail dead-letters replay ID` (or --all).")
    return 0


def cmd_dead_show(args: argparse.Namespace) -> int:
    letter = operations.dead_letter(App.from_env(), args.id)
    mail = letter["mail"]
    if args.json:
        print(json.dumps({**_letter_row(letter), "headers": letter["headers"],
                          "mail": None if mail is None or "missing" in mail else mail}, indent=2, default=str))
        return 0
    print(f"id          {letter['id']}")
    print(f"queue       {letter['queue']}  (replay sends it to stage {letter['stage']!r})")
    print(f"event       {_event_text(letter)}")
    print("headers")
    for key, value in sorted(letter["headers"].items()):
        print(f"  {key}: {value}")
    if mail is not None and "missing" in mail:
        print(f"mail        raw message {mail['missing']} is not in the database")
    elif mail is not None:
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
    done = operations.replay(App.from_env(), ids, args.stage)
    for letter in done["letters"]:
        print(f"replayed {letter['id']} to {letter['stage']}: {_event_text(letter)}")
    print(f"{done['count']} dead letter(s) replayed")
    return 0


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
        done = operations.discard(App.from_env(), ids, args.stage, args.reason, _operator())
    except InvalidSetting as exc:
        if "reason" in exc.errors:
            return _fail(f"--reason {exc.errors['reason']}")
        raise
    for letter in done["letters"]:
        print(f"purged {letter['id']} ({letter['stage']}): {_event_text(letter)}")
    if done["count"]:
        print(f"{done['count']} dead letter(s) purged, each recorded with the reason"
              " (`deskmail dead-letters discarded`)")
    else:
        print("0 dead letter(s) purged")
    return 0


def cmd_dead_discarded(args: argparse.Namespace) -> int:
    app = App.from_env()
    try:
        with app.pool.connection(timeout=5) as db:
            rows = operations.discarded(db, max(1, min(args.limit, 1000)))
    except InvalidSetting:
        raise
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
    status = operations.status(App.from_env(), args.window)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 1 if status["needs_attention"] else 0
    print("MAILBOXES")
    if not status["mailboxes"]:
        print("  (none)")
    for m in status["mailboxes"]:
        last = m["last_success_at"].strftime("%Y-%m-%d %H:%M:%S") if m["last_success_at"] else "never"
        flag = "!!" if m["state"] in ("failing", "stale") else "ok"
        print(f"  {flag}  {m['id']:>3} {m['address']:32} last success {last:19}  {m['detail']}")
    print("QUEUES")
    for q in status["queues"]:
        shown = "(missing)" if q["messages"] is None else f"{q['messages']} ready, {q['consumers']} consumer(s)"
        waiting = ""
        if q["waiting"] is not None and q["kind"] == "work":
            waiting = f"{q['waiting']} waiting"
            if q["oldest_age_seconds"] is not None:
                waiting += f", oldest {age_text(q['oldest_age_seconds'])}"
        print(f"  {'!!' if q['problem'] else 'ok'}  {q['name']:36} {shown:28} {waiting:26} {q['problem'] or ''}")
    print("\nneeds attention:" if status["needs_attention"] else "\nall well")
    for problem in status["problems"]:
        print(f"  - {problem}")
    return 1 if status["needs_attention"] else 0
