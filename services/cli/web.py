"""`deskmail web` serves the admin web and API; `deskmail admin ...` manages who may use them."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from services import runner
from services.admin import users
from services.admin.errors import InvalidSetting
from services.app import App
from shared.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="serve the admin web and HTTP API (DESKMAIL_WEB_HOST, DESKMAIL_WEB_PORT)")
    p.set_defaults(func=cmd_web)
    p = sub.add_parser("admin", help="administrators of the web and API: users and API tokens")
    asub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = asub.add_parser("create-user", help="add an administrator (the first one, or another)")
    a.add_argument("username")
    a.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input (else DESKMAIL_ADMIN_PASSWORD, else a prompt)")
    a.set_defaults(func=cmd_create_user)
    a = asub.add_parser("create-token", help="make a bearer token for API clients (shown once)")
    a.add_argument("username")
    a.add_argument("--name", default="api", help="what the token is for, e.g. 'monitoring'")
    a.set_defaults(func=cmd_create_token)


def cmd_web(args: argparse.Namespace) -> int:
    runner.run(App.from_env(), ["web"])
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("DESKMAIL_ADMIN_PASSWORD"):
        return os.environ["DESKMAIL_ADMIN_PASSWORD"]
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise InvalidSetting({"password": "the two entries differ"})
    return first


def cmd_create_user(args: argparse.Namespace) -> int:
    app = App.from_env()
    password = _password(args)
    with transaction(app.pool) as conn:
        user_id = users.create_user(conn, args.username, password)
    print(f"user {args.username} added (id {user_id})")
    return 0


def cmd_create_token(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        token = users.create_token(conn, args.username, args.name)
    # The only time the token is shown: it is stored as a digest.
    print(token)
    return 0
