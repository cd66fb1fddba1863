"""`deskmail requests reply ID --agent NAME [--cc ADDRESS]... [--no-cc] [--preview]`: a staff reply.

It goes to the request's customer with the conversation's other people in Cc
(or the --cc addresses, or nobody with --no-cc); --preview prints it as it
would be sent and queues nothing.

services/admin/replies.py queues it (committed as pending outgoing mail) and
announces it to the replier. If the announcement fails, or Deskmail runs
embedded in another process, the replier's sweep finds the pending reply and
sends it anyway, so a reply once queued is not lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.admin import replies
from services.app import App
from shared.db import transaction


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
    copies = a.add_mutually_exclusive_group()
    copies.add_argument("--cc", action="append", metavar="ADDRESS",
                        help="copy this address (repeat for more); default: the conversation's other people")
    copies.add_argument("--no-cc", action="store_true", help="send to the customer alone")
    a.add_argument("--preview", action="store_true", help="print the reply as it would be sent; queue nothing")
    a.set_defaults(func=cmd_reply)


def _text(args: argparse.Namespace) -> str | None:
    if args.body is not None:
        return args.body
    if args.file is not None:
        try:
            return args.file.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return None
    if sys.stdin.isatty():
        print("Type the reply; end with Ctrl-D.", file=sys.stderr)
    return sys.stdin.read()


def cmd_reply(args: argparse.Namespace) -> int:
    text = _text(args)
    if text is None:
        return 1
    values = {"agent": args.agent, "body": text}
    if args.cc or args.no_cc:
        values["cc"] = [] if args.no_cc else args.cc
    app = App.from_env()
    if args.preview:
        with transaction(app.pool) as conn:
            shown = replies.preview(conn, args.id, values)
        print(f"From: {shown['from']}\nTo: {shown['to']}" + (f"\nCc: {', '.join(shown['cc'])}" if shown["cc"] else "")
              + f"\nSubject: {shown['subject']}\n\n{shown['body_text']}")
        return 0
    with transaction(app.pool) as conn:
        queued = replies.send(conn, args.id, values)
    outgoing_id = queued["outgoing_id"]
    copied = f" (Cc {', '.join(queued['cc'])})" if queued["cc"] else ""
    if app.settings.embedded:  # the running Deskmail's in-memory broker is not this process's
        print(f"reply {outgoing_id} to {queued['to']}{copied} queued; the running Deskmail sends it within seconds")
        return 0
    problem = replies.announce(app, args.id, outgoing_id)
    if problem:
        print(f"reply {outgoing_id} queued, but {problem}", file=sys.stderr)
        return 0
    print(f"reply {outgoing_id} to {queued['to']}{copied} queued; `deskmail requests show {args.id}`"
          " shows when it is sent")
    return 0
