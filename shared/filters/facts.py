"""What the rules look at, read from the database for a set of stored mails.

The ticketer reads the facts of each batch's new mails, the admin's dry run
those of a mailbox's last mails: the same reading, so a dry run shows what
the ticketer would do. Headers (for `header` and `recipient` conditions) are
read from the raw mail's first HEAD_BYTES only when some rule needs them, and
only the ones rules name.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header

import psycopg
from psycopg.rows import tuple_row

from shared.filters.rules import RECIPIENT_HEADERS, MailFacts
from shared.parsed import Address, ParsedMessage
from shared.spam.verdict import Verdict

HEAD_BYTES = 64 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(rb"\r?\n[ \t]+")
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


def read_headers(conn: psycopg.Connection, raw_ids: list[int], wanted: set[str]
                 ) -> dict[int, dict[str, list[str]]]:
    """raw_id -> lower-cased header name -> decoded values, for the `wanted` names only.

    The head is split by hand and only wanted fields are decoded (RFC 2047):
    the email package's full header parsing costs about 0.8 ms a mail, this
    a few microseconds.
    """
    if not raw_ids or not wanted:
        return {}
    out: dict[int, dict[str, list[str]]] = {}
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        rows = cur.execute("SELECT id, substring(data FROM 1 FOR %s) FROM raw_messages WHERE id = ANY(%s)",
                           (HEAD_BYTES, raw_ids)).fetchall()
    for raw_id, head in rows:
        out[raw_id] = parse_headers(bytes(head), wanted)
    return out


def parse_headers(raw: bytes, wanted: set[str]) -> dict[str, list[str]]:
    head = raw[:HEAD_BYTES]
    end = _HEAD_END.search(head)
    head = _FOLD.sub(b" ", head[: end.start()] if end else head)
    headers: dict[str, list[str]] = {}
    for line in head.split(b"\n"):
        name, colon, value = line.partition(b":")
        key = name.strip().decode("latin-1").lower()
        if colon and key in wanted:
            headers.setdefault(key, []).append(_decode(value.strip().decode("utf-8", "replace")))
    return headers


def _decode(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):  # a broken encoded word: as written
        return value


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
