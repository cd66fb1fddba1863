"""The settings pages: templates (system and per mailbox), the system SMTP settings, categories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.admin import categories, probes
from services.admin import mailboxes as mailbox_admin
from services.admin import smtp as smtp_admin
from services.admin import templates as template_admin
from services.admin.errors import Conflict, InvalidSetting
from services.web.context import Ctx, WebContext
from services.web.page_kit import Form, done_at, render
from services.web.page_mailboxes import (
    OAUTH_DEFAULTS,
    OAUTH_FORM,
    SMTP_FLOWS,
    WRITE_ONLY,
    with_sign_in,
)

router = APIRouter()
PARTS = template_admin.PARTS

# ---- templates ---------------------------------------------------------------


def _template_page(request: Request, c: WebContext, mailbox_id: int | None, name: str,
                   form: dict[str, str] | None) -> Response:
    errors: dict[str, str] = {}
    rendered = None
    action = (form or {}).get("action", "")
    parts = {k: form[k] for k in PARTS if k in form} if form else {}
    base = f"/mailboxes/{mailbox_id}/templates/{name}" if mailbox_id else f"/templates/{name}"
    with c.tx() as conn:
        current = template_admin.view(conn, mailbox_id, name)
        mailbox = mailbox_admin.view(conn, mailbox_id) if mailbox_id is not None else None
        try:
            if action == "save":
                template_admin.save(conn, mailbox_id, name, parts)
                return done_at(base, "Saved.")
            if action == "revert":
                template_admin.reset(conn, mailbox_id, name)
                return done_at(base, "Reverted.")
            if action == "preview":
                rendered = template_admin.preview(conn, mailbox_id, name, parts)
        except InvalidSetting as exc:
            errors = exc.errors
    return render(request, "template_form.html", 422 if errors else 200, name=name, mailbox=mailbox,
                  template={**current, **parts}, source=current["source"], errors=errors, rendered=rendered,
                  fields=template_admin.FIELDS, names=template_admin.CONTEXT_NAMES[name])


@router.get("/templates")
def template_list(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        overview = template_admin.overview(conn)
    return render(request, "templates.html", overview=overview)


@router.get("/templates/{name}")
def template_edit(request: Request, name: str, c: Ctx) -> Response:
    return _template_page(request, c, None, name, None)


@router.post("/templates/{name}")
def template_post(request: Request, name: str, form: Form, c: Ctx) -> Response:
    return _template_page(request, c, None, name, form)


@router.get("/mailboxes/{mailbox_id}/templates/{name}")
def mailbox_template_edit(request: Request, mailbox_id: int, name: str, c: Ctx) -> Response:
    return _template_page(request, c, mailbox_id, name, None)


@router.post("/mailboxes/{mailbox_id}/templates/{name}")
def mailbox_template_post(request: Request, mailbox_id: int, name: str, form: Form, c: Ctx) -> Response:
    return _template_page(request, c, mailbox_id, name, form)


# ---- the system SMTP settings ---------------------------------------------------

SMTP_TEXT = ("host", "port", "security", "username", "password")


def _smtp_page(request: Request, c: WebContext, values: dict[str, Any], errors: dict[str, str],
               result: dict[str, Any] | None = None) -> Response:
    with c.tx() as conn:
        saved = smtp_admin.system_form(conn)
    oauth = {k: v for k, v in (saved or {}).items() if k.startswith("oauth_") or k == "auth_method"}
    return render(request, "smtp.html", 422 if errors else 200, values=values, errors=errors, result=result,
                  has_password=bool(saved and saved["has_password"]), oauth=oauth, flows=SMTP_FLOWS,
                  mailboxes=saved["mailboxes"] if saved else None)


@router.get("/settings/smtp")
def smtp_page(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        saved = smtp_admin.system_form(conn) or {}
    values = {k: ("" if saved.get(k) is None else saved[k]) for k in ("host", "port", "username")}
    values["security"] = saved.get("security") or "starttls"
    values["verify_tls"] = not saved.get("allow_self_signed")
    values.update({k: v for k, v in saved.items() if (k.startswith("oauth_") or k == "auth_method") and v is not None})
    for name, default in {**OAUTH_DEFAULTS, "oauth_flow": "refresh_token"}.items():
        values[name] = values.get(name) or default
    return _smtp_page(request, c, values, {})


@router.post("/settings/smtp")
def smtp_post(request: Request, form: Form, c: Ctx) -> Response:
    raw: dict[str, Any] = {k: form.get(k, "") for k in SMTP_TEXT}
    raw["allow_self_signed"] = "off" if form.get("verify_tls") else "on"
    with_sign_in(raw, form)
    errors: dict[str, str] = {}
    result = None
    try:
        if form.get("action") == "test":
            result = probes.test_smtp(c.pool, c.keys, smtp_admin.SYSTEM, raw)
        else:
            with c.tx() as conn:
                smtp_admin.save(conn, c.keys, raw, smtp_admin.SYSTEM)
            return done_at("/settings/smtp", "Saved.")
    except InvalidSetting as exc:
        errors = exc.errors
    values: dict[str, Any] = {k: form.get(k, "") for k in ("host", "port", "security", "username", *OAUTH_FORM)
                              if k not in WRITE_ONLY}
    values["verify_tls"] = bool(form.get("verify_tls"))
    return _smtp_page(request, c, values, errors, result)


# ---- categories -------------------------------------------------------------------


def _categories_page(request: Request, c: WebContext, errors: dict[str, str], http_status: int = 200) -> Response:
    with c.tx() as conn:
        rows = categories.list_all(conn)
    return render(request, "categories.html", http_status, rows=rows, errors=errors)


@router.get("/categories")
def category_list(request: Request, c: Ctx) -> Response:
    return _categories_page(request, c, {})


def _category_action(request: Request, c: WebContext, action: Callable[[Any], str]) -> Response:
    try:
        with c.tx() as conn:
            message = action(conn)
        return done_at("/categories", message)
    except InvalidSetting as exc:
        return _categories_page(request, c, exc.errors, 422)
    except Conflict as exc:
        return _categories_page(request, c, {exc.field or "form": str(exc)}, 409)


@router.post("/categories")
def category_create(request: Request, form: Form, c: Ctx) -> Response:
    def add(conn: Any) -> str:
        categories.create(conn, form.get("name"))
        return f"Category {form.get('name', '').strip()} added."

    return _category_action(request, c, add)


@router.post("/categories/{category_id}/rename")
def category_rename(request: Request, category_id: int, form: Form, c: Ctx) -> Response:
    return _category_action(request, c, lambda conn: (
        f"Category renamed to {categories.rename(conn, category_id, form.get('name'))['name']}."))


@router.post("/categories/{category_id}/delete")
def category_delete(request: Request, category_id: int, form: Form, c: Ctx) -> Response:
    def delete(conn: Any) -> str:
        gone = categories.delete(conn, category_id, form.get("move_to") or None)
        moved = (f" Its {gone['mailboxes']} mailbox(es) and {gone['requests']} request(s) were moved."
                 if form.get("move_to") else "")
        return f"Category {gone['name']} deleted.{moved}"

    return _category_action(request, c, delete)

