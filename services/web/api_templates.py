"""/api/v1 templates: the system level, per-mailbox overrides, and previews of unsaved text."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.admin import mailboxes as mailbox_admin
from services.admin.errors import NotFound
from services.web.context import Ctx
from services.web.schemas import Rendered, TemplateIn, TemplateOut
from shared import template_store, templates
from shared.mailboxes import InvalidSetting

router = APIRouter(prefix="/api/v1", tags=["templates"])


def problems_to_errors(exc: template_store.InvalidTemplate) -> InvalidSetting:
    """Template problems as field errors: {"body_html": "line 3: unexpected '}'"}."""
    errors: dict[str, str] = {}
    for p in exc.problems:
        where = f"line {p.line}: " if p.line is not None else ""
        errors.setdefault(p.part, f"{where}{p.reason}")
    return InvalidSetting(errors)


def check_name(name: str) -> None:
    if name not in templates.TEMPLATE_NAMES:
        raise NotFound(f"no template {name!r} (templates: {', '.join(templates.TEMPLATE_NAMES)})")


def template_out(conn: Any, mailbox_id: int | None, name: str) -> dict[str, Any]:
    check_name(name)
    if mailbox_id is not None:
        mailbox_admin.view(conn, mailbox_id)  # 404 for a mailbox that is not there
    found = template_store.effective(conn, mailbox_id, name)
    t = found.template
    return {"name": name, "mailbox_id": mailbox_id, "source": found.source, "subject": t.subject,
            "body_text": t.body_text, "body_html": t.body_html}


def merged(conn: Any, mailbox_id: int | None, name: str, body: TemplateIn) -> templates.Template:
    """The effective template with the parts the body sends replaced."""
    current = template_out(conn, mailbox_id, name)
    parts = {k: current[k] for k in ("subject", "body_text", "body_html")}
    errors = {}
    for part, value in body.model_dump(exclude_unset=True).items():
        if value is not None and not isinstance(value, str):
            errors[part] = "must be text"
        elif value is not None:
            parts[part] = value
    if errors:
        raise InvalidSetting(errors)
    return templates.Template(name, **parts)


def save(conn: Any, mailbox_id: int | None, name: str, body: TemplateIn) -> dict[str, Any]:
    template = merged(conn, mailbox_id, name, body)
    try:
        template_store.save(conn, mailbox_id, template)
    except template_store.InvalidTemplate as exc:
        raise problems_to_errors(exc) from None
    return template_out(conn, mailbox_id, name)


def preview(conn: Any, mailbox_id: int | None, name: str, body: TemplateIn) -> dict[str, Any]:
    template = merged(conn, mailbox_id, name, body)
    problems = templates.validate_template(template)
    if problems:
        raise problems_to_errors(template_store.InvalidTemplate(problems))
    return templates.preview(template).__dict__


@router.get("/templates", response_model=list[TemplateOut], summary="The system templates in effect")
def list_templates(c: Ctx) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return [template_out(conn, None, n) for n in templates.TEMPLATE_NAMES]


@router.get("/templates/{name}", response_model=TemplateOut, summary="A system template")
def get_template(name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_out(conn, None, name)


@router.put("/templates/{name}", response_model=TemplateOut,
            summary="Change the system template (syntax and names checked; the line of an error is given)")
def put_template(name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return save(conn, None, name, body)


@router.delete("/templates/{name}", response_model=TemplateOut,
               summary="Revert the system template to the one shipped with Deskmail")
def revert_template(name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        check_name(name)
        template_store.reset(conn, None, name)
        return template_out(conn, None, name)


@router.post("/templates/{name}/preview", response_model=Rendered,
             summary="Render unsaved template text with a sample request")
def preview_template(name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return preview(conn, None, name, body)


@router.get("/mailboxes/{mailbox_id}/templates/{name}", response_model=TemplateOut,
            summary="The template a mailbox's mail uses (its override, else the system's)")
def get_mailbox_template(mailbox_id: int, name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_out(conn, mailbox_id, name)


@router.put("/mailboxes/{mailbox_id}/templates/{name}", response_model=TemplateOut,
            summary="Override a template for one mailbox")
def put_mailbox_template(mailbox_id: int, name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return save(conn, mailbox_id, name, body)


@router.delete("/mailboxes/{mailbox_id}/templates/{name}", response_model=TemplateOut,
               summary="Drop a mailbox's override: the system template applies again")
def revert_mailbox_template(mailbox_id: int, name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        template_out(conn, mailbox_id, name)
        template_store.reset(conn, mailbox_id, name)
        return template_out(conn, mailbox_id, name)


@router.post("/mailboxes/{mailbox_id}/templates/{name}/preview", response_model=Rendered,
             summary="Render unsaved override text with a sample request")
def preview_mailbox_template(mailbox_id: int, name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return preview(conn, mailbox_id, name, body)


