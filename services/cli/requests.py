"""`deskmail requests list | show | unmatched`: what the pipeline made of the mail.

`show` prints a request with everyone on its conversation, every history
entry (incoming mail with its automatic-mail flag and raw message id,
outgoing mail, notes) with its attachments, and the outgoing mail with its
delivery state (a bounce marks it failed). `unmatched` lists automatic mail
that belonged to no request (bounces of mail Deskmail did not send): it is
kept for a person to look at instead of being dropped. `--json` everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.app import App


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("requests", help="list and show requests")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = rsub.add_parser("list", help="list requests, newest first")
    a.add_argument("--mailbox", type=int)
    a.add_argument("--status", choices=["open", "closed"])
    a.add_argument("--unparsed", action="store_true", help="only mail that could not be parsed")
    a.add_argument("--customer", help="only this customer's requests (address)")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    a = rsub.add_parser("show", help="a request with its history, attachments and outgoing mail")
    a.add_argument("id", type=int)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_show)
    a = rsub.add_parser("unmatched", help="automatic mail (bounces) that belonged to no request")
    a.add_argument("--all", action="store_true", help="include entries already marked seen")
    a.add_argument("--seen", type=int, nargs="+", metavar="RAW_ID", help="mark these entries seen")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_unmatched)


def list_requests(conn: Any, mailbox: int | None = None, status: str | None = None,
                  unparsed: bool = False, limit: int = 50, customer: str | None = None) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT r.id, r.subject, r.status, r.unparsed, r.mailbox_id, r.created_at, r.updated_at,"
        " c.address AS customer, cat.name AS category,"
        " (SELECT count(*) FROM history h WHERE h.request_id = r.id) AS entries,"
        " (SELECT count(*) FROM outgoing_mail o WHERE o.request_id = r.id AND o.state = 'failed')"
        " AS failed_outgoing"
        " FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN categories cat ON cat.id = r.category_id"
        " WHERE (%(m)s::bigint IS NULL OR r.mailbox_id = %(m)s)"
        " AND (%(s)s::text IS NULL OR r.status = %(s)s) AND (NOT %(u)s OR r.unparsed)"
        " AND (%(c)s::text IS NULL OR lower(c.address) = lower(%(c)s))"
        " ORDER BY r.id DESC LIMIT %(l)s",
        {"m": mailbox, "s": status, "u": unparsed, "l": limit, "c": customer},
    ).fetchall()


def request_detail(conn: Any, request_id: int) -> dict[str, Any] | None:
    request = conn.execute(
        "SELECT r.*, c.address AS customer, c.name AS customer_name, cat.name AS category,"
        " m.address AS mailbox"
        " FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN categories cat ON cat.id = r.category_id"
        " LEFT JOIN mailboxes m ON m.id = r.mailbox_id WHERE r.id = %s", (request_id,)
    ).fetchone()
    if request is None:
        return None
    request["people"] = [r["address"] for r in conn.execute(
        "SELECT address FROM request_people WHERE request_id = %s ORDER BY address", (request_id,))]
    history = conn.execute(
        "SELECT id, kind, outcome, message_id, from_address, from_name, subject, body_text,"
        " body_html IS NOT NULL AS has_html, automatic, author, raw_id, created_at"
        " FROM history WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
    attachments: dict[int, list[dict[str, Any]]] = {}
    for a in conn.execute(
        "SELECT a.history_id, a.filename, a.content_type, a.size, a.sha256, a.content_id, a.inline"
        " FROM attachments a JOIN history h ON h.id = a.history_id WHERE h.request_id = %s ORDER BY a.id",
        (request_id,),
    ):
        attachments.setdefault(a.pop("history_id"), []).append(a)
    for entry in history:
        entry["attachments"] = attachments.get(entry["id"], [])
    request["history"] = history
    request["outgoing"] = conn.execute(
        "SELECT id, kind, message_id, to_address, agent_name, state, reason, attempts, created_at, sent_at"
        " FROM outgoing_mail WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
    return request


def unmatched_mail(conn: Any, include_seen: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT raw_id, mailbox_id, kind, reason, from_address, subject, original_message_id, recipient,"
        " status, created_at, seen_at FROM unmatched_mail WHERE %s OR seen_at IS NULL"
        " ORDER BY created_at DESC, raw_id DESC LIMIT %s",
        (include_seen, limit),
    ).fetchall()


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = list_requests(conn, args.mailbox, args.status, args.unparsed, args.limit, args.customer)
    if args.json:
        print(json.dumps(rows, default=str, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no requests")
    for r in rows:
        flags = (" [unparsed]" if r["unparsed"] else "") + (
            f" [{r['failed_outgoing']} bounced]" if r["failed_outgoing"] else "")
        print(f"#{r['id']:<6} {r['status']:6} {r['entries']:>3} mail  {r['customer'] or '-':30}"
              f" {r['subject'][:60]}{flags}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        detail = request_detail(conn, args.id)
    if detail is None:
        print(f"error: there is no request #{args.id}", file=sys.stderr)
        return 1
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


def cmd_unmatched(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        if args.seen:
            conn.execute("UPDATE unmatched_mail SET seen_at = now() WHERE raw_id = ANY(%s) AND seen_at IS NULL",
                         (args.seen,))
            conn.commit()
        rows = unmatched_mail(conn, args.all, args.limit)
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
