"""`deskmail requests list | show`: what the pipeline made of the mail."""

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
    a.add_argument("--unparsed", action="store_true")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    a = rsub.add_parser("show", help="a request with its history, attachments and outgoing mail")
    a.add_argument("id", type=int)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_show)


def list_requests(conn: Any, mailbox: int | None = None, status: str | None = None,
                  unparsed: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT r.id, r.subject, r.status, r.unparsed, r.mailbox_id, r.created_at, r.updated_at,"
        " c.address AS customer, cat.name AS category,"
        " (SELECT count(*) FROM history h WHERE h.request_id = r.id) AS entries"
        " FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN categories cat ON cat.id = r.category_id"
        " WHERE (%(m)s::bigint IS NULL OR r.mailbox_id = %(m)s)"
        " AND (%(s)s::text IS NULL OR r.status = %(s)s) AND (NOT %(u)s OR r.unparsed)"
        " ORDER BY r.id DESC LIMIT %(l)s",
        {"m": mailbox, "s": status, "u": unparsed, "l": limit},
    ).fetchall()


def request_detail(conn: Any, request_id: int) -> dict[str, Any] | None:
    request = conn.execute(
        "SELECT r.*, c.address AS customer, c.name AS customer_name, cat.name AS category"
        " FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN categories cat ON cat.id = r.category_id WHERE r.id = %s", (request_id,)
    ).fetchone()
    if request is None:
        return None
    history = conn.execute(
        "SELECT id, kind, outcome, message_id, from_address, from_name, subject, body_text, automatic,"
        " author, raw_id, created_at FROM history WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
    for entry in history:
        entry["attachments"] = conn.execute(
            "SELECT filename, content_type, size, sha256, content_id, inline FROM attachments"
            " WHERE history_id = %s ORDER BY id", (entry["id"],)
        ).fetchall()
    request["history"] = history
    request["outgoing"] = conn.execute(
        "SELECT id, kind, message_id, to_address, agent_name, state, reason, attempts, created_at, sent_at"
        " FROM outgoing_mail WHERE request_id = %s ORDER BY id", (request_id,)
    ).fetchall()
    return request


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = list_requests(conn, args.mailbox, args.status, args.unparsed, args.limit)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    for r in rows:
        flag = " [unparsed]" if r["unparsed"] else ""
        print(f"#{r['id']:<6} {r['status']:6} {r['entries']:>3} mail  {r['customer'] or '-':30} {r['subject'][:60]}{flag}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        detail = request_detail(conn, args.id)
    if detail is None:
        print(f"error: no request {args.id}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(detail, default=str, indent=2, ensure_ascii=False))
        return 0
    print(f"Request #{detail['id']}: {detail['subject']}")
    print(f"  status {detail['status']}, category {detail['category'] or '-'}, customer {detail['customer'] or '-'}"
          + (" [UNPARSED]" if detail["unparsed"] else ""))
    for h in detail["history"]:
        who = h["author"] or h["from_address"] or "?"
        auto = f" (automatic: {h['automatic']})" if h["automatic"] else ""
        print(f"\n--- {h['kind']} #{h['id']} from {who} at {h['created_at']:%Y-%m-%d %H:%M}{auto}")
        print(h["body_text"].strip()[:2000])
        for a in h["attachments"]:
            print(f"  [attachment] {a['filename']} ({a['content_type']}, {a['size']} bytes)")
    for o in detail["outgoing"]:
        print(f"\n>>> {o['kind']} to {o['to_address']}: {o['state']}" + (f" ({o['reason']})" if o["reason"] else ""))
    return 0
