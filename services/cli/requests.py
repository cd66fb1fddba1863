"""`deskmail requests list | show | move | unmatched`: what the pipeline made of the mail.

The same list and the same request as the API's /api/v1/requests and the
admin pages (services/admin/requests.py); `--json` prints what the API
answers (for the list: its items). `show` prints a request with everyone on its conversation,
every history entry with its attachments, and the outgoing mail with its
delivery state (a bounce marks it failed). `move` files requests under
another category. `unmatched` lists automatic mail that belonged to no
request (bounces of mail Deskmail did not send): it is kept for a person to
look at instead of being dropped.
"""

from __future__ import annotations

import argparse
import json

from services.admin import categories
from services.admin import requests as request_admin
from services.app import App
from shared.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("requests", help="list, show and move requests")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = rsub.add_parser("list", help="list requests, newest first (a page at a time: --cursor)")
    a.add_argument("--mailbox", dest="mailbox_id", help="only this mailbox's requests (id)")
    a.add_argument("--category", dest="category_id", help="only this category's requests (id)")
    a.add_argument("--status", help="open or closed")
    a.add_argument("--unparsed", action="store_const", const="true", help="only mail that could not be parsed")
    a.add_argument("--customer", help="only this customer's requests (address)")
    a.add_argument("--spam", action="store_const", const="true",
                   help="only spam requests (they are left out otherwise: deskmail spam)")
    a.add_argument("--cursor", help="the next_cursor of the previous page")
    a.add_argument("--limit", help="requests per page (default 50, at most 200)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    a = rsub.add_parser("show", help="a request with its history, attachments and outgoing mail")
    a.add_argument("id", type=int)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_show)
    a = rsub.add_parser("move", help="file requests under another category")
    a.add_argument("ids", type=int, nargs="+", metavar="ID")
    a.add_argument("--category", required=True, help="the category's name (or id)")
    a.set_defaults(func=cmd_move)
    a = rsub.add_parser("unmatched", help="automatic mail (bounces) that belonged to no request")
    a.add_argument("--all", action="store_true", help="include entries already marked seen")
    a.add_argument("--seen", type=int, nargs="+", metavar="RAW_ID", help="mark these entries seen")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_unmatched)


def cmd_list(args: argparse.Namespace) -> int:
    filters = request_admin.parse_filters({k: getattr(args, k) for k in request_admin.FILTERS})
    app = App.from_env()
    with app.pool.connection() as conn:
        found = request_admin.page(conn, filters)
    if args.json:  # the API's items; the next page starts at --cursor <the last id>
        print(json.dumps(found["items"], default=str, indent=2, ensure_ascii=False))
        return 0
    if not found["items"]:
        print("no requests")
    for r in found["items"]:
        flags = (" [unparsed]" if r["unparsed"] else "") + (
            f" [{r['failed_outgoing']} bounced]" if r["failed_outgoing"] else "")
        print(f"#{r['id']:<6} {r['status']:6} {r['entries']:>3} mail  {r['customer'] or '-':30}"
              f" {r['subject'][:60]}{flags}")
    if found["next_cursor"]:
        print(f"(older requests: --cursor {found['next_cursor']})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        detail = request_admin.detail(conn, args.id)
    if args.json:
        print(json.dumps(detail, default=str, indent=2, ensure_ascii=False))
        return 0
    print(f"Request #{detail['id']}: {detail['subject']}")
    customer = detail["customer"] or "-"
    if detail["customer_name"]:
        customer = f"{detail['customer_name']} <{customer}>"
    print(f"  status {detail['status']}, category {detail['category'] or '-'},"
          f" mailbox {detail['mailbox'] or '-'}, customer {customer}"
          + (" [UNPARSED: the original is attached]" if detail["unparsed"] else ""))
    if detail["people"]:
        print(f"  on the conversation: {', '.join(detail['people'])}")
    for h in detail["history"]:
        who = h["author"] or h["from_address"] or "?"
        auto = f" (automatic: {h['automatic']})" if h["automatic"] else ""
        raw = f", raw message {h['raw_id']}" if h["raw_id"] else ""
        print(f"\n--- {h['kind']} #{h['id']} from {who} at {h['created_at']:%Y-%m-%d %H:%M}{auto}{raw}")
        print(h["body_text"].strip()[:2000])
        for a in h["attachments"]:
            print(f"  [attachment] {a['filename']} ({a['content_type']}, {a['size']} bytes)")
    for o in detail["outgoing"]:
        print(f"\n>>> {o['kind']} to {o['to_address']}: {o['state']}"
              + (f" ({o['reason']})" if o["reason"] else ""))
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        moved = categories.move_requests(conn, args.ids, args.category)
    print(f"{moved} request(s) moved to {args.category}")
    return 0


def cmd_unmatched(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        if args.seen:
            request_admin.mark_unmatched_seen(conn, args.seen)
        rows = request_admin.unmatched(conn, args.all, args.limit)
    if args.json:
        print(json.dumps(rows, default=str, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no unmatched automatic mail")
    for r in rows:
        seen = " (seen)" if r["seen_at"] else ""
        print(f"raw {r['raw_id']:<7} {r['created_at']:%Y-%m-%d %H:%M} {r['kind']:8} from {r['from_address'] or '?'}"
              f": {r['subject'] or ''}{seen}\n    {r['reason']}"
              + (f"; failed recipient {r['recipient']} ({r['status'] or 'no status'})" if r["recipient"] else ""))
    return 0
