"""`deskmail smtp set-system | add | edit | list | show | test | remove`: SMTP settings.

Passwords come from standard input (--password-stdin) or DESKMAIL_SMTP_PASSWORD,
never from an option (it would show in `ps` and shell history), and are never
printed. `test` opens a session the way the replier does and says plainly
which step fails and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from services.app import App
from services.cli import oauth2 as oauth_cli
from shared import smtp_settings
from shared.db import transaction
from shared.mailboxes import InvalidSetting
from shared.oauth2 import login as oauth_login

PASSWORD_ENV = "DESKMAIL_SMTP_PASSWORD"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("smtp", help="SMTP settings: the system default and custom ones")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_ in (
        ("set-system", "create or change the system default SMTP settings"),
        ("add", "add custom SMTP settings that mailboxes can choose (mailbox edit ID --smtp NAME)"),
        ("edit", "change SMTP settings (NAME, id, or 'system')"),
    ):
        a = ssub.add_parser(action, help=help_)
        if action == "add":
            a.add_argument("name")
        elif action == "edit":
            a.add_argument("ref", metavar="NAME")
            a.add_argument("--name", dest="new_name", help="rename custom settings")
        required = action != "edit"
        a.add_argument("--host", required=required and action == "add")
        a.add_argument("--port", type=int, help="default: 25 none, 587 starttls, 465 tls")
        a.add_argument("--security", type=str.lower, choices=smtp_settings.SECURITY_TYPES,
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


def _errors(exc: InvalidSetting) -> int:
    for field, message in exc.errors.items():
        print(f"error: {field}: {message}", file=sys.stderr)
    return 2


def cmd_save(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    for key in ("host", "port", "security", "username", "allow_self_signed"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if getattr(args, "new_name", None):
        values["name"] = args.new_name
    secrets = oauth_cli.read_secrets(args)
    password = _password(args)
    if args.no_login:
        if password or args.username:
            print("error: --no-login cannot go with a username or a password", file=sys.stderr)
            return 2
        values["username"] = None
    elif password and not args.username and args.action != "edit":
        print("error: a password needs --username", file=sys.stderr)
        return 2
    app = App.from_env()
    try:
        with transaction(app.pool) as conn:
            if args.action == "set-system":
                smtp_id = smtp_settings.set_system(conn, app.keys, values, password,
                                                   clear_password=args.no_login)
                what = "system SMTP settings saved"
            elif args.action == "add":
                smtp_id = smtp_settings.create(conn, app.keys, {**values, "name": args.name},
                                               password)
                what = f"SMTP settings {args.name!r} added"
            else:
                smtp_id = smtp_settings.update(conn, app.keys, args.ref, values, password,
                                               clear_password=args.no_login)
                what = f"SMTP settings {args.ref!r} updated"
            note = oauth_cli.apply(conn, app.keys, args, "smtp_settings", smtp_id, secrets)
            what += f"; {note}" if note else ""
    except InvalidSetting as exc:
        return _errors(exc)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"{what} (id {smtp_id}); check them with: deskmail smtp test "
          f"{'system' if args.action == 'set-system' else smtp_id}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = smtp_settings.list_all(conn)
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
    try:
        with app.pool.connection() as conn:
            row = smtp_settings.show(conn, args.ref)
            oauth = oauth_cli.show(conn, "smtp_settings", row["id"])
            if oauth is not None:
                row["oauth2"] = oauth
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(row, default=str, indent=2))
    else:
        for key, value in row.items():
            print(f"{key:18} {value}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from shared.mailserver.smtp import check

    app = App.from_env()
    try:
        with app.pool.connection() as conn:
            settings = oauth_login.attach_smtp(app.pool, app.keys, conn, smtp_settings.get(conn, app.keys, args.ref))
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    except ValueError as exc:  # SecretError: the password cannot be decrypted
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ok = True
    for step, passed, detail in check(settings, timeout=args.timeout):
        print(f"{'ok  ' if passed else 'FAIL'} {step:9} {detail}")
        ok = ok and passed
    return 0 if ok else 1


def cmd_remove(args: argparse.Namespace) -> int:
    app = App.from_env()
    try:
        with transaction(app.pool) as conn:
            smtp_settings.remove(conn, args.ref)
    except InvalidSetting as exc:
        return _errors(exc)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"SMTP settings {args.ref!r} removed")
    return 0
