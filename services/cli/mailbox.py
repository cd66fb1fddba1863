"""`deskmail mailbox ...`: every field of the seed's "Email Mailboxes" page, through services/admin.

Options are the admin layer's fields under their own names (--from-name is
from_name, --smtp is smtp_id, --smtp-host is smtp_host, ...); values stay
text here, so a wrong one gets the same message as in the admin web and the API.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from services.admin import mailboxes as mailbox_admin
from services.admin import probes
from services.app import App
from services.cli import oauth2 as oauth_cli
from shared.db import transaction

FIELDS = {
    # option: (field, help)
    "from-name": ("from_name", "Account Name shown as sender; may hold placeholders such as {{ agent.name }}"),
    "address": ("address", "the mailbox's address, e.g. support@example.com"),
    "folder": ("folder", "folder to import from (default INBOX)"),
    "archive-folder": ("archive_folder", "IMAP folder imported mail is moved to (default deskmail_archive)"),
    "host": ("host", "IMAP/POP3 server (for maildir: the Maildir's path)"),
    "username": ("username", "login name"),
    "type": ("account_type", "imap, pop3 or maildir"),
    "port": ("port", "port (default: 143/993 for IMAP, 110/995 for POP3)"),
    "security": ("security", "none, starttls or tls (default tls)"),
    "category": ("category_id", "default category (name; created if missing)"),
    "poll-interval": ("poll_interval", "seconds between polls (default 60)"),
    "max-per-poll": ("max_per_poll", "messages imported per poll at most (default 500)"),
    "max-message-bytes": ("max_message_bytes", "larger mail is imported as headers only (default 25 MB)"),
    # the SMTP section (services/admin/mailbox_smtp.py)
    "smtp": ("smtp_id", "'system' (the system default), 'custom' (this mailbox's own settings, the --smtp-*"
                        " options), or the name of shared SMTP settings (deskmail smtp add)"),
    "smtp-host": ("smtp_host", "SMTP server of --smtp custom (or of the shared settings, with --smtp-edit)"),
    "smtp-port": ("smtp_port", "SMTP port (default 25/587/465 by security)"),
    "smtp-security": ("smtp_security", "none, starttls (default) or tls"),
    "smtp-username": ("smtp_username", "SMTP login (empty: send without logging in)"),
    "smtp-edit": ("smtp_edit", "changing shared SMTP settings: 'shared' changes them for every mailbox that"
                               " uses them, 'copy' gives this mailbox its own copy with the changes"),
}
SHOW_POLLS = 5  # `mailbox show`: the last few polls (the API goes further back)
FLAGS = {
    "archive": ("archive", "move imported mail to the archive folder (IMAP); --no-archive deletes it"),
    "auto-reply": ("auto_reply", "send an auto-reply to new requests"),
    "allow-self-signed": ("allow_self_signed", "accept a self-signed TLS certificate (off by default)"),
    "smtp-allow-self-signed": ("smtp_allow_self_signed", "accept the SMTP server's self-signed certificate"),
}
SMTP_PASSWORD_ENV = "DESKMAIL_SMTP_PASSWORD"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mailbox", help="add, edit, test and list mailboxes")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ("add", "edit"):
        a = msub.add_parser(action, help=f"{action} a mailbox")
        if action == "edit":
            a.add_argument("id", type=int)
        for opt, (_, help_) in FIELDS.items():
            a.add_argument(f"--{opt}", help=help_)
        for opt, (_, help_) in FLAGS.items():
            a.add_argument(f"--{opt}", action=argparse.BooleanOptionalAction, default=None, help=help_)
        a.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input (else DESKMAIL_MAILBOX_PASSWORD, else a prompt)")
        a.add_argument("--smtp-password-stdin", action="store_true",
                       help=f"read the SMTP password from standard input, after the mailbox's (else ${SMTP_PASSWORD_ENV})")
        oauth_cli.add_options(a)
        a.set_defaults(func=cmd_save)
    oauth_cli.register_connect(msub)
    a = msub.add_parser("list", help="list mailboxes with last poll, last error and counts")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    for action, func, help_ in (
        ("show", cmd_show, "show one mailbox's settings and status"),
        ("test", cmd_test, "connect, log in, check the folder and the archive folder, then the SMTP login"),
        ("test-mail", cmd_test_mail, "send a short test mail through the mailbox's SMTP settings"),
        ("enable", cmd_enable, "enable polling"),
        ("disable", cmd_disable, "disable polling"),
        ("remove", cmd_remove, "remove the mailbox (its requests stay)"),
    ):
        a = msub.add_parser(action, help=help_)
        a.add_argument("id", type=int)
        if action == "show":
            a.add_argument("--json", action="store_true")
        if action == "test-mail":
            a.add_argument("--to", dest="test_to", help="where to send it (default: the mailbox's own address)")
        a.set_defaults(func=func)


def _password(args: argparse.Namespace, required: bool) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("DESKMAIL_MAILBOX_PASSWORD"):
        return os.environ["DESKMAIL_MAILBOX_PASSWORD"]
    if required and sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return None


def values_of(args: argparse.Namespace) -> dict[str, Any]:
    """The fields given on the command line, as the admin layer names them (text, as typed)."""
    values: dict[str, Any] = {}
    for options in (FIELDS, FLAGS):
        for opt, (field, _) in options.items():
            value = getattr(args, opt.replace("-", "_"))
            if value is not None:
                values[field] = value
    return values


def cmd_save(args: argparse.Namespace) -> int:
    editing = args.action == "edit"
    values = values_of(args)
    secrets = oauth_cli.read_secrets(args)
    password = _password(args, required=not editing and not oauth_cli.wants_oauth(args))
    if args.smtp_password_stdin:
        values["smtp_password"] = sys.stdin.readline().rstrip("\n")
    elif os.environ.get(SMTP_PASSWORD_ENV) and ("smtp_host" in values or values.get("smtp_id") == "custom"):
        values["smtp_password"] = os.environ[SMTP_PASSWORD_ENV]
    oauth = oauth_cli.values_of(args, secrets)
    app = App.from_env()
    with transaction(app.pool) as conn:
        mailbox_id = mailbox_admin.save(conn, app.keys, {**values, **oauth, "password": password},
                                        args.id if editing else None)
        shown = mailbox_admin.view(conn, mailbox_id)
    note = oauth_cli.note(shown, "mailboxes", secrets) if oauth else None
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
        shown = mailbox_admin.view(conn, args.id)
        polls = mailbox_admin.recent_polls(conn, args.id, SHOW_POLLS)
    shown["password"] = "(set, not shown)" if shown.pop("has_password") else "(none)"
    if args.json:
        print(json.dumps({**shown, "recent_polls": polls}, default=str, indent=2))
        return 0
    smtp = shown.pop("smtp")
    for key, value in shown.items():
        if key.startswith("oauth_") and shown["auth_method"] != "oauth2":
            continue  # the OAuth2 settings mean nothing to a mailbox that signs in with a password
        print(f"{key:18} {value}")
    print(f"{'sends with':18} {_smtp_line(smtp)}")
    print("\nrecent polls (newest first):" if polls else "\nrecent polls: none yet")
    for p in polls:
        took = (p["finished_at"] - p["started_at"]).total_seconds()
        outcome = f"failed at {p['step']}" if p["outcome"] == "failed" and p["step"] else p["outcome"]
        print(f"  {p['finished_at']:%Y-%m-%d %H:%M:%S}  {took:6.1f} s  {outcome:18} imported {p['fetched']:<5}"
              f" removed {p['removed']:<5} {p['error'] or ''}".rstrip())
    return 0


def _smtp_line(smtp: dict[str, Any]) -> str:
    if smtp["use"] == "system":
        return "the system default SMTP settings"
    where = f"{smtp['settings']['host']}:{smtp['settings']['effective_port']}"
    if smtp["use"] == "custom":
        return f"its own SMTP settings ({where})"
    others = ", ".join(m["address"] for m in smtp["shared_with"]) or "no other mailbox"
    return f"the shared SMTP settings {smtp['name']!r} ({where}), also used by: {others}"


def print_steps(found: dict[str, Any]) -> int:
    for s in found["steps"]:
        print(f"{'ok  ' if s['ok'] else 'FAIL'} {s['step']:15} {s['detail']}")
    return 0 if found["ok"] else 1


def cmd_test(args: argparse.Namespace) -> int:
    app = App.from_env()
    return print_steps(probes.test_mailbox(app.pool, app.keys, {}, args.id))


def cmd_test_mail(args: argparse.Namespace) -> int:
    app = App.from_env()
    return print_steps(probes.send_test_mail(app.pool, app.keys, {}, args.id, args.test_to))


def _set_enabled(mailbox_id: int, enabled: bool) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        mailbox_admin.set_enabled(conn, mailbox_id, enabled)
    print(f"mailbox {mailbox_id} {'enabled' if enabled else 'disabled'}")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_enabled(args.id, True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_enabled(args.id, False)


def cmd_remove(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        mailbox_admin.remove(conn, args.id)
    print(f"mailbox {args.id} removed")
    return 0
