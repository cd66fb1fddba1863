"""Raw MIME bytes to a `ParsedMessage`: the domain logic of the parser stage.

`parse_message` never raises. Bad input is read as far as it can be and
what was wrong is listed in `defects`; input that is not mail at all gets
`unparsed` set, so that it still reaches a person (invariant 6). The
safety net at the top only catches what the robust path below missed.
"""

from __future__ import annotations

import logging
import re

from services.parser.automatic import bounce_from_report, classify
from services.parser.content import Collected, collect
from services.parser.headers import (
    Headers,
    HeaderText,
    parse_addresses,
    parse_date,
    parse_message_ids,
)
from services.parser.htmlbody import sanitize, text_as_html, to_text
from services.parser.quotes import strip_quoted
from services.parser.structure import parse_tree
from shared.parsed import Address, ParsedMessage

log = logging.getLogger(__name__)

# A header section with none of these is not a mail header section.
_MAIL_HEADERS = (
    "from", "to", "cc", "subject", "date", "message-id", "received", "return-path",
    "mime-version", "content-type", "sender", "reply-to", "delivered-to", "in-reply-to",
    "references", "x-mailer", "bcc", "resent-from", "envelope-to", "x-original-to",
)  # fmt: skip
_LINE_BREAKS = re.compile(r"[\r\n]+")


def parse_message(raw: bytes, *, own_addresses: frozenset[str] = frozenset()) -> ParsedMessage:
    """Parse one raw message; never raises."""
    try:
        return _parse(bytes(raw), frozenset(a.lower() for a in own_addresses))
    except Exception as exc:  # the safety net: a bug must not lose a mail
        log.exception("parser failure")
        reason = f"parser failure: {type(exc).__name__}"
        return ParsedMessage(unparsed=reason, defects=[f"{reason}: {str(exc)[:200]}"])


def _parse(raw: bytes, own_addresses: frozenset[str]) -> ParsedMessage:
    defects: list[str] = []
    if not raw.strip():
        return ParsedMessage(unparsed="empty message", defects=["the message is empty"])
    root = parse_tree(raw, defects)
    headers = root.headers
    header_text = HeaderText(headers, raw, defects)
    parsed = ParsedMessage(defects=defects)
    if not any(name in headers for name in _MAIL_HEADERS):
        parsed.unparsed = "no mail header section found"
    _read_headers(parsed, headers, header_text, defects)
    collected = collect(root, defects)
    _read_body(parsed, collected)
    parsed.attachments = collected.attachments
    sender = parsed.from_.address if parsed.from_ else None
    parsed.automatic = classify(
        headers,
        sender,
        parsed.subject,
        root.content_type,
        root.params.get("report-type", "").lower(),
        own_addresses,
    )
    if parsed.automatic == "bounce":
        parsed.bounce = bounce_from_report(
            collected.delivery_status, collected.returned_headers, parsed.body_text
        )
    return parsed


def _addresses(headers: Headers, text: HeaderText, name: str, defects: list[str]) -> list[Address]:
    result: list[Address] = []
    for value in headers.get_all(name):
        result.extend(parse_addresses(text.raw(value), defects))
    return result


def _read_headers(parsed: ParsedMessage, headers: Headers, text: HeaderText, defects: list[str]) -> None:
    parsed.reply_to = _addresses(headers, text, "reply-to", defects)
    parsed.to = _addresses(headers, text, "to", defects)
    parsed.cc = _addresses(headers, text, "cc", defects)
    parsed.from_ = _sender(headers, text, parsed.reply_to, defects)
    subject = text.get("subject") or ""
    parsed.subject = _LINE_BREAKS.sub("", subject).replace("\t", " ").lstrip()
    parsed.date = _date(headers, text, defects)
    ids = parse_message_ids(text.get("message-id"))
    parsed.message_id = ids[0] if ids else None
    parsed.in_reply_to = parse_message_ids(text.get("in-reply-to"))
    parsed.references = parse_message_ids(text.get("references"))


def _sender(headers: Headers, text: HeaderText, reply_to: list[Address], defects: list[str]) -> Address | None:
    for address in _addresses(headers, text, "from", defects):
        if "@" in address.address:
            return address
    defects.append("From missing or without an address")
    for address in reply_to + _addresses(headers, text, "sender", defects):
        if "@" in address.address:
            return address
    return None


def _date(headers: Headers, text: HeaderText, defects: list[str]) -> str | None:
    value = text.get("date")
    date = parse_date(value, defects)
    if date is None:
        # The newest Received stamp is the next best thing to a Date header.
        received = headers.get("received")
        if received and b";" in received:
            date = parse_date(text.raw(received).rpartition(";")[2], [])
        if value is None:
            defects.append("Date missing")
    return date


def _read_body(parsed: ParsedMessage, collected: Collected) -> None:
    texts: list[str] = []
    htmls: list[str] = []
    any_html = any(s.html is not None for s in collected.segments)
    for segment in collected.segments:
        safe = sanitize(segment.html) if segment.html is not None else None
        if segment.text is not None:
            text = segment.text
        elif safe is not None:
            text = to_text(safe)
        else:
            text = ""
        if text.strip():
            texts.append(text if text.endswith("\n") else text + "\n")
        if any_html:
            if safe is not None:
                htmls.append(safe)
            elif text.strip():
                htmls.append(text_as_html(text))
    parsed.body_text = "\n".join(texts)
    parsed.reply_text = strip_quoted(parsed.body_text)
    parsed.body_html = "\n".join(htmls) if any_html else None
