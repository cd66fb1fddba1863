"""The `deskmail` command: one sub-command per stage, plus what an operator needs.

Every command that changes or shows Deskmail's settings and requests is a
thin adapter over services/admin: parse the arguments, call the admin
function, print. Its errors are printed here, the same way for every command:

    InvalidSetting  "error: <field>: <message>" per field, exit 2
    NotFound, Conflict, other LookupError  "error: <message>", exit 1
    Unavailable     "error: <message>", exit 2
"""

from __future__ import annotations

import argparse
import sys

from services.admin.errors import Conflict, InvalidSetting, Unavailable
from services.cli import categories, mailbox, ops, pipeline, requests, spam, web
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
    categories.register(sub)
    spam.register(sub)
    ops.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except InvalidSetting as exc:
        for field, message in exc.errors.items():
            print(f"error: {field}: {message}", file=sys.stderr)
        return 2
    except (LookupError, Conflict) as exc:  # NotFound is a LookupError
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    except Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
