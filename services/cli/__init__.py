"""The `deskmail` command: one sub-command per stage, plus what an operator needs."""

from __future__ import annotations

import argparse
import sys

from services.cli import mailbox, ops, pipeline, requests, web
from services.cli import reply as reply_cli
from services.cli import smtp as smtp_cli
from services.cli import templates as templates_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deskmail", description="Help-desk mail intake.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pipeline.register(sub)
    mailbox.register(sub)
    requests.register(sub)
    web.register(sub)
    reply_cli.register(sub)  # adds `requests reply`: after requests
    smtp_cli.register(sub)
    templates_cli.register(sub)
    ops.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
