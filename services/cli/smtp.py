"""`deskmail smtp set-system | add | edit | list | show | test | remove`: SMTP settings.

Through services/admin/smtp.py (and probes.py for `test`), like the API's
/api/v1/smtp and the admin web. Passwords come from standard input
(--password-stdin) or DESKMAIL_SMTP_PASSWORD, never from an option (it would
show in `ps` and shell history), and are never printed. `test` opens a
session the way the replier does and says plainly which step fails and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from services.admin import probes
from services.admin import smtp as smtp_admin
from services.app import App
from services.cli import oauth2 as oauth_cli
from shared.db import transaction

PASSWORD_ENV = "DESKMAIL_SMTP_PASSWORD"
SECURITY_TYPES = ("none", "starttls", "tls")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("smtp", help="SMTP settings: the system default and named ones that mailboxes share")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_ in (
        ("set-system", "create or change the system default SMTP settings"),
        ("add", "add named SMTP settings that mailboxes can share (mailbox edit ID --smtp NAME)"),
        ("edit", "change SMTP settings (NAME, id, or 'system'), for every mailbox that uses them"),
    ):
        a = ssub.add_parser(action, help=help_)
        if action == "add":
            a.add_argument("name")
        elif action == "edit":
            a.add_argument("ref", metavar="NAME")
            a.add_argument("--name", dest="new_name", help="rename named settings")
        a.add_argument("--host", required=action == "add")
        a.add_argument("--port", help="default: 25 none, 587 starttls, 465 tls")
        a.add_argument("--security", type=str.lower, choices=SECURITY_TYPES,
                       help="none, starttls (default) or tls (SSL/TLS from the first byte)")
        a.add_argument("--username", help="log in as this user")
        a.add_argument("--no-login", action="store_true",
                       help="send without logging in (clears username and password)")
        a.add_argument("--allow-self-signed", action=argparse.BooleanOptionalAction, default=None,
                       help="accept a self-signed certificate (off by default)")
        a.add_argument("--password-stdin", action="store_true",
                       help=f"read the password from standard input (else ${PASSWORD_ENV})")
        oauth_cli.add_options(a)
        a.set_defaults(func=cmd_save)
    a = ssub.add_parser("list", help="list SMTP settings and how many mailboxes use each")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    for action, func, help_ in (
        ("show", cmd_show, "show one setting (the password only as set or not)"),
        ("test", cmd_test, "connect, start TLS, log in: say which step fails and why"),
        ("remove", cmd_remove, "remove settings that no mailbox uses"),
    ):
        a = ssub.add_parser(action, help=help_)
        a.add_argument("ref", metavar="NAME", help="name, id, or 'system'")
        if action == "show":
            a.add_argument("--json", action="store_true")
        if action == "test":
            a.add_argument("--timeout", type=float, default=10.0)
        a.set_defaults(func=func)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV) or None


def cmd_save(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    for key in ("host", "port", "security", "username", "allow_self_signed"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if getattr(args, "new_name", None):
        values["name"] = args.new_name
    if args.action == "add":
        values["name"] = args.name
    secrets = oauth_cli.read_secrets(args)
    password = _password(args)
    if args.no_login:
        if password or args.username:
            print("error: --no-login cannot go with a username or a password", file=sys.stderr)
            return 2
        values["username"] = None
    oauth = oauth_cli.values_of(args, secrets)
    ref = {"set-system": smtp_admin.SYSTEM, "add": None}.get(args.action, getattr(args, "ref", None))
    app = App.from_env()
    with transaction(app.pool) as conn:
        smtp_id = smtp_admin.save(conn, app.keys, {**values, **oauth, "password": password}, ref)
        shown = smtp_admin.view(conn, smtp_id)
    if args.action == "set-system":
        what = "system SMTP settings saved"
    elif args.action == "add":
        what = f"SMTP settings {args.name!r} added"
    else:
        what = f"SMTP settings {args.ref!r} updated"
    note = oauth_cli.note(shown, "smtp_settings", secrets) if oauth else None
    what += f"; {note}" if note else ""
    print(f"{what} (id {smtp_id}); check them with: deskmail smtp test "
          f"{'system' if args.action == 'set-system' else smtp_id}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = smtp_admin.list_all(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    if not rows:
        print("no SMTP settings (deskmail smtp set-system --host ... to add the system default)")
        return 0
    print(f"{'ID':>3}  {'NAME':20} {'HOST:PORT':34} {'SECURITY':9} {'LOGIN':20} {'MAILBOXES':>9}")
    for r in rows:
        name = r["name"] + (" *" if r["is_system"] else "")
        login = r["username"] or "-"
        print(f"{r['id']:>3}  {name:20} {r['host'] + ':' + str(r['effective_port']):34}"
              f" {r['security']:9} {login:20} {r['mailboxes']:>9}")
    print("* the system default: mailboxes without SMTP settings of their own use it")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        row = smtp_admin.view(conn, args.ref)
    row["password"] = "(set, not shown)" if row.pop("has_password") else "(none)"
    if args.json:
        print(json.dumps(row, default=str, indent=2))
    else:
        for key, value in row.items():
            print(f"{key:18} {value}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    app = App.from_env()
    found = probes.test_smtp(app.pool, app.keys, args.ref, {}, timeout=args.timeout)
    for s in found["steps"]:
        print(f"{'ok  ' if s['ok'] else 'FAIL'} {s['step'].removeprefix('smtp_'):9} {s['detail']}")
    return 0 if found["ok"] else 1


def cmd_remove(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        smtp_admin.remove(conn, args.ref)
    print(f"SMTP settings {args.ref!r} removed")
    return 0
