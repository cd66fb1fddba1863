"""Queueing a staff reply: the outgoing mail row first, its announcement to the replier second.

Whatever answers a request (services/admin/replies.py, for the CLI, the API
and the request's page) queues the reply here, outside any stage; the replier
sends it, and its sweeper (services/replier/outbox.py) announces again any
reply whose announcement was lost. A reply goes to the customer with the
other people of the conversation in Cc, unless the agent chose others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.addresses import validate_address
from shared.events import REPLY_QUEUED, Event
from shared.mailboxes import own_addresses
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import connect


class ReplyRefused(ValueError):
    """A staff reply that cannot be queued, in words for the agent."""


@dataclass(frozen=True)
class Recipients:
    """Whom a staff reply on a request goes to, before the agent changes anything."""

    to_address: str
    to_name: str
    parent_id: int | None  # the incoming mail it answers (threading)
    cc: list[str]  # the other people of the conversation


def recipients(conn: psycopg.Connection, request_id: int) -> Recipients:
    """To: the request's latest mail written by a person (else its latest mail): its Reply-To, else
    its sender, else the request's customer. Cc: everyone else on the conversation (request_people)
    but Deskmail's own mailboxes, as they are now.
    """
    request = conn.execute(
        "SELECT r.id, c.address, c.name FROM requests r LEFT JOIN customers c ON c.id = r.customer_id"
        " WHERE r.id = %s", (request_id,)).fetchone()
    if request is None:
        raise LookupError(f"no request {request_id}")
    parent = conn.execute(
        "SELECT h.id, h.from_address, h.from_name, p.parsed->'reply_to' AS reply_to FROM history h"
        " LEFT JOIN parsed_messages p ON p.raw_id = h.raw_id"
        " WHERE h.request_id = %s AND h.kind = 'incoming'"
        " ORDER BY (h.automatic IS NULL) DESC, h.id DESC LIMIT 1", (request_id,)).fetchone()
    candidates: list[dict[str, Any]] = []
    if parent is not None:
        candidates += list(parent["reply_to"] or [])
        if parent["from_address"]:
            candidates.append({"address": parent["from_address"], "name": parent["from_name"] or ""})
    if request["address"]:
        candidates.append({"address": request["address"], "name": request["name"] or ""})
    if not candidates:
        raise ReplyRefused(f"request {request_id} has no customer address to reply to")
    to = candidates[0]
    try:
        validate_address(to["address"])
    except ValueError as exc:
        raise ReplyRefused(f"cannot reply to {to['address']!r}: {exc}") from None
    people = [r["address"] for r in conn.execute(
        "SELECT address FROM request_people WHERE request_id = %s ORDER BY address", (request_id,))]
    skip = own_addresses(conn) | {str(to["address"]).lower()}
    return Recipients(to["address"], to.get("name") or "", parent["id"] if parent else None,
                      [a for a in people if a.lower() not in skip])


def copies(conn: psycopg.Connection, cc: Iterable[str], to_address: str) -> list[str]:
    """The Cc an agent chose, checked: plain addresses (IDNA), none of ours, without the To or a repeat."""
    own = own_addresses(conn)
    out: list[str] = []
    for address in cc:
        try:
            checked = validate_address(address.strip())
        except ValueError as exc:
            raise ReplyRefused(f"cannot copy {address!r}: {exc}") from None
        if checked.lower() in own:
            raise ReplyRefused(f"{checked} is one of Deskmail's own mailboxes")
        if checked.lower() != to_address.lower() and checked.lower() not in (a.lower() for a in out):
            out.append(checked)
    return out


def queue_staff_reply(conn: psycopg.Connection, request_id: int, agent: str, body: str,
                      cc: Iterable[str] | None = None) -> int:
    """Queue a public staff reply on request `request_id`; returns the outgoing mail's id.

    It goes to `recipients`' To, with `cc` in Cc (None: the other people of the conversation).
    """
    agent, text = agent.strip(), body.replace("\r\n", "\n").strip("\n")
    if not agent:
        raise ReplyRefused("the agent's name must not be empty")
    if not text.strip():
        raise ReplyRefused("the reply is empty")
    to = recipients(conn, request_id)
    chosen = to.cc if cc is None else copies(conn, cc, to.to_address)
    row = conn.execute(
        "INSERT INTO outgoing_mail (request_id, history_id, kind, to_address, to_name, cc, agent_name,"
        " body_text, state) VALUES (%s, %s, 'staff_reply', %s, %s, %s, %s, %s, 'pending') RETURNING id",
        (request_id, to.parent_id, to.to_address, to.to_name, chosen, agent, text),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def announce(settings: Settings, topology: Topology, pairs: list[tuple[int, int]]) -> None:
    """Publish reply.queued for (request_id, outgoing_id) pairs, confirmed by the broker."""
    if not pairs:
        return
    with connect(settings) as conn:
        topology.declare(conn)
        Publisher(conn).publish_events(
            topology.exchange, "reply",
            [Event(REPLY_QUEUED, {"request_id": r, "outgoing_id": o}) for r, o in pairs])
