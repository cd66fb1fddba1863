"""Staff replies: an agent answers a request, from the CLI, the API or the request's page alike.

    send(conn, request_id, {"agent", "body"})  -> the outgoing mail's id, queued (pending) in the
                                                  caller's transaction
    announce(app, request_id, outgoing_id)     -> None, or why the replier could not be told at once

A reply is committed as pending outgoing mail first and announced second: if
the announcement is lost (a broker outage, `deskmail requests reply` in
another process than an embedded Deskmail), the replier's sweep finds the
pending reply and sends it anyway, so a reply once queued is not lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg

from services.admin.errors import InvalidSetting, NotFound
from shared import staff_replies

if TYPE_CHECKING:
    from services.app import App

FIELDS = ("agent", "body")


def check(values: Mapping[str, Any]) -> tuple[str, str]:
    """(agent, body) trimmed; InvalidSetting naming each field that is missing or wrong."""
    errors: dict[str, str] = {}
    errors.update({k: "is not a field of a reply" for k in values if k not in FIELDS})
    agent, body = values.get("agent"), values.get("body")
    if not isinstance(agent, str) or not agent.strip():
        errors["agent"] = "must not be empty: the agent's name is shown as the sender"
    if not isinstance(body, str) or not body.strip():
        errors["body"] = "must not be empty: write the reply"
    if errors:
        raise InvalidSetting(errors)
    assert isinstance(agent, str) and isinstance(body, str)
    return agent.strip(), body


def send(conn: psycopg.Connection, request_id: int, values: Mapping[str, Any]) -> int:
    """Queue a public reply to the request's customer; the outgoing mail's id (then `announce` it)."""
    agent, body = check(values)
    try:
        return staff_replies.queue_staff_reply(conn, request_id, agent, body)
    except staff_replies.ReplyRefused as exc:
        raise InvalidSetting({"to": str(exc)}) from None
    except LookupError as exc:
        raise NotFound(str(exc)) from None


def announce(app: App, request_id: int, outgoing_id: int) -> str | None:
    """Tell the replier; None, or why it could not be told now (the sweep sends the reply then)."""
    try:
        staff_replies.announce(app.settings, app.topology, [(request_id, outgoing_id)])
    except Exception as exc:  # noqa: BLE001 - the reply is safe in the database
        return f"the replier could not be told at once ({exc}); its sweep sends the reply within a minute or two"
    return None
