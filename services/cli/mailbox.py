"""`deskmail mailbox ...`: every field of the seed's "Email Mailboxes" page."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from services.admin import categories
from services.admin import mailboxes as mailbox_admin
from services.admin.errors import Conflict, NotFound
from services.app import App
from services.cli import oauth2 as oauth_cli
from shared import mailboxes, smtp_settings
from shared.db import transaction
from shared.mailboxes import InvalidSetting
from shared.oauth2 import login as oauth_login

FIELDS = {
    # option: (column, type, help)
    "from-name": ("from_name", str, "Account Name shown as sender; may hold placeholders such as {{ agent.name }}"),
    "address": ("address", str, "the mailbox's address, e.g. support@example.com"),
    "folder": ("folder", str, "folder to import from (default INBOX)"),
    "archive-folder": ("archive_folder", str, "IMAP folder imported mail is moved to (default deskmail_archive)"),
    "host": ("host", str, "IMAP/POP3 server (for maildir: the Maildir's path)"),
    "username": ("username", str, "login name"),
    "type": ("account_type", str, "imap, pop3 or maildir"),
    "port": ("port", str, "port (default: 143/993 for IMAP, 110/995 for POP3)"),
    "security": ("security", str, "none, starttls or tls (default tls)"),
    "category": ("category_id", str, "default category (name; created if missing)"),
    "smtp": ("smtp_id", str, "'system' for the system default SMTP, or the name of custom SMTP settings"),
    "poll-interval": ("poll_interval", str, "seconds between polls (default 60)"),
    "max-per-poll": ("max_per_poll", str, "messages imported per poll at most (default 500)"),
    "max-message-bytes": ("max_message_bytes", str, "larger mail is imported as headers only (default 25 MB)"),
}
SHOW_POLLS = 5  # `mailbox show`: the last few polls (the API goes further back)
FLAGS = {
    "archive": ("archive", "move imported mail to the archive folder (IMAP); --no-archive deletes it"),
    "auto-reply": ("auto_reply", "send an auto-reply to new requests"),
    "allow-self-signed": ("allow_self_signed", "accept a self-signed TLS certificate (off by default)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mailbox", help="add, edit, test and list mailboxes")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ("add", "edit"):
        a = msub.add_parser(action, help=f"{action} a mailbox")
        if action == "edit":
            a.add_argument("id", type=int)
        for opt, (_, typ, help_) in FIELDS.items():
            a.add_argument(f"--{opt}", type=typ, help=help_)
        for opt, (_, help_) in FLAGS.items():
            a.add_argument(f"--{opt}", action=argparse.BooleanOptionalAction, default=None, help=help_)
        a.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input (else DESKMAIL_MAILBOX_PASSWORD, else a prompt)")
        oauth_cli.add_options(a)
        a.set_defaults(func=cmd_save)
    oauth_cli.register_connect(msub)
    a = msub.add_parser("list", help="list mailboxes with last poll, last error and counts")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    for action, func, help_ in (
        ("show", cmd_show, "show one mailbox's settings and status"),
        ("test", cmd_test, "connect, log in, check the folder and the archive folder"),
        ("enable", cmd_enable, "enable polling"),
        ("disable", cmd_disable, "disable polling"),
        ("remove", cmd_remove, "remove the mailbox (its requests stay)"),
    ):
        a = msub.add_parser(action, help=help_)
        a.add_argument("id", type=int)
        if action == "show":
            a.add_argument("--json", action="store_true")
        a.set_defaults(func=func)


def _password(args: argparse.Namespace, required: bool) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("DESKMAIL_MAILBOX_PASSWORD"):
        return os.environ["DESKMAIL_MAILBOX_PASSWORD"]
    if required and sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return None


def _resolve(conn: Any, values: dict[str, Any]) -> None:
    """Names to ids for the category (created if missing) and the SMTP settings."""
    if isinstance(values.get("category_id"), str):
        values["category_id"] = categories.ensure(conn, values["category_id"])
    if isinstance(values.get("smtp_id"), str):
        if values["smtp_id"] == "system":
            values["smtp_id"] = None
        else:
            row = smtp_settings.find(conn, values["smtp_id"])
            if row is None or row["is_system"]:
                raise InvalidSetting({"smtp_id": f"no SMTP settings named {values['smtp_id']!r}"})
            values["smtp_id"] = row["id"]


def cmd_save(args: argparse.Namespace) -> int:
    # Numbers stay text here: services.admin.mailboxes reads them, so a wrong
    # value gets the same message as in the admin web and the API.
    values: dict[str, Any] = {}
    for opt, (col, _, _) in FIELDS.items():
        value = getattr(args, opt.replace("-", "_"))
        if value is not None:
            values[col] = value
    for opt, (col, _) in FLAGS.items():
        value = getattr(args, opt.replace("-", "_"))
        if value is not None:
            values[col] = value
    editing = args.action == "edit"
    secrets = oauth_cli.read_secrets(args)
    password = _password(args, required=not editing and not oauth_cli.wants_oauth(args))
    app = App.from_env()
    try:
        with transaction(app.pool) as conn:
            _resolve(conn, values)
            mailbox_id = mailbox_admin.save(conn, app.keys, {**values, "password": password},
                                            args.id if editing else None)
            note = oauth_cli.apply(conn, app.keys, args, "mailboxes", mailbox_id, secrets)
    except InvalidSetting as exc:
        for field, message in exc.errors.items():
            print(f"error: {field}: {message}", file=sys.stderr)
        return 2
    except (LookupError, Conflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"mailbox {mailbox_id} {'updated' if editing else 'added'}" + (f"; {note}" if note else ""))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = mailbox_admin.list_all(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    print(f"{'ID':>3}  {'ADDRESS':30} {'TYPE':12} {'ON':3} {'LAST POLL':20} {'MAIL 24H':>8}  LAST ERROR")
    for r in rows:
        kind = f"{r['account_type']}/{r['security']}"
        last = r["last_poll_at"].strftime("%Y-%m-%d %H:%M:%S") if r["last_poll_at"] else "never"
        error = "" if not r["failures_in_row"] else f"{r['last_error']} ({r['failures_in_row']} in a row)"
        if r["needs_reconnect"]:
            error = f"needs reconnect (OAuth2): deskmail mailbox connect {r['id']}; {error}".rstrip("; ")
        print(f"{r['id']:>3}  {r['address']:30} {kind:12} {'yes' if r['enabled'] else 'no':3} {last:20}"
              f" {r['mail_24h']:>8}  {error}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        row = conn.execute("SELECT * FROM mailboxes WHERE id = %s", (args.id,)).fetchone()
        oauth = oauth_cli.show(conn, "mailboxes", args.id) if row else None
        try:
            polls = mailbox_admin.recent_polls(conn, args.id, SHOW_POLLS)
        except NotFound:  # a removed mailbox: its settings still show, its polls do not
            polls = []
    if row is None:
        print(f"error: no mailbox {args.id}", file=sys.stderr)
        return 1
    has_password = row["password_enc"] is not None
    row = {k: v for k, v in row.items() if k not in ("password_enc", "lease_owner", "lease_until")}
    row["password"] = "(set, not shown)" if has_password else "(none)"
    if oauth is not None:
        row["oauth2"] = oauth
    if args.json:
        print(json.dumps({**row, "recent_polls": polls}, default=str, indent=2))
        return 0
    for key, value in row.items():
        print(f"{key:18} {value}")
    print("\nrecent polls (newest first):" if polls else "\nrecent polls: none yet")
    for p in polls:
        took = (p["finished_at"] - p["started_at"]).total_seconds()
        outcome = f"failed at {p['step']}" if p["outcome"] == "failed" and p["step"] else p["outcome"]
        print(f"  {p['finished_at']:%Y-%m-%d %H:%M:%S}  {took:6.1f} s  {outcome:18} imported {p['fetched']:<5}"
              f" removed {p['removed']:<5} {p['error'] or ''}".rstrip())
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from shared.mailserver.probe import check_mailbox

    app = App.from_env()
    with app.pool.connection() as conn:
        mailbox = mailboxes.get(conn, args.id, app.keys)
        row = conn.execute("SELECT * FROM mailboxes WHERE id = %s", (args.id,)).fetchone()
    mailbox.oauth = oauth_login.source_for(app.pool, app.keys, row or {}, f"mailbox connect {args.id}")
    ok = True
    for step, passed, detail in check_mailbox(mailbox):
        print(f"{'ok  ' if passed else 'FAIL'} {step:15} {detail}")
        ok = ok and passed
    return 0 if ok else 1


def _set_enabled(mailbox_id: int, enabled: bool) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        row = conn.execute("UPDATE mailboxes SET enabled = %s WHERE id = %s RETURNING id",
                           (enabled, mailbox_id)).fetchone()
    if row is None:
        print(f"error: no mailbox {mailbox_id}", file=sys.stderr)
        return 1
    print(f"mailbox {mailbox_id} {'enabled' if enabled else 'disabled'}")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_enabled(args.id, True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_enabled(args.id, False)


def cmd_remove(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        row = conn.execute("UPDATE mailboxes SET enabled = false, removed_at = now()"
                           " WHERE id = %s AND removed_at IS NULL RETURNING id", (args.id,)).fetchone()
    if row is None:
        print(f"error: no mailbox {args.id}", file=sys.stderr)
        return 1
    print(f"mailbox {args.id} removed")
    return 0
