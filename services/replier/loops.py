"""Should this mail get an auto-reply? The loop guards of invariant 7.

Two pure checks, both returning None for "go ahead" or a plain reason that
the replier logs and records instead of sending:

- `auto_reply_refusal`: what the mail itself says. The parser has already
  read RFC 3834's signals (Auto-Submitted, Precedence, List-*,
  X-Auto-Response-Suppress, delivery reports) into `parsed.automatic`; here we
  add the sender addresses that never want an answer (mailer-daemon,
  no-reply, bounce and list addresses) and Deskmail's own mailboxes, whose
  mail answered in turn would start a loop between two of our mailboxes.
- `rate_limit_refusal`: how many auto-replies this sender already got, over
  several windows, as a last stop against loops no header reveals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from shared.parsed import ParsedMessage

# Local parts, compared lowercased with "+tag" removed and without ".", "-"
# and "_", so "No_Reply+x", "no.reply" and "NOREPLY" are all "noreply".
_DAEMON_LOCALPARTS = frozenset({"mailerdaemon", "postmaster"})
# Substrings: "jira-noreply", "noreply-12345" and "info.donotreply" are all no-reply.
_NOREPLY_MARKERS = ("noreply", "donotreply", "dontreply", "noresponse", "donotrespond")
# Prefix: VERP return paths look like "bounces+1234-user=x.org@lists.example".
_BOUNCE_PREFIX = "bounce"
_LIST_LOCALPARTS = frozenset({"listserv", "majordomo", "mailman", "listproc"})
_SEPARATORS_RE = re.compile(r"[.\-_]")

REASON_NO_SENDER = "no sender address"
REASON_UNPARSED = "message could not be parsed, so it may be automatic mail"
REASON_BULK = "bulk or list mail"
REASON_BOUNCE = "bounce"
REASON_DAEMON = "sender is a mailer-daemon"
REASON_NOREPLY = "sender is a no-reply address"
REASON_BOUNCE_ADDRESS = "sender is a bounce address"
REASON_LIST_ADDRESS = "sender is a mailing-list address"
REASON_OWN = "sender is one of Deskmail's own mailboxes"

DEFAULT_RATE_WINDOWS: list[tuple[timedelta, int]] = [
    (timedelta(minutes=10), 1),
    (timedelta(hours=1), 5),
    (timedelta(days=1), 20),
]
_UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_WINDOW_RE = re.compile(r"(\d+)([smhdw]):(\d+)")


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return local.strip('"').lower(), domain.lower()


def _without_tag(local: str) -> str:
    return local.split("+", 1)[0]


def _address_refusal(address: str, own: frozenset[str]) -> str | None:
    local, domain = _split(address)
    if not local or not domain:
        return REASON_NO_SENDER
    if f"{local}@{domain}" in own or f"{_without_tag(local)}@{domain}" in own:
        return REASON_OWN
    # "No_Reply+x" -> "noreply"; list addresses below need the "-" kept.
    plain = _SEPARATORS_RE.sub("", _without_tag(local))
    if plain in _DAEMON_LOCALPARTS:
        return REASON_DAEMON
    if any(marker in plain for marker in _NOREPLY_MARKERS):
        return REASON_NOREPLY
    if plain.startswith(_BOUNCE_PREFIX):
        return REASON_BOUNCE_ADDRESS
    tagless = _without_tag(local)
    if plain in _LIST_LOCALPARTS or tagless.startswith("owner-") or tagless.endswith("-request"):
        return REASON_LIST_ADDRESS
    return None


def _normalise_own(own_addresses: Iterable[str]) -> frozenset[str]:
    return frozenset("@".join(_split(a)) for a in own_addresses)


def auto_reply_refusal(parsed: ParsedMessage, *, own_addresses: frozenset[str]) -> str | None:
    """None if `parsed` may get an auto-reply, else the reason it may not.

    Checks the From address and every Reply-To address: the answer goes to
    one of them, and a loop through either is still a loop.
    """
    if parsed.unparsed is not None:
        return REASON_UNPARSED
    if parsed.bounce is not None or parsed.automatic == "bounce":
        return REASON_BOUNCE
    if parsed.automatic in ("bulk", "list"):
        return REASON_BULK
    if parsed.automatic:
        return f"automatic mail ({parsed.automatic})"
    if parsed.from_ is None or not parsed.from_.address.strip():
        return REASON_NO_SENDER
    own = _normalise_own(own_addresses)
    for addr in [parsed.from_, *parsed.reply_to]:
        reason = _address_refusal(addr.address, own)
        if reason is not None:
            return reason
    return None


def _span_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rate_limit_refusal(
    sent_times: Sequence[datetime],
    now: datetime,
    windows: Sequence[tuple[timedelta, int]] = DEFAULT_RATE_WINDOWS,
) -> str | None:
    """None if one more auto-reply to this sender fits every window, else why not.

    `sent_times` are when this sender's earlier auto-replies went out. A time
    after `now` (clock skew between replicas) counts as recent, erring on the
    side of sending less.
    """
    for span, limit in windows:
        since = now - span
        count = sum(1 for t in sent_times if t > since)
        if count >= limit:
            return (
                f"rate limit: {count} auto-replies to this sender in the last "
                f"{_span_text(span)} (limit {limit})"
            )
    return None


def parse_rate_windows(text: str) -> list[tuple[timedelta, int]]:
    """Parse "10m:1,1h:5,1d:20" (units s, m, h, d, w) into rate windows.

    Raises ValueError naming the part that is wrong. An empty setting is an
    error too: invariant 7 wants a rate limit, not none.
    """
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise ValueError("no rate windows given (expected e.g. '10m:1,1h:5,1d:20')")
    windows: list[tuple[timedelta, int]] = []
    for part in parts:
        m = _WINDOW_RE.fullmatch(part.replace(" ", ""))
        if m is None:
            raise ValueError(f"bad rate window {part!r}: expected <number><s|m|h|d|w>:<count>")
        amount, unit, limit = int(m.group(1)), m.group(2), int(m.group(3))
        if amount == 0:
            raise ValueError(f"bad rate window {part!r}: the span must be longer than zero")
        if limit == 0:
            raise ValueError(f"bad rate window {part!r}: the count must be at least 1")
        windows.append((amount * _UNITS[unit], limit))
    return windows
