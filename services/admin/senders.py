"""Sender lists: allow and block entries, system-wide (mailbox_id None) or for one mailbox.

    add      list (allow, block), kind (address, domain, pattern), value, note, mailbox_id;
             checked by shared/filters/senders.py's clean; a duplicate is a Conflict
    remove   by id

How entries decide (the mailbox's first, allow before block within a scope),
and what happens to blocked mail, is shared/filters/senders.py and README.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from services.admin.errors import Conflict, InvalidSetting, NotFound
from services.admin.rules import scope_of
from shared.filters import senders

FIELDS = ("list", "kind", "value", "note", "mailbox_id")
_SELECT = ("SELECT s.id, s.mailbox_id, m.address AS mailbox, s.list, s.kind, s.value, s.note, s.created_by,"
           " s.created_at FROM sender_list s LEFT JOIN mailboxes m ON m.id = s.mailbox_id")


def list_all(conn: psycopg.Connection, mailbox_id: Any = "all") -> list[dict[str, Any]]:
    if mailbox_id == "all":
        return conn.execute(_SELECT + " ORDER BY s.mailbox_id NULLS FIRST, s.list, s.kind, s.value").fetchall()
    scope = scope_of(conn, mailbox_id)
    return conn.execute(_SELECT + " WHERE s.mailbox_id IS NOT DISTINCT FROM %s ORDER BY s.list, s.kind, s.value",
                        (scope,)).fetchall()


def get(conn: psycopg.Connection, entry_id: int) -> dict[str, Any]:
    row = conn.execute(_SELECT + " WHERE s.id = %s", (entry_id,)).fetchone()
    if row is None:
        raise NotFound(f"no sender list entry {entry_id}")
    return row


def add(conn: psycopg.Connection, values: Mapping[str, Any], by: str | None = None) -> int:
    unknown = sorted(set(values) - set(FIELDS))
    errors: dict[str, str] = {name: "is not a field of a sender list entry" for name in unknown}
    try:
        scope = scope_of(conn, values.get("mailbox_id"))
    except InvalidSetting as exc:
        errors.update(exc.errors)
        scope = None
    try:
        entry = senders.clean(values)
    except InvalidSetting as exc:
        errors.update(exc.errors)
    if errors:
        raise InvalidSetting(errors)
    clash = conn.execute("SELECT list FROM sender_list WHERE coalesce(mailbox_id, 0) = coalesce(%s, 0)"
                         " AND kind = %s AND lower(value) = %s", (scope, entry["kind"], entry["value"])).fetchone()
    if clash is not None:
        raise Conflict(f"{entry['kind']} {entry['value']} is on the {clash['list']} list of this scope already",
                       field="value")
    return int(conn.execute(
        "INSERT INTO sender_list (mailbox_id, list, kind, value, note, created_by) VALUES (%s, %s, %s, %s, %s, %s)"
        " RETURNING id", (scope, entry["list"], entry["kind"], entry["value"], entry["note"], by)).fetchone()["id"])


def remove(conn: psycopg.Connection, entry_id: int) -> dict[str, Any]:
    found = get(conn, entry_id)
    conn.execute("DELETE FROM sender_list WHERE id = %s", (entry_id,))
    return found
