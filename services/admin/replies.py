"""Staff replies: an agent answers a request, from the CLI, the API or the request's page alike.

    values   agent (the name shown as the sender), body (the reply's text), and cc: absent or
             None for the other people of the conversation (the request's people less our own
             mailboxes), else the addresses to copy (a list, or text separated by commas, semicolons
             or lines; empty: the customer alone)
    defaults(conn, request_id)          -> {"to", "cc"}: whom a reply goes to before any change
    preview(conn, request_id, values)   -> exactly what would be sent: from, to, cc, subject,
                                           body_text, body_html (nothing is queued)
    send(conn, request_id, values)      -> {"outgoing_id", "to", "cc"}, queued (pending) in the
                                           caller's transaction
    announce(app, request_id, outgoing_id) -> None, or why the replier could not be told at once

A reply is committed as pending outgoing mail first and announced second: if
the announcement is lost (a broker outage, `deskmail requests reply` in
another process than an embedded Deskmail), the replier's sweep finds the
pending reply and sends it anyway, so a reply once queued is not lost.
Auto-replies never go through here and go to the sender alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.headerregistry import Address
from typing import TYPE_CHECKING, Any

import psycopg

from services.admin.errors import InvalidSetting, NotFound
from shared import outgoing, staff_replies, template_store
from shared.addresses import validate_address
from shared.mailboxes import own_addresses

if TYPE_CHECKING:
    from services.app import App

FIELDS = ("agent", "body", "cc")
_SEPARATORS = re.compile(r"[,;\n]+")


def _cc(conn: psycopg.Connection, raw: Any) -> tuple[list[str] | None, str | None]:
    """(the addresses, or None for the conversation's people; the problem in words, or None)."""
    if raw is None:
        return None, None
    if isinstance(raw, str):
        given = [a.strip() for a in _SEPARATORS.split(raw) if a.strip()]
    elif isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        given = [a.strip() for a in raw if a.strip()]
    else:
        return None, f"must be a list of addresses, not {raw!r}"
    own = own_addresses(conn)
    for address in given:
        try:
            checked = validate_address(address)
        except ValueError as exc:
            return None, f"{address!r} is not an email address: {str(exc).split(': ', 1)[-1]}"
        if checked.lower() in own:
            return None, f"{checked} is one of Deskmail's own mailboxes"
    return given, None


def check(conn: psycopg.Connection, values: Mapping[str, Any]) -> tuple[str, str, list[str] | None]:
    """(agent, body, cc or None) trimmed; InvalidSetting naming each field that is missing or wrong."""
    errors: dict[str, str] = {k: "is not a field of a reply" for k in values if k not in FIELDS}
    agent, body = values.get("agent"), values.get("body")
    if not isinstance(agent, str) or not agent.strip():
        errors["agent"] = "must not be empty: the agent's name is shown as the sender"
    if not isinstance(body, str) or not body.strip():
        errors["body"] = "must not be empty: write the reply"
    cc, problem = _cc(conn, values.get("cc"))
    if problem:
        errors["cc"] = problem
    if errors:
        raise InvalidSetting(errors)
    assert isinstance(agent, str) and isinstance(body, str)
    return agent.strip(), body, cc


def defaults(conn: psycopg.Connection, request_id: int) -> dict[str, Any]:
    """{"to": the customer's address (None when there is none), "cc": the other people}."""
    try:
        found = staff_replies.recipients(conn, request_id)
    except staff_replies.ReplyRefused:
        return {"to": None, "cc": []}
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    return {"to": found.to_address, "cc": found.cc}


def _queue(conn: psycopg.Connection, request_id: int, values: Mapping[str, Any]) -> int:
    agent, body, cc = check(conn, values)
    try:
        return staff_replies.queue_staff_reply(conn, request_id, agent, body, cc)
    except staff_replies.ReplyRefused as exc:  # no address to answer (the Cc is checked above)
        raise InvalidSetting({"to": str(exc)}) from None
    except LookupError as exc:
        raise NotFound(str(exc)) from None


def send(conn: psycopg.Connection, request_id: int, values: Mapping[str, Any]) -> dict[str, Any]:
    """Queue a public reply; {"outgoing_id", "to", "cc"} (then `announce` it)."""
    outgoing_id = _queue(conn, request_id, values)
    [row] = outgoing.rows(conn, [outgoing_id])
    return {"outgoing_id": outgoing_id, "request_id": request_id, "to": row["to_address"], "cc": list(row["cc"])}


def _shown(name: str, address: str) -> str:
    """An address as a mail reader shows its header: Name <address>, quoted where needed."""
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


class _Discard(Exception):
    """Leaves the preview's savepoint, undoing the reply it queued."""


def preview(conn: psycopg.Connection, request_id: int, values: Mapping[str, Any]) -> dict[str, Any]:
    """The reply as the replier would write it: from, to, cc, subject, body_text, body_html.

    It is queued and composed by the replier's own code (shared/outgoing.py)
    inside a savepoint that is then rolled back: nothing is sent or kept.
    """
    shown: dict[str, Any] = {}
    try:
        with conn.transaction():
            [row] = outgoing.rows(conn, [_queue(conn, request_id, values)])
            tmpl = template_store.effective(conn, row["mailbox_id"], "staff_reply").template
            parts = outgoing.render(row, tmpl)
            shown = {"from": _shown(parts.from_name, row["mailbox_address"]),
                     "to": _shown(row["to_name"] or "", row["to_address"]), "cc": list(row["cc"]),
                     "subject": parts.subject, "body_text": parts.body_text, "body_html": parts.body_html}
            raise _Discard
    except _Discard:
        pass
    return shown


def announce(app: App, request_id: int, outgoing_id: int) -> str | None:
    """Tell the replier; None, or why it could not be told now (the sweep sends the reply then)."""
    try:
        staff_replies.announce(app.settings, app.topology, [(request_id, outgoing_id)])
    except Exception as exc:  # noqa: BLE001 - the reply is safe in the database
        return f"the replier could not be told at once ({exc}); its sweep sends the reply within a minute or two"
    return None
