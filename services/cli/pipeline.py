"""Running Deskmail: `run`, one stage, `migrate`, `parse`, and the bundled `demo`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services import runner
from services.app import App
from services.stages import STAGES
from shared import db


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run all four stages in one process")
    p.set_defaults(func=cmd_run)
    for stage in STAGES:
        p = sub.add_parser(stage, help=f"run the {stage} stage")
        p.set_defaults(func=cmd_stage, stage=stage)
    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("parse", help="parse a mail file and print the result")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON (for tools)")
    p.set_defaults(func=cmd_parse)
    p = sub.add_parser("demo", help="import the bundled sample mails into requests and print them")
    p.add_argument("--maildir", type=Path, help="a Maildir to import instead of the bundled samples")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=cmd_demo)


def cmd_run(args: argparse.Namespace) -> int:
    app = App.from_env()
    # The admin web joins the one-process mode unless DESKMAIL_WEB=0.
    runner.run(app, [*STAGES, *(["web"] if app.settings.web_enabled else [])])
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    runner.run(App.from_env(), [args.stage])
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    app = App.from_env()
    applied = db.migrate(app.database_url)
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from services.parser.cli import parse_command

    return parse_command(args.file, args.json)


def cmd_demo(args: argparse.Namespace) -> int:

    from services.cli.demo import run_demo

    # The demo prints its own summary; the stages' log lines only on request.
    os.environ.setdefault("DESKMAIL_LOG_LEVEL", "WARNING")
    return run_demo(App.from_env(), args.maildir, args.timeout)
