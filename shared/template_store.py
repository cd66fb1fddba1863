"""Email templates as administrators manage them: shipped, system override, mailbox override.

Which template a mail from mailbox M uses, for template name T:

    1. M's override               templates row (mailbox_id = M, name = T)
    2. the system-level override  templates row (mailbox_id NULL, name = T)
    3. the template shipped with Deskmail (services/replier/templates/)

A template is refused when saved if it does not compile, uses a name the
context does not have, or fails on a trial render (templates.validate_template),
so a broken template never meets a customer's mail. The CLI and the admin web
both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from shared import templates
from shared.templates import Template, TemplateProblem

SHIPPED, SYSTEM, MAILBOX = "shipped", "system", "mailbox"


class InvalidTemplate(ValueError):
    """A template that must not be saved; `problems` say where and why."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Effective:
    template: Template
    source: str  # SHIPPED, SYSTEM or MAILBOX


def _check_name(name: str) -> None:
    if name not in templates.TEMPLATE_NAMES:
        raise InvalidTemplate(templates.validate_template(Template(name, "", "", "")))


def _from_row(row: dict[str, Any]) -> Template:
    return Template(row["name"], row["subject"], row["body_text"], row["body_html"] or "")


def effective(conn: psycopg.Connection, mailbox_id: int | None, name: str) -> Effective:
    """The template mail from `mailbox_id` uses (None: what mailboxes without an override use)."""
    _check_name(name)
    row = conn.execute(
        "SELECT name, subject, body_text, body_html, mailbox_id FROM templates"
        " WHERE name = %s AND (mailbox_id = %s OR mailbox_id IS NULL)"
        " ORDER BY mailbox_id NULLS LAST LIMIT 1",
        (name, mailbox_id),
    ).fetchone()
    if row is None:
        return Effective(templates.system_template(name), SHIPPED)
    return Effective(_from_row(row), SYSTEM if row["mailbox_id"] is None else MAILBOX)


def effective_many(conn: psycopg.Connection, keys: set[tuple[int, str]]) -> dict[tuple[int, str], Template]:
    """(mailbox_id, name) -> template, for many mailboxes in one query (the replier's batches)."""
    if not keys:
        return {}
    mailbox_ids = sorted({m for m, _ in keys})
    rows = conn.execute(
        "SELECT name, subject, body_text, body_html, mailbox_id FROM templates"
        " WHERE mailbox_id IS NULL OR mailbox_id = ANY(%s)",
        (mailbox_ids,),
    ).fetchall()
    system = {r["name"]: _from_row(r) for r in rows if r["mailbox_id"] is None}
    own = {(r["mailbox_id"], r["name"]): _from_row(r) for r in rows if r["mailbox_id"] is not None}
    return {
        (m, n): own.get((m, n)) or system.get(n) or templates.system_template(n) for m, n in keys
    }


def save(conn: psycopg.Connection, mailbox_id: int | None, template: Template) -> None:
    """Validate and store an override (mailbox_id None: the system-level override)."""
    problems = templates.validate_template(template)
    if problems:
        raise InvalidTemplate(problems)
    if mailbox_id is not None:
        exists = conn.execute(
            "SELECT 1 FROM mailboxes WHERE id = %s AND removed_at IS NULL", (mailbox_id,)
        ).fetchone()
        if exists is None:
            raise LookupError(f"no mailbox {mailbox_id}")
    conn.execute(
        "INSERT INTO templates (mailbox_id, name, subject, body_text, body_html)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (mailbox_id, name) DO UPDATE SET subject = EXCLUDED.subject,"
        " body_text = EXCLUDED.body_text, body_html = EXCLUDED.body_html, updated_at = now()",
        (mailbox_id, template.name, template.subject, template.body_text,
         template.body_html or None),
    )


def reset(conn: psycopg.Connection, mailbox_id: int | None, name: str) -> bool:
    """Drop an override; True if there was one. The next level's template applies again."""
    _check_name(name)
    row = conn.execute(
        "DELETE FROM templates WHERE name = %s AND mailbox_id IS NOT DISTINCT FROM %s RETURNING id",
        (name, mailbox_id),
    ).fetchone()
    return row is not None


def overview(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per template name: the system level's source, and which mailboxes override it."""
    rows = conn.execute(
        "SELECT t.name, t.mailbox_id, m.address, t.updated_at FROM templates t"
        " LEFT JOIN mailboxes m ON m.id = t.mailbox_id ORDER BY t.name, t.mailbox_id NULLS FIRST"
    ).fetchall()
    out = []
    for name in templates.TEMPLATE_NAMES:
        mine = [r for r in rows if r["name"] == name]
        system = next((r for r in mine if r["mailbox_id"] is None), None)
        out.append({
            "name": name,
            "system": SYSTEM if system else SHIPPED,
            "system_updated_at": system["updated_at"] if system else None,
            "mailbox_overrides": [
                {"mailbox_id": r["mailbox_id"], "address": r["address"], "updated_at": r["updated_at"]}
                for r in mine if r["mailbox_id"] is not None
            ],
        })
    return out
