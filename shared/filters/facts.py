"""What the rules look at, read from the database for a set of stored mails.

The ticketer reads the facts of each batch's new mails, the admin's dry run
those of a mailbox's last mails: the same reading, so a dry run shows what
the ticketer would do. Headers (for `header` and `recipient` conditions) are
read from the raw mail's first HEAD_BYTES only when some rule needs them.
"""

from __future__ import annotations

import email.parser
import email.policy
import re

import psycopg
from psycopg.rows import tuple_row

from shared.filters.rules import RECIPIENT_HEADERS, MailFacts
from shared.parsed import Address, ParsedMessage
from shared.spam.verdict import Verdict

HEAD_BYTES = 64 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_ADDRESS = re.compile(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")


def _forms(addresses: list[Address]) -> list[str]:
    """Each address alone and with its display name: equals can name either."""
    out: list[str] = []
    for a in addresses:
        if a.address:
            out.append(a.address)
        if a.name:
            out.append(f"{a.name} <{a.address}>" if a.address else a.name)
    return out


def read_headers(conn: psycopg.Connection, raw_ids: list[int]) -> dict[int, dict[str, list[str]]]:
    """raw_id -> lower-cased header name -> decoded values, from each mail's head."""
    if not raw_ids:
        return {}
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    out: dict[int, dict[str, list[str]]] = {}
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        rows = cur.execute("SELECT id, substring(data FROM 1 FOR %s) FROM raw_messages WHERE id = ANY(%s)",
                           (HEAD_BYTES, raw_ids)).fetchall()
    for raw_id, head in rows:
        head = bytes(head)
        end = _HEAD_END.search(head)
        message = parser.parsebytes(head[: end.start()] if end else head)
        headers: dict[str, list[str]] = {}
        for name, value in message.items():
            try:
                text = str(value)
            except Exception:  # noqa: BLE001 - a header the policy cannot decode: its raw form
                text = str(getattr(value, "_value", ""))
            headers.setdefault(name.lower(), []).append(text)
        out[raw_id] = headers
    return out


def facts_of(parsed: ParsedMessage, verdict: Verdict | None,
             headers: dict[str, list[str]] | None = None) -> MailFacts:
    headers = headers or {}
    recipients = [a.address for a in [*parsed.to, *parsed.cc] if a.address]
    for name in RECIPIENT_HEADERS:
        for value in headers.get(name, []):
            recipients += _ADDRESS.findall(value)
    return MailFacts(
        from_=_forms([parsed.from_] if parsed.from_ else []),
        to=_forms(parsed.to),
        cc=_forms(parsed.cc),
        recipient=list(dict.fromkeys(r.lower() for r in recipients)),
        subject=parsed.subject,
        body=parsed.body_text,
        headers=headers,
        attachments=any(not a.inline for a in parsed.attachments),
        automatic=parsed.automatic is not None,
        spam_score=verdict.score if verdict is not None else None,
    )
