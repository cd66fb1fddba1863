"""Email addresses that are safe to put into a header of outgoing mail.

Used when a reply is queued (shared/staff_replies.py) and when it is
composed (services/replier/compose.py): both refuse the same addresses.
"""

from __future__ import annotations

import re

# C0 controls (CR, LF, TAB, NUL, ...), DEL, C1 controls (NEL, ...), the
# Unicode line and paragraph separators.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
WS_RE = re.compile(r"\s+")
# RFC 5322 dot-atom local part; quoted local parts are not accepted.
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def validate_address(address: str) -> str:
    """Return `address` (domain IDNA-encoded) if it is a plain addr-spec, else ValueError.

    Refuses anything that could break out of a header: CR, LF, whitespace,
    angle brackets, commas, quotes, several or no @.
    """
    if not isinstance(address, str) or not address:
        raise ValueError("empty email address")
    if CONTROL_RE.search(address) or WS_RE.search(address):
        raise ValueError(f"invalid email address {address!r}: control characters or whitespace")
    if any(c in address for c in '<>,;"()\\[]'):
        raise ValueError(f"invalid email address {address!r}: forbidden character")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"invalid email address {address!r}: not local@domain")
    if not _LOCAL_RE.fullmatch(local):
        raise ValueError(f"invalid email address {address!r}: bad local part")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise ValueError(f"invalid email address {address!r}: bad domain") from e
    labels = domain.rstrip(".").split(".")
    if len(domain) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(f"invalid email address {address!r}: bad domain")
    if len(local) > 64:
        raise ValueError(f"invalid email address {address!r}: local part too long")
    return f"{local}@{domain}"
