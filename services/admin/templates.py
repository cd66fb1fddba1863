"""Email templates: the system level and per-mailbox overrides, saved, reverted and previewed.

    mailbox_id  None: the system level; an id: that mailbox's override
    parts       subject, body_text, body_html; a part left out keeps what the level uses now.
                body_html None or "" means no HTML part: the mail is plain text, so its two
                parts can never say different things.

A template that does not compile, uses an unknown name or reaches for Python
internals is refused when saved (InvalidSetting, one message per part, each
problem with its line). Which template a mail uses is shared/template_store.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from services.admin import mailboxes
from services.admin.errors import InvalidSetting, NotFound
from shared import template_store, templates
from shared.templates import TemplateProblem

PARTS = ("subject", "body_text", "body_html")
NAMES = templates.TEMPLATE_NAMES
FIELDS = templates.FIELDS  # what each name in a template's context holds, for the editor's hint
CONTEXT_NAMES = templates.CONTEXT_NAMES  # the names each template may use
SOURCES = {template_store.MAILBOX: "the mailbox's own override",
           template_store.SYSTEM: "the system-level override",
           template_store.SHIPPED: "the template shipped with Deskmail"}


def check_name(name: str) -> None:
    if name not in NAMES:
        raise NotFound(f"no template {name!r} (templates: {', '.join(NAMES)})")


def view(conn: psycopg.Connection, mailbox_id: int | None, name: str) -> dict[str, Any]:
    """The template mail of `mailbox_id` uses, and where it comes from (source: shipped, system, mailbox)."""
    check_name(name)
    if mailbox_id is not None:
        mailboxes.row(conn, mailbox_id)  # NotFound for a mailbox that is not there
    found = template_store.effective(conn, mailbox_id, name)
    t = found.template
    return {"name": name, "mailbox_id": mailbox_id, "source": found.source, "subject": t.subject,
            "body_text": t.body_text, "body_html": t.body_html}


def list_all(conn: psycopg.Connection, mailbox_id: int | None = None) -> list[dict[str, Any]]:
    return [view(conn, mailbox_id, n) for n in NAMES]


def overview(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per template: the system level's source, and which mailboxes override it."""
    return template_store.overview(conn)


def errors_of(problems: list[TemplateProblem]) -> InvalidSetting:
    """Template problems as field errors: {"body_text": "line 1: unknown field 'nmae' ...; line 2: ..."}."""
    by_part: dict[str, list[str]] = {}
    for p in problems:
        by_part.setdefault(p.part, []).append((f"line {p.line}: " if p.line is not None else "") + p.reason)
    return InvalidSetting({part: "; ".join(reasons) for part, reasons in by_part.items()})


def _merged(conn: psycopg.Connection, mailbox_id: int | None, name: str,
            parts: Mapping[str, Any]) -> templates.Template:
    """The level's template with the given parts in place."""
    current = view(conn, mailbox_id, name)
    merged = {k: current[k] for k in PARTS}
    errors = {}
    for part, value in parts.items():
        if part not in PARTS:
            errors[part] = "is not a part of a template (subject, body_text, body_html)"
        elif part == "body_html" and value is None:
            merged[part] = ""  # no HTML part
        elif not isinstance(value, str):
            errors[part] = f"must be text, not {value!r}"
        else:
            merged[part] = value
    if errors:
        raise InvalidSetting(errors)
    return templates.Template(name, **merged)


def save(conn: psycopg.Connection, mailbox_id: int | None, name: str, parts: Mapping[str, Any]) -> dict[str, Any]:
    """Override the template at its level with the given parts; the view of what is saved."""
    template = _merged(conn, mailbox_id, name, parts)
    try:
        template_store.save(conn, mailbox_id, template)
    except template_store.InvalidTemplate as exc:
        raise errors_of(exc.problems) from None
    return view(conn, mailbox_id, name)


def reset(conn: psycopg.Connection, mailbox_id: int | None, name: str) -> bool:
    """Drop the level's override (True if there was one): the next level's template applies again."""
    view(conn, mailbox_id, name)
    return template_store.reset(conn, mailbox_id, name)


def preview(conn: psycopg.Connection, mailbox_id: int | None, name: str,
            parts: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The template (with unsaved parts in place) rendered for a sample request: subject, body_text, body_html."""
    template = _merged(conn, mailbox_id, name, parts or {})
    problems = templates.validate_template(template)
    if problems:
        raise errors_of(problems)
    try:
        rendered = templates.preview(template)
    except templates.RenderError as exc:
        raise InvalidSetting({"body_text": f"the template fails: {exc}"}) from None
    return {"subject": rendered.subject, "body_text": rendered.body_text, "body_html": rendered.body_html}
