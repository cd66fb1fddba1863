"""Categories: what a mailbox files its new requests under, and what a request is filed under.

    ref      a category's id, or its name (the CLI names them; the API and pages use ids)
    create, rename                  names are unique regardless of case
    move_requests(ids, category)    files requests under another category (None: no category)
    delete(ref, move_to=None)       a category nothing uses goes at once; one that mailboxes or
                                    requests use goes only with a target (move_to) that they all
                                    move to first, in the same transaction (Conflict otherwise)

So no request loses its category and no mailbox points at nothing unless an
administrator says where they go.
"""

from __future__ import annotations

from typing import Any

import psycopg

from services.admin.errors import Conflict, InvalidSetting, NotFound

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
    """Every category with how many mailboxes and requests use it, by name."""
    return conn.execute(_LIST, {"id": None}).fetchall()


def get(conn: psycopg.Connection, category_id: int) -> dict[str, Any]:
    row = conn.execute(_LIST, {"id": category_id}).fetchone()
    if row is None:
        raise NotFound(f"no category {category_id}")
    return row


def find(conn: psycopg.Connection, ref: int | str) -> dict[str, Any]:
    """The category named by its id or its name (any case); NotFound otherwise."""
    text = str(ref).strip()
    row = conn.execute("SELECT id FROM categories WHERE lower(name) = lower(%s)", (text,)).fetchone()
    if row is None and text.isdigit():
        row = conn.execute("SELECT id FROM categories WHERE id = %s", (int(text),)).fetchone()
    if row is None:
        raise NotFound(f"no category {text!r} (deskmail category list shows them)")
    return get(conn, row["id"])


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


def rename(conn: psycopg.Connection, ref: int | str, name: Any) -> dict[str, Any]:
    """The category with its new name."""
    clean = _name(name)
    found = find(conn, ref)
    _unique(conn, clean, found["id"])
    conn.execute("UPDATE categories SET name = %s WHERE id = %s", (clean, found["id"]))
    return get(conn, found["id"])


def _target(conn: psycopg.Connection, field: str, value: Any) -> int | None:
    """A category id from an id (or a digit string) or a name; None for no category."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidSetting({field: f"must be a category's id or name, not {value!r}"})
    if isinstance(value, int) or value.strip().isdigit():
        row = conn.execute("SELECT id FROM categories WHERE id = %s", (int(value),)).fetchone()
        if row is None:
            raise InvalidSetting({field: f"no category with id {int(value)}"})
        return int(row["id"])
    row = conn.execute("SELECT id FROM categories WHERE lower(name) = lower(%s)", (value.strip(),)).fetchone()
    if row is None:
        raise InvalidSetting({field: f"no category named {value.strip()!r}"})
    return int(row["id"])


def delete(conn: psycopg.Connection, ref: int | str, move_to: Any = None) -> dict[str, Any]:
    """Delete a category; with `move_to` (an id or a name) its mailboxes and requests move there first.

    The deleted category as it was, with how many mailboxes and requests moved.
    """
    found = find(conn, ref)
    target = _target(conn, "move_to", move_to)
    if move_to not in (None, "") and target == found["id"]:
        raise InvalidSetting({"move_to": "must be another category than the one deleted"})
    if target is None and (found["mailboxes"] or found["requests"]):
        raise Conflict(
            f"category {found['name']!r} is in use by {found['mailboxes']} mailbox(es) and"
            f" {found['requests']} request(s); give a category to move them to"
            " (deskmail category remove NAME --move-to OTHER; move_to in the API and the page)")
    if target is not None:
        conn.execute("UPDATE requests SET category_id = %s WHERE category_id = %s", (target, found["id"]))
        conn.execute("UPDATE mailboxes SET category_id = %s WHERE category_id = %s AND removed_at IS NULL",
                     (target, found["id"]))
    # Removed mailboxes may still point at it; they keep their requests, not the category.
    conn.execute("UPDATE mailboxes SET category_id = NULL WHERE category_id = %s", (found["id"],))
    conn.execute("DELETE FROM categories WHERE id = %s", (found["id"],))
    return found


def move_requests(conn: psycopg.Connection, request_ids: list[int], category: Any) -> int:
    """File the requests under `category` (an id or a name; None: no category); how many moved.

    NotFound when one of the requests does not exist (then none moves).
    """
    target = _target(conn, "category_id", category)
    ids = sorted(set(request_ids))
    found = {r["id"] for r in conn.execute("SELECT id FROM requests WHERE id = ANY(%s)", (ids,))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"no request {', '.join(map(str, missing))}")
    return conn.execute("UPDATE requests SET category_id = %s, updated_at = now() WHERE id = ANY(%s)"
                        " AND category_id IS DISTINCT FROM %s", (target, ids, target)).rowcount


def ensure(conn: psycopg.Connection, name: Any) -> int:
    """The id of the category named `name`, created if missing (the CLI's --category NAME)."""
    clean = _name(name)
    row = conn.execute("SELECT id FROM categories WHERE lower(name) = lower(%s)", (clean,)).fetchone()
    return int(row["id"]) if row else create(conn, clean)
