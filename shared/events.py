"""The events that travel between stages: small JSON envelopes (claim check).

An event names what happened and carries ids only; bodies and attachments stay
in PostgreSQL (invariant 3). Every envelope has a schema version. `decode`
reads any version this code has ever written, upgrading old shapes to the
current one, so a queue that still holds old events drains after an upgrade.

    {"type": "mail.received", "v": 1, "ids": {"raw_id": 17, "mailbox_id": 2}}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAIL_RECEIVED = "mail.received"  # fetcher -> parser: a raw message is stored
MAIL_PARSED = "mail.parsed"  # parser -> ticketer: its parsed form is stored
REQUEST_CREATED = "request.created"  # ticketer -> replier
REQUEST_UPDATED = "request.updated"  # ticketer -> replier
REPLY_QUEUED = "reply.queued"  # staff reply (CLI, web) -> replier

CURRENT_VERSION: dict[str, int] = {
    MAIL_RECEIVED: 1,
    MAIL_PARSED: 1,
    REQUEST_CREATED: 1,
    REQUEST_UPDATED: 1,
    REPLY_QUEUED: 1,
}

# Which ids each type must carry; checked on decode so a bad event fails
# loudly at the boundary instead of deep inside a handler.
REQUIRED_IDS: dict[str, tuple[str, ...]] = {
    MAIL_RECEIVED: ("raw_id", "mailbox_id"),
    MAIL_PARSED: ("raw_id", "mailbox_id"),
    REQUEST_CREATED: ("request_id", "history_id"),
    REQUEST_UPDATED: ("request_id", "history_id"),
    REPLY_QUEUED: ("request_id", "outgoing_id"),
}

MAX_EVENT_BYTES = 4096


class BadEvent(ValueError):
    """An event that no version of this code can read; it is dead-lettered."""


@dataclass(frozen=True)
class Event:
    type: str
    ids: dict[str, Any]
    v: int = 0  # 0: stamp the current version on encode

    def encode(self) -> bytes:
        body = {"type": self.type, "v": self.v or CURRENT_VERSION[self.type], "ids": self.ids}
        return json.dumps(body, separators=(",", ":")).encode()

    def __getitem__(self, key: str) -> Any:
        return self.ids[key]


# (type, from_version) -> function turning that shape into the next version.
# Example for the day mail.received v2 renames mailbox_id:
#   UPGRADES[(MAIL_RECEIVED, 1)] = lambda ids: {**ids, "mailbox": ids.pop("mailbox_id")}
UPGRADES: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def decode(body: bytes | str | dict[str, Any]) -> Event:
    if isinstance(body, bytes | str):
        if len(body) > MAX_EVENT_BYTES:
            raise BadEvent(f"event of {len(body)} bytes; events carry ids only")
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadEvent(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadEvent("event is not a JSON object")
    kind, version, ids = body.get("type"), body.get("v"), body.get("ids")
    if kind not in CURRENT_VERSION:
        raise BadEvent(f"unknown event type {kind!r}")
    if not isinstance(version, int) or not 1 <= version <= CURRENT_VERSION[kind]:
        raise BadEvent(f"{kind}: unsupported version {version!r}")
    if not isinstance(ids, dict):
        raise BadEvent(f"{kind}: ids missing")
    while version < CURRENT_VERSION[kind]:
        ids = UPGRADES[(kind, version)](dict(ids))
        version += 1
    missing = [k for k in REQUIRED_IDS[kind] if not isinstance(ids.get(k), int)]
    if missing:
        raise BadEvent(f"{kind}: missing or non-integer ids {missing}")
    return Event(kind, ids, version)
