"""Recognising automatic mail, so that the replier never answers a machine (invariant 7).

Signals, strongest first: our own address as sender, bounces and delivery
reports, out-of-office notes, other auto-replies (RFC 3834), generated mail,
mailing lists, bulk mail. For bounces the failed recipient and the id of
the original message are taken out of the report.
"""

from __future__ import annotations

import re

from services.parser.headers import Headers, parse_message_ids
from shared.parsed import Bounce

_DAEMON = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"(?:undeliver(?:ed|able)|delivery (?:status notification|failure|has failed)"
    r"|mail delivery (?:failed|failure|system)|returned mail|failure notice"
    r"|unzustellbar|nicht zustellbar|non remis|non recapitabile)",
    re.IGNORECASE,
)
_OOO_SUBJECT = re.compile(
    r"(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)|autoreply"
    r"|abwesenheitsnotiz|automatische antwort|abwesend|absence du bureau|r[ée]ponse automatique"
    r"|respuesta autom[aá]tica|fuera de la oficina|risposta automatica|fuori sede"
    r"|afwezigheidsbericht|automatisch antwoord|on vacation|vacation reply|away from (?:the )?office)",
    re.IGNORECASE,
)
_LIST_HEADERS = (
    "list-id",
    "list-unsubscribe",
    "list-post",
    "list-help",
    "list-subscribe",
    "list-owner",
    "list-archive",
    "mailing-list",
    "x-mailing-list",
)
_FIELD = re.compile(r"^([A-Za-z-]+)\s*:\s*(.*)$", re.MULTILINE)
_ADDRESS_IN_TEXT = re.compile(r"<?([A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?")


def _value(headers: Headers, name: str) -> str:
    value = headers.get(name)
    return value.decode("latin-1").strip().lower() if value else ""


def classify(
    headers: Headers,
    from_address: str | None,
    subject: str,
    content_type: str,
    report_type: str,
    own_addresses: frozenset[str],
) -> str | None:
    """The kind of automatic mail this is (see shared.parsed.AUTOMATIC_KINDS), None for a person."""
    sender = (from_address or "").lower()
    if sender and sender in own_addresses:
        return "own"
    if content_type == "multipart/report" and report_type == "disposition-notification":
        return "auto_replied"  # a read receipt (RFC 8098)
    if content_type in ("multipart/report", "message/delivery-status"):
        return "bounce"
    if _DAEMON.match(sender) or (_BOUNCE_SUBJECT.search(subject) and _value(headers, "return-path") in ("<>", "")):
        return "bounce"
    auto_submitted = _value(headers, "auto-submitted")
    if "x-autoreply" in headers or "x-autorespond" in headers or _OOO_SUBJECT.search(subject):
        return "out_of_office"
    if auto_submitted.startswith("auto-replied"):
        return "auto_replied"
    if auto_submitted and not auto_submitted.startswith("no"):
        return "auto_generated"
    if "x-auto-response-suppress" in headers:
        return "auto_generated"
    precedence = _value(headers, "precedence") or _value(headers, "x-precedence")
    if precedence == "list" or any(name in headers for name in _LIST_HEADERS):
        return "list"
    if precedence in ("bulk", "junk"):
        return "bulk"
    if _value(headers, "return-path") == "<>":
        return "auto_generated"  # null sender: only machines send that
    return None


def bounce_from_report(status_text: str | None, original_headers: Headers | None, body_text: str) -> Bounce:
    """Failed recipient, status and original Message-ID from a delivery report.

    `status_text` is the message/delivery-status part, `original_headers`
    the header section of the returned message; a bounce without them (old
    mailers write prose) is read from its text as well as can be done.
    """
    recipient = status = None
    if status_text:
        fields: dict[str, str] = {}
        for match in _FIELD.finditer(status_text):
            fields.setdefault(match.group(1).lower(), match.group(2).strip())
        for name in ("final-recipient", "original-recipient"):
            if name in fields:
                recipient = fields[name].split(";", 1)[-1].strip().strip("<>") or None
                break
        status = fields.get("status") or None
    original = None
    if original_headers is not None:
        value = original_headers.get("message-id")
        ids = parse_message_ids(value.decode("latin-1")) if value else []
        original = ids[0] if ids else None
    if original is None:
        match = re.search(r"^\s*Message-ID:\s*(.+)$", body_text, re.IGNORECASE | re.MULTILINE)
        ids = parse_message_ids(match.group(1)) if match else []
        original = ids[0] if ids else None
    if recipient is None:
        recipient = _recipient_from_prose(body_text)
    return Bounce(original_message_id=original, recipient=recipient, status=status)


def _recipient_from_prose(text: str) -> str | None:
    # qmail: "<user@example.com>:" ; Exim: an indented address after the
    # "could not be delivered" sentence; Postfix without DSN: "<user@x>: ...".
    for line in text.splitlines()[:80]:
        stripped = line.strip()
        if stripped.startswith("<") and ">:" in stripped:
            match = _ADDRESS_IN_TEXT.match(stripped)
            if match:
                return match.group(1)
        if line.startswith(("  ", "\t")) and "@" in stripped and " " not in stripped:
            match = _ADDRESS_IN_TEXT.fullmatch(stripped)
            if match:
                return match.group(1)
    return None
