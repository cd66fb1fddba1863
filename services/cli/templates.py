"""`deskmail template list | show | set | preview | reset`: email templates.

Without --mailbox a command works on the system level (the override of the
templates shipped with Deskmail); with --mailbox ID on that mailbox's override.
`set` takes each part from a file (--subject-file, --text-file, --html-file;
`-` is standard input) or an option (--subject, --text); parts not given keep
what the mailbox (or the system) uses now. A template that does not compile
or uses an unknown name is refused with the part, the line and the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.app import App
from shared import template_store, templates
from shared.db import transaction
from shared.templates import Template


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("template", help="list, show, change and preview email templates")
    tsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = tsub.add_parser("list", help="each template and where it is overridden")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    names = list(templates.TEMPLATE_NAMES)
    for action, func, help_ in (
        ("show", cmd_show, "print the template a mailbox (or the system) uses"),
        ("set", cmd_set, "override a template, system-wide or for one mailbox"),
        ("preview", cmd_preview, "render the template with a sample request"),
        ("reset", cmd_reset, "drop an override: the next level's template applies again"),
    ):
        a = tsub.add_parser(action, help=help_)
        a.add_argument("name", choices=names)
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


def _part(args: argparse.Namespace, option: str, current: str) -> str:
    text, path = getattr(args, option, None), getattr(args, f"{option}_file", None)
    if text is not None and path is not None:
        raise SystemExit(f"error: give --{option} or --{option}-file, not both")
    if path is not None:
        return _read(path)
    return current if text is None else text


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = template_store.overview(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    for r in rows:
        level = ("system override" if r["system"] == template_store.SYSTEM
                 else "shipped with Deskmail")
        mailboxes = ", ".join(f"{m['mailbox_id']} ({m['address']})" for m in r["mailbox_overrides"])
        print(f"{r['name']:12} system: {level}; overridden by mailbox(es): {mailboxes or 'none'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        found = template_store.effective(conn, args.mailbox, args.name)
    t = found.template
    if args.json:
        print(json.dumps({"name": t.name, "source": found.source, "subject": t.subject,
                          "body_text": t.body_text, "body_html": t.body_html}, indent=2))
        return 0
    where = f"mailbox {args.mailbox}" if args.mailbox else "the system level"
    print(f"# {t.name} as used by {where}: {_source(found.source)}")
    print(f"--- subject\n{t.subject}\n--- text\n{t.body_text}\n--- html\n{t.body_html or '(none)'}")
    return 0


def _source(source: str) -> str:
    return {template_store.MAILBOX: "the mailbox's own override",
            template_store.SYSTEM: "the system-level override",
            template_store.SHIPPED: "the template shipped with Deskmail"}[source]


def cmd_set(args: argparse.Namespace) -> int:
    app = App.from_env()
    try:
        with transaction(app.pool) as conn:
            current = template_store.effective(conn, args.mailbox, args.name).template
            html = "" if args.no_html else (
                _read(args.html_file) if args.html_file else current.body_html)
            new = Template(args.name, _part(args, "subject", current.subject),
                           _part(args, "text", current.body_text), html)
            template_store.save(conn, args.mailbox, new)
    except template_store.InvalidTemplate as exc:
        print(f"error: template {args.name} not saved:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except (LookupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    where = f"mailbox {args.mailbox}" if args.mailbox else "the system level"
    print(f"template {args.name} saved for {where}; see it with: deskmail template preview"
          f" {args.name}" + (f" --mailbox {args.mailbox}" if args.mailbox else ""))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        found = template_store.effective(conn, args.mailbox, args.name)
    try:
        rendered = templates.preview(found.template)
    except templates.RenderError as exc:
        print(f"error: the template fails: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"subject": rendered.subject, "body_text": rendered.body_text,
                          "body_html": rendered.body_html}, indent=2, ensure_ascii=False))
        return 0
    print(f"Subject: {rendered.subject}\n\n{rendered.body_text}")
    if rendered.body_html:
        print(f"\n--- html\n{rendered.body_html}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        removed = template_store.reset(conn, args.mailbox, args.name)
    where = f"mailbox {args.mailbox}" if args.mailbox else "the system level"
    print(f"override of {args.name} for {where} removed" if removed
          else f"{where} has no override of {args.name}")
    return 0
