"""`deskmail template list | show | set | preview | reset`: email templates, through services/admin/templates.py.

Without --mailbox a command works on the system level (the override of the
templates shipped with Deskmail); with --mailbox ID on that mailbox's override.
`set` takes each part from a file (--subject-file, --text-file, --html-file;
`-` is standard input) or an option (--subject, --text); parts not given keep
what the mailbox (or the system) uses now; --no-html sends plain text only.
A template that does not compile or uses an unknown name is refused with the
part, the line and the reason, as in the API and the admin web.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.admin import templates as template_admin
from services.app import App
from shared.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("template", help="list, show, change and preview email templates")
    tsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = tsub.add_parser("list", help="each template and where it is overridden")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    for action, func, help_ in (
        ("show", cmd_show, "print the template a mailbox (or the system) uses"),
        ("set", cmd_set, "override a template, system-wide or for one mailbox"),
        ("preview", cmd_preview, "render the template with a sample request"),
        ("reset", cmd_reset, "drop an override: the next level's template applies again"),
    ):
        a = tsub.add_parser(action, help=help_)
        a.add_argument("name", choices=list(template_admin.NAMES))
        a.add_argument("--mailbox", type=int, metavar="ID",
                       help="the mailbox's template (default: the system level)")
        if action == "set":
            a.add_argument("--subject")
            a.add_argument("--subject-file", type=Path)
            a.add_argument("--text", help="the plain-text body")
            a.add_argument("--text-file", type=Path)
            a.add_argument("--html-file", type=Path)
            a.add_argument("--no-html", action="store_true", help="send plain text only")
        if action in ("show", "preview"):
            a.add_argument("--json", action="store_true")
        a.set_defaults(func=func)


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    return path.read_text(encoding="utf-8")


def _parts(args: argparse.Namespace) -> dict[str, Any]:
    """The parts given, as the admin layer names them; the others keep what is used now."""
    parts: dict[str, Any] = {}
    for option, part in (("subject", "subject"), ("text", "body_text")):
        text, path = getattr(args, option), getattr(args, f"{option}_file")
        if text is not None and path is not None:
            raise SystemExit(f"error: give --{option} or --{option}-file, not both")
        if path is not None:
            parts[part] = _read(path)
        elif text is not None:
            parts[part] = text
    if args.no_html:
        parts["body_html"] = None
    elif args.html_file is not None:
        parts["body_html"] = _read(args.html_file)
    return parts


def _where(mailbox_id: int | None) -> str:
    return f"mailbox {mailbox_id}" if mailbox_id else "the system level"


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = template_admin.overview(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    for r in rows:
        level = "system override" if r["system"] == "system" else "shipped with Deskmail"
        mailboxes = ", ".join(f"{m['mailbox_id']} ({m['address']})" for m in r["mailbox_overrides"])
        print(f"{r['name']:12} system: {level}; overridden by mailbox(es): {mailboxes or 'none'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        t = template_admin.view(conn, args.mailbox, args.name)
    if args.json:
        print(json.dumps(t, indent=2))
        return 0
    print(f"# {t['name']} as used by {_where(args.mailbox)}: {template_admin.SOURCES[t['source']]}")
    print(f"--- subject\n{t['subject']}\n--- text\n{t['body_text']}\n--- html\n{t['body_html'] or '(none)'}")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    try:
        parts = _parts(args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app = App.from_env()
    with transaction(app.pool) as conn:
        template_admin.save(conn, args.mailbox, args.name, parts)
    print(f"template {args.name} saved for {_where(args.mailbox)}; see it with: deskmail template preview"
          f" {args.name}" + (f" --mailbox {args.mailbox}" if args.mailbox else ""))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rendered = template_admin.preview(conn, args.mailbox, args.name)
    if args.json:
        print(json.dumps(rendered, indent=2, ensure_ascii=False))
        return 0
    print(f"Subject: {rendered['subject']}\n\n{rendered['body_text']}")
    if rendered["body_html"]:
        print(f"\n--- html\n{rendered['body_html']}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        removed = template_admin.reset(conn, args.mailbox, args.name)
    print(f"override of {args.name} for {_where(args.mailbox)} removed" if removed
          else f"{_where(args.mailbox)} has no override of {args.name}")
    return 0
