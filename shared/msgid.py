"""Deskmail's own outgoing Message-IDs: recognisable and tamper-evident.

Every mail the replier sends carries a Message-ID of the form

    dm.<request_id>.<outgoing_id>.<signature>@<domain>

where the signature is HMAC-SHA256 over ``dm.<request_id>.<outgoing_id>``,
truncated to 80 bits and written as 16 lowercase base32 characters. When a
customer answers, their mail's In-Reply-To/References carry this id back, and
the ticketer can map it to the request without a database lookup and without
trusting it blindly: anyone can type ``dm.42.1.xxx@...`` into a header, only
Deskmail can produce a signature that verifies, so a forged id cannot attach a
mail to somebody else's request.

The domain is not signed: it only makes the id globally unique and may differ
from mailbox to mailbox; changing it does not change what the id points at.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_PREFIX = "dm"
_SIG_BYTES = 10  # 80 bits: 16 base32 characters, no padding
_SIG_CHARS = 16
# Ids fit PostgreSQL bigint; canonical decimal (no leading zeros), so each
# request/outgoing pair has exactly one signed spelling.
_ID_RE = re.compile(
    r"dm\.([1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})\.([a-z2-7]{16})@([A-Za-z0-9.-]+)",
    re.ASCII | re.IGNORECASE,
)
_DOMAIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", re.ASCII)
_MAX_ID = 10**18 - 1


def _signature(request_id: str, outgoing_id: str, key: bytes) -> str:
    mac = hmac.new(key, f"{_PREFIX}.{request_id}.{outgoing_id}".encode("ascii"), hashlib.sha256)
    return base64.b32encode(mac.digest()[:_SIG_BYTES]).decode("ascii").lower()


def make_message_id(request_id: int, outgoing_id: int, key: bytes, domain: str) -> str:
    """Return a signed Message-ID (without angle brackets) for an outgoing mail.

    Raises ValueError for an empty key, ids out of range or a domain that is
    not a plain host name.
    """
    if not key:
        raise ValueError("message-id key must not be empty")
    # bool is an int subclass; True as a request id is a caller's bug.
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise ValueError(f"request_id must be an int, got {request_id!r}")
    if isinstance(outgoing_id, bool) or not isinstance(outgoing_id, int):
        raise ValueError(f"outgoing_id must be an int, got {outgoing_id!r}")
    if not 1 <= request_id <= _MAX_ID:
        raise ValueError(f"request_id out of range: {request_id}")
    if not 0 <= outgoing_id <= _MAX_ID:
        raise ValueError(f"outgoing_id out of range: {outgoing_id}")
    if not _DOMAIN_RE.fullmatch(domain) or len(domain) > 253:
        raise ValueError(f"not a plain domain name: {domain!r}")
    rid, oid = str(request_id), str(outgoing_id)
    return f"{_PREFIX}.{rid}.{oid}.{_signature(rid, oid, key)}@{domain}"


def request_id_from_message_id(message_id: str, key: bytes) -> int | None:
    """Return the request id carried by one of our Message-IDs, or None.

    None for anything that is not a Deskmail id or whose signature does not
    verify (tampered request id, outgoing id or signature, wrong key). Input
    may be wrapped in angle brackets and surrounded by whitespace, as it comes
    out of a References header.
    """
    if not key or not isinstance(message_id, str):
        return None
    text = message_id.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    m = _ID_RE.fullmatch(text)
    if m is None:
        return None
    rid, oid, sig = m.group(1), m.group(2), m.group(3)
    # Some systems lowercase or uppercase ids; base32 is case-insensitive, so
    # compare in one case. compare_digest: no timing oracle on the signature.
    expected = _signature(rid, oid, key)
    if not hmac.compare_digest(expected.encode("ascii"), sig.lower().encode("ascii")):
        return None
    return int(rid)
