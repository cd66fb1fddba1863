"""`deskmail requests reply ID --agent NAME`: a public staff reply to a request's customer.

The reply is committed as pending outgoing mail first, then announced to the
replier (reply.queued). If the announcement fails, or Deskmail runs embedded
in another process, the replier's sweep finds the pending reply and sends it
anyway (services/replier/outbox.py), so a reply once queued is not lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.app import App
from shared.db import transaction
from shared.staff_replies import ReplyRefused, announce, queue_staff_reply


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `reply` under `requests` (register after services.cli.requests)."""
    requests_parser = sub.choices["requests"]
    actions = [a for a in requests_parser._actions if isinstance(a, argparse._SubParsersAction)]
    a = actions[0].add_parser("reply", help="send a staff reply to the request's customer")
    a.add_argument("id", type=int)
    a.add_argument("--agent", required=True, help="the agent's name, shown as the sender")
    body = a.add_mutually_exclusive_group()
    body.add_argument("--body", help="the reply's text")
    body.add_argument("--file", type=Path, help="read the reply's text from this file")
    a.set_defaults(func=cmd_reply)


def cmd_reply(args: argparse.Namespace) -> int:
    if args.body is not None:
        text = args.body
    elif args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        if sys.stdin.isatty():
            print("Type the reply; end with Ctrl-D.", file=sys.stderr)
        text = sys.stdin.read()
    app = App.from_env()
    try:
        with transaction(app.pool) as conn:
            outgoing_id = queue_staff_reply(conn, args.id, args.agent, text)
    except (ReplyRefused, LookupError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    if app.settings.embedded:
        print(f"reply {outgoing_id} queued; the running Deskmail sends it within seconds")
        return 0
    try:
        announce(app.settings, app.topology, [(args.id, outgoing_id)])
    except Exception as exc:  # noqa: BLE001 - the reply is safe in the database
        print(f"reply {outgoing_id} queued, but the replier could not be told at once ({exc});"
              " its sweep sends it within a minute or two", file=sys.stderr)
        return 0
    print(f"reply {outgoing_id} queued; `deskmail requests show {args.id}` shows when it is sent")
    return 0
