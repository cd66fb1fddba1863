"""/api/v1 templates: the system level, per-mailbox overrides, and previews of unsaved text."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.admin import templates as template_admin
from services.web.context import Ctx
from services.web.schemas import Rendered, TemplateIn, TemplateOut, body_of

router = APIRouter(prefix="/api/v1", tags=["templates"])


@router.get("/templates", response_model=list[TemplateOut], summary="The system templates in effect")
def list_templates(c: Ctx) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return template_admin.list_all(conn)


@router.get("/templates/{name}", response_model=TemplateOut, summary="A system template")
def get_template(name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_admin.view(conn, None, name)


@router.put("/templates/{name}", response_model=TemplateOut,
            summary="Change the system template (syntax and names checked; the line of an error is given;"
                    " body_html null or empty: no HTML part)")
def put_template(name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_admin.save(conn, None, name, body_of(body))


@router.delete("/templates/{name}", response_model=TemplateOut,
               summary="Revert the system template to the one shipped with Deskmail")
def revert_template(name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        template_admin.reset(conn, None, name)
        return template_admin.view(conn, None, name)


@router.post("/templates/{name}/preview", response_model=Rendered,
             summary="Render unsaved template text with a sample request")
def preview_template(name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_admin.preview(conn, None, name, body_of(body))


@router.get("/mailboxes/{mailbox_id}/templates/{name}", response_model=TemplateOut,
            summary="The template a mailbox's mail uses (its override, else the system's)")
def get_mailbox_template(mailbox_id: int, name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_admin.view(conn, mailbox_id, name)


@router.put("/mailboxes/{mailbox_id}/templates/{name}", response_model=TemplateOut,
            summary="Override a template for one mailbox (body_html null or empty: no HTML part)")
def put_mailbox_template(mailbox_id: int, name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_admin.save(conn, mailbox_id, name, body_of(body))


@router.delete("/mailboxes/{mailbox_id}/templates/{name}", response_model=TemplateOut,
               summary="Drop a mailbox's override: the system template applies again")
def revert_mailbox_template(mailbox_id: int, name: str, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        template_admin.reset(conn, mailbox_id, name)
        return template_admin.view(conn, mailbox_id, name)


@router.post("/mailboxes/{mailbox_id}/templates/{name}/preview", response_model=Rendered,
             summary="Render unsaved override text with a sample request")
def preview_mailbox_template(mailbox_id: int, name: str, body: TemplateIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return template_admin.preview(conn, mailbox_id, name, body_of(body))
