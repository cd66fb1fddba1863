"""Categories: the default category of a mailbox's new requests.

A category that a mailbox or a request uses cannot be deleted (Conflict),
so no request loses its category and no mailbox points at nothing.
"""

from __future__ import annotations

from typing import Any

import psycopg

from services.admin.errors import Conflict, NotFound
from shared.mailboxes import InvalidSetting

_LIST = """
SELECT c.id, c.name, c.created_at,
       (SELECT count(*) FROM mailboxes m WHERE m.category_id = c.id AND m.removed_at IS NULL) AS mailboxes,
       (SELECT count(*) FROM requests r WHERE r.category_id = c.id) AS requests
FROM categories c WHERE (%(id)s::bigint IS NULL OR c.id = %(id)s) ORDER BY lower(c.name), c.id
"""


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidSetting({"name": "must not be empty"})
    if len(raw.strip()) > 200:
        raise InvalidSetting({"name": "must be at most 200 characters long"})
    return raw.strip()


def list_all(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute(_LIST, {"id": None}).fetchall()


def get(conn: psycopg.Connection, category_id: int) -> dict[str, Any]:
    row = conn.execute(_LIST, {"id": category_id}).fetchone()
    if row is None:
        raise NotFound(f"no category {category_id}")
    return row


def _unique(conn: psycopg.Connection, name: str, category_id: int | None) -> None:
    row = conn.execute("SELECT id FROM categories WHERE lower(name) = lower(%s) AND id IS DISTINCT FROM %s",
                       (name, category_id)).fetchone()
    if row is not None:
        raise Conflict(f"a category named {name!r} already exists", field="name")


def create(conn: psycopg.Connection, name: Any) -> int:
    clean = _name(name)
    _unique(conn, clean, None)
    row = conn.execute("INSERT INTO categories (name) VALUES (%s) RETURNING id", (clean,)).fetchone()
    assert row is not None
    return int(row["id"])


def rename(conn: psycopg.Connection, category_id: int, name: Any) -> None:
    clean = _name(name)
    get(conn, category_id)
    _unique(conn, clean, category_id)
    conn.execute("UPDATE categories SET name = %s WHERE id = %s", (clean, category_id))


def delete(conn: psycopg.Connection, category_id: int) -> None:
    row = get(conn, category_id)
    if row["mailboxes"] or row["requests"]:
        raise Conflict(
            f"category {row['name']!r} is in use by {row['mailboxes']} mailbox(es) and "
            f"{row['requests']} request(s); move them to another category first")
    # Removed mailboxes may still point at it; they keep their requests, not the category.
    conn.execute("UPDATE mailboxes SET category_id = NULL WHERE category_id = %s", (category_id,))
    conn.execute("DELETE FROM categories WHERE id = %s", (category_id,))


def ensure(conn: psycopg.Connection, name: Any) -> int:
    """The id of the category named `name`, created if missing (the CLI's --category NAME)."""
    clean = _name(name)
    row = conn.execute("SELECT id FROM categories WHERE lower(name) = lower(%s)", (clean,)).fetchone()
    return int(row["id"]) if row else create(conn, clean)
