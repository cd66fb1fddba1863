"""Queueing a staff reply: the outgoing mail row first, its announcement to the replier second.

Whatever answers a request (`deskmail requests reply` today, the admin
layer for every door) queues the reply here, outside any stage; the replier
sends it, and its sweeper (services/replier/outbox.py) announces again any
reply whose announcement was lost.
"""

from __future__ import annotations

from typing import Any

import psycopg

from shared.addresses import validate_address
from shared.events import REPLY_QUEUED, Event
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import connect


class ReplyRefused(ValueError):
    """A staff reply that cannot be queued, in words for the agent."""


def queue_staff_reply(conn: psycopg.Connection, request_id: int, agent: str, body: str) -> int:
    """Queue a public staff reply on request `request_id`; returns the outgoing mail's id.

    It answers the request's latest mail written by a person (else its latest
    mail): to that mail's Reply-To, else its sender, else the request's customer.
    """
    agent, text = agent.strip(), body.replace("\r\n", "\n").strip("\n")
    if not agent:
        raise ReplyRefused("the agent's name must not be empty")
    if not text.strip():
        raise ReplyRefused("the reply is empty")
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
    row = conn.execute(
        "INSERT INTO outgoing_mail (request_id, history_id, kind, to_address, to_name, agent_name,"
        " body_text, state) VALUES (%s, %s, 'staff_reply', %s, %s, %s, %s, 'pending') RETURNING id",
        (request_id, parent["id"] if parent else None, to["address"], to.get("name") or "",
         agent, text),
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
