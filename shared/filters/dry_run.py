"""A rule's dry run: what it would have done to a mailbox's last mails, before it is saved.

The rule is checked as saving would check it (rules.clean: a bad regex is
refused here too), then matched against the facts of the mailbox's newest
`last` mails, read exactly as the ticketer reads them (facts.py): parsed
form, spam verdict, and the headers the rule names. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from shared.filters.facts import facts_of, read_headers
from shared.filters.rules import Rule, clean, evaluate
from shared.parsed import ParsedMessage
from shared.spam.verdict import Verdict

MAX_LAST = 1000


def dry_run(conn: psycopg.Connection, mailbox_id: int, values: Mapping[str, Any], last: int = 50
            ) -> list[dict[str, Any]]:
    """One row per mail, newest first: its sender and subject, whether the rule matched, and what it did."""
    rule = Rule.from_row({"id": 0, "mailbox_id": mailbox_id, "position": 0, **clean(values)})
    last = max(1, min(int(last), MAX_LAST))
    mails = conn.execute(
        "SELECT r.id AS raw_id, r.received_at, p.parsed, h.request_id, v.state, v.spam, v.score, v.action,"
        " v.dmarc, v.dmarc_policy, v.dmarc_domain, v.symbols, v.problem"
        " FROM raw_messages r JOIN parsed_messages p ON p.raw_id = r.id"
        " LEFT JOIN history h ON h.raw_id = r.id LEFT JOIN spam_verdicts v ON v.raw_id = r.id"
        " WHERE r.mailbox_id = %s ORDER BY r.id DESC LIMIT %s", (mailbox_id, last)).fetchall()
    headers = read_headers(conn, [m["raw_id"] for m in mails], rule.headers)
    out = []
    for m in mails:
        parsed = ParsedMessage.from_json(m["parsed"])
        verdict = Verdict.from_row(m) if m["state"] else None
        decision = evaluate([rule], facts_of(parsed, verdict, headers.get(m["raw_id"])))
        out.append({
            "raw_id": m["raw_id"], "request_id": m["request_id"], "received_at": m["received_at"],
            "from": parsed.from_.address if parsed.from_ else None, "subject": parsed.subject,
            "matched": bool(decision.history),
            "would": decision.history[0] if decision.history else None,
        })
    return out
