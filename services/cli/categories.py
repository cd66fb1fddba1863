"""`deskmail category list | add | rename | remove`: categories, through services/admin/categories.py.

Categories are named on the command line (their id works too). `remove`
refuses a category that mailboxes or requests use unless --move-to names
where they go; `deskmail requests move ID... --category NAME` files single
requests elsewhere.
"""

from __future__ import annotations

import argparse
import json

from services.admin import categories
from services.app import App
from shared.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("category", help="list, add, rename and remove categories")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = csub.add_parser("list", help="categories with how many mailboxes and requests use each")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    a = csub.add_parser("add", help="add a category")
    a.add_argument("name")
    a.set_defaults(func=cmd_add)
    a = csub.add_parser("rename", help="rename a category")
    a.add_argument("ref", metavar="NAME")
    a.add_argument("new_name", metavar="NEW_NAME")
    a.set_defaults(func=cmd_rename)
    a = csub.add_parser("remove", help="remove a category (with --move-to when mailboxes or requests use it)")
    a.add_argument("ref", metavar="NAME")
    a.add_argument("--move-to", metavar="NAME", help="the category its mailboxes and requests move to first")
    a.set_defaults(func=cmd_remove)


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = categories.list_all(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no categories (deskmail category add NAME)")
    for r in rows:
        print(f"{r['id']:>4}  {r['name']:30} {r['mailboxes']:>4} mailbox(es) {r['requests']:>7} request(s)")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        category_id = categories.create(conn, args.name)
    print(f"category {args.name.strip()!r} added (id {category_id})")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        renamed = categories.rename(conn, args.ref, args.new_name)
    print(f"category {args.ref!r} renamed to {renamed['name']!r}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        gone = categories.delete(conn, args.ref, args.move_to)
    moved = f"; {gone['mailboxes']} mailbox(es) and {gone['requests']} request(s) moved to {args.move_to}" \
        if args.move_to else ""
    print(f"category {gone['name']!r} removed{moved}")
    return 0
