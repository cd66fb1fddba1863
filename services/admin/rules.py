"""Mail rules and sender lists' neighbour: the ordered rules, system-wide and per mailbox.

    scope      mailbox_id None (or "system"): system-wide, run first; an id: that mailbox's
    save       create (rule_id None) or replace a rule; every problem at once (rules.clean):
               a regex that does not compile is refused here, with RE2's reason
    position   a rule's place in its scope's list (lower first; ties by id)
    dry_run    what a rule would have done to a mailbox's last N mails, before it is saved

Conditions and actions come as lists of objects or as their one-line text
form ("subject contains invoice", "category Billing"; shared/filters/rules.py),
so the CLI, the page and the API accept and refuse the same values alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services.admin import form_values
from services.admin.errors import Conflict, InvalidSetting, NotFound
from shared.filters import dry_run as dry
from shared.filters import rules

FIELDS = ("name", "mailbox_id", "position", "match", "conditions", "actions", "enabled")
_SELECT = ("SELECT r.id, r.mailbox_id, m.address AS mailbox, r.position, r.name, r.enabled, r.match,"
           " r.conditions, r.actions, r.created_at, r.updated_at FROM mail_rules r"
           " LEFT JOIN mailboxes m ON m.id = r.mailbox_id")


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    """A rule with its conditions and actions also as text lines (how the CLI and the page show them)."""
    return {**row, "condition_lines": [rules.condition_text(c) for c in row["conditions"]],
            "action_lines": [rules.action_text(a) for a in row["actions"]]}


def scope_of(conn: psycopg.Connection, value: Any, field: str = "mailbox_id") -> int | None:
    """None for system-wide ("", "system", null), else an existing mailbox's id; InvalidSetting otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "system")):
        return None
    try:
        mailbox_id = int(value)
    except (TypeError, ValueError):
        raise InvalidSetting({field: f"must be a mailbox id or system, not {value!r}"}) from None
    if conn.execute("SELECT 1 FROM mailboxes WHERE id = %s AND removed_at IS NULL", (mailbox_id,)).fetchone() is None:
        raise InvalidSetting({field: f"no mailbox {mailbox_id}"})
    return mailbox_id


def list_all(conn: psycopg.Connection, mailbox_id: Any = "all") -> list[dict[str, Any]]:
    """Rules in the order they run: system-wide first, then per mailbox; `mailbox_id` narrows to one scope."""
    if mailbox_id == "all":
        rows = conn.execute(_SELECT + " ORDER BY r.mailbox_id NULLS FIRST, r.position, r.id").fetchall()
    else:
        scope = scope_of(conn, mailbox_id)
        rows = conn.execute(_SELECT + " WHERE r.mailbox_id IS NOT DISTINCT FROM %s ORDER BY r.position, r.id",
                            (scope,)).fetchall()
    return [_shape(r) for r in rows]


def get(conn: psycopg.Connection, rule_id: int) -> dict[str, Any]:
    row = conn.execute(_SELECT + " WHERE r.id = %s", (rule_id,)).fetchone()
    if row is None:
        raise NotFound(f"no rule {rule_id}")
    return _shape(row)


def save(conn: psycopg.Connection, values: Mapping[str, Any], rule_id: int | None = None) -> int:
    """Create a rule (rule_id None) or change one (fields not given keep their value); its id."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise InvalidSetting({name: "is not a rule field" for name in unknown})
    old = get(conn, rule_id) if rule_id is not None else None
    merged: dict[str, Any] = dict(old or {"match": "all", "enabled": True})
    merged.update({k: v for k, v in values.items() if k in FIELDS})
    errors: dict[str, str] = {}
    try:
        scope = scope_of(conn, merged.get("mailbox_id"))
    except InvalidSetting as exc:
        errors.update(exc.errors)
        scope = None
    position = merged.get("position")
    if position in (None, ""):
        position = None
    else:
        try:
            position = int(position)
            if not 0 <= position <= 1_000_000:
                raise ValueError
        except (TypeError, ValueError):
            errors["position"] = f"must be a whole number from 0 to 1000000, not {merged.get('position')!r}"
    enabled = _flag(merged.get("enabled", True))
    if enabled is None:
        errors["enabled"] = f"must be true or false, not {merged.get('enabled')!r}"
    try:
        clean = rules.clean({**merged, "enabled": enabled is not False})
    except InvalidSetting as exc:
        errors.update(exc.errors)
        clean = {}
    if errors:
        raise InvalidSetting(errors)
    clash = conn.execute("SELECT id FROM mail_rules WHERE coalesce(mailbox_id, 0) = coalesce(%s, 0)"
                         " AND lower(name) = lower(%s) AND id IS DISTINCT FROM %s",
                         (scope, clean["name"], rule_id)).fetchone()
    if clash is not None:
        raise Conflict(f"a rule named {clean['name']!r} exists already in this scope", field="name")
    if position is None:
        position = old["position"] if old and old["mailbox_id"] == scope else conn.execute(
            "SELECT coalesce(max(position), 0) + 1 AS p FROM mail_rules"
            " WHERE mailbox_id IS NOT DISTINCT FROM %s", (scope,)).fetchone()["p"]
    row = (scope, position, clean["name"], clean["enabled"], clean["match"], Jsonb(clean["conditions"]),
           Jsonb(clean["actions"]))
    if rule_id is None:
        return int(conn.execute(
            "INSERT INTO mail_rules (mailbox_id, position, name, enabled, match, conditions, actions)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id", row).fetchone()["id"])
    conn.execute("UPDATE mail_rules SET mailbox_id = %s, position = %s, name = %s, enabled = %s, match = %s,"
                 " conditions = %s, actions = %s, updated_at = now() WHERE id = %s", (*row, rule_id))
    return rule_id


def _flag(value: Any) -> bool | None:
    """True or false from a JSON boolean or form/CLI text; None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in form_values.TRUE + form_values.FALSE:
        return value.strip().lower() in form_values.TRUE
    return None


def remove(conn: psycopg.Connection, rule_id: int) -> dict[str, Any]:
    found = get(conn, rule_id)
    conn.execute("DELETE FROM mail_rules WHERE id = %s", (rule_id,))
    return found


def dry_run(conn: psycopg.Connection, values: Mapping[str, Any], mailbox_id: Any, last: Any = 50
            ) -> list[dict[str, Any]]:
    """What the rule in `values` would have done to mailbox `mailbox_id`'s last `last` mails; writes nothing."""
    errors: dict[str, str] = {}
    try:
        scope = scope_of(conn, mailbox_id)
        if scope is None:
            errors["mailbox_id"] = "a dry run needs a mailbox whose mail it looks at"
    except InvalidSetting as exc:
        errors.update(exc.errors)
    try:
        count = int(last)
        if not 1 <= count <= dry.MAX_LAST:
            raise ValueError
    except (TypeError, ValueError):
        errors["last"] = f"must be a whole number from 1 to {dry.MAX_LAST}, not {last!r}"
    try:
        rules.clean({k: v for k, v in values.items() if k in FIELDS})
    except InvalidSetting as exc:
        errors.update(exc.errors)
    if errors:
        raise InvalidSetting(errors)
    return dry.dry_run(conn, scope, {k: v for k, v in values.items() if k in ("name", "match", "conditions",
                                                                            "actions")}, count)
