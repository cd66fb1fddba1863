"""The mailbox pages: the list, the form (every setting, its SMTP section, tests and test mail), removal.

The form's fields are the admin layer's (services/admin/mailboxes.py and
mailbox_smtp.py); this module only turns checkboxes and the SMTP section's
choice into those fields and back. Its SMTP section shows the settings the
mailbox sends with: its own (custom), or shared named ones with the other
mailboxes that use them, and asks before changing shared ones.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.admin import categories, mailbox_smtp, probes
from services.admin import mailboxes as mailbox_admin
from services.admin import templates as template_admin
from services.admin.errors import Conflict, InvalidSetting
from services.web.context import Ctx, WebContext
from services.web.page_kit import Form, render, see_other

router = APIRouter()

MAILBOX_TEXT = ("from_name", "address", "folder", "archive_folder", "host", "username", "password",
                "account_type", "port", "security", "category_id", "poll_interval", "max_per_poll",
                "max_message_bytes")
MAILBOX_CHECKBOXES = ("archive", "auto_reply", "enabled")
OAUTH_FORM = mailbox_admin.OAUTH_FIELDS
WRITE_ONLY = mailbox_admin.WRITE_ONLY
SMTP_TEXT = ("host", "port", "security", "username", "password")
MAILDIR_HINT = "Maildir: no port and no security (it is a folder on this server, not a connection)"
PAGE_POLLS = 10  # the mailbox page's "Recent polls"; the API gives up to 100
SMTP_FLOWS = [("refresh_token", "Paste a refresh token"), ("client_credentials", "Client credentials (app-only access)")]
NEW_DEFAULTS = {"folder": "INBOX", "archive": True, "archive_folder": "deskmail_archive", "account_type": "imap",
                "security": "tls", "verify_tls": True, "enabled": True, "poll_interval": 60, "max_per_poll": 500,
                "max_message_bytes": 25 * 1024 * 1024, "smtp_id": "system", "smtp_security": "starttls",
                "smtp_verify_tls": True, "smtp_auth_method": "password", "smtp_oauth_provider": "microsoft",
                "smtp_oauth_flow": "refresh_token", "smtp_oauth_mechanism": "auto", "smtp_fields_for": ""}
OAUTH_DEFAULTS = {"auth_method": "password", "oauth_provider": "microsoft", "oauth_flow": "authorization_code",
                  "oauth_mechanism": "auto"}
NEW_DEFAULTS.update(OAUTH_DEFAULTS)


def with_sign_in(raw: dict[str, Any], form: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """raw plus the form's sign-in method and, with OAuth2 chosen, its OAuth2 fields (prefixed as in the form).

    The OAuth2 fields are on the page (hidden) whatever is chosen: they count only with OAuth2.
    """
    method = form.get(f"{prefix}auth_method", "password")
    raw[f"{prefix}auth_method"] = method
    if method == "oauth2":
        raw.update({prefix + k: form[prefix + k] for k in OAUTH_FORM if prefix + k in form and k != "auth_method"})
    return raw


def mailbox_form_values(form: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the admin layer's input (checkboxes: absent means off)."""
    raw: dict[str, Any] = {k: form[k] for k in MAILBOX_TEXT if k in form}
    with_sign_in(raw, form)
    for name in MAILBOX_CHECKBOXES:
        raw[name] = "on" if form.get(name) else "off"
    # The form asks the positive question ("verify the certificate"), on by default.
    raw["allow_self_signed"] = "off" if form.get("verify_tls") else "on"
    raw.update(_smtp_section(form))
    return raw


def _smtp_section(form: dict[str, str]) -> dict[str, Any]:
    """The SMTP section: the choice, and the fields when they belong to it.

    The fields show the settings named by the hidden smtp_fields_for (the
    settings the page was drawn with), or nothing for a new mailbox. They
    count for "custom" and for those settings; "custom" chosen over shared
    settings' fields means a copy of them for this mailbox.
    """
    choice = form.get("smtp_id", "system") or "system"
    fields_for = form.get("smtp_fields_for", "")
    section: dict[str, Any] = {"smtp_id": choice}
    if choice != "custom" and choice != fields_for:
        return section
    section.update({f"smtp_{k}": form.get(f"smtp_{k}", "") for k in SMTP_TEXT})
    section["smtp_allow_self_signed"] = "off" if form.get("smtp_verify_tls") else "on"
    with_sign_in(section, form, "smtp_")
    if form.get("smtp_edit"):
        section["smtp_edit"] = form["smtp_edit"]
    if choice == "custom" and fields_for and form.get("smtp_fields_kind") == "named":
        section.update(smtp_id=fields_for, smtp_edit="copy")
    return section


def _smtp_display(smtp: dict[str, Any]) -> dict[str, Any]:
    """The SMTP section's fields from how the mailbox sends (mailbox_smtp.view)."""
    settings = smtp["settings"]
    if settings is None:
        return {"smtp_id": "system", "smtp_fields_for": ""}
    out: dict[str, Any] = {f"smtp_{k}": ("" if settings[k] is None else settings[k])
                           for k in ("host", "port", "security", "username")}
    out["smtp_verify_tls"] = not settings["allow_self_signed"]
    out.update({f"smtp_{k}": v for k, v in settings.items() if k.startswith("oauth_") or k == "auth_method"})
    out["smtp_id"] = "custom" if smtp["use"] == "custom" else str(smtp["id"])
    out["smtp_fields_for"] = str(smtp["id"])
    return out


def _form_context(conn: Any, mailbox_id: int | None, values: dict[str, Any]) -> dict[str, Any]:
    kind, security = values.get("account_type") or "imap", values.get("security") or "tls"
    fields_for = str(values.get("smtp_fields_for") or "")
    drawn_for = None
    if fields_for.isdigit():
        try:
            drawn_for = mailbox_smtp.view(conn, mailbox_id or 0, int(fields_for))
        except LookupError:  # removed meanwhile: the fields are just fields
            drawn_for = None
    overrides = {}
    if mailbox_id is not None:
        overrides = {n: template_admin.view(conn, mailbox_id, n)["source"] for n in template_admin.NAMES}
    default_port = mailbox_admin.DEFAULT_PORTS.get((kind, security), "")
    return {
        "port_hint": f"blank: the usual port ({default_port})" if default_port else MAILDIR_HINT,
        "maildir_hint": MAILDIR_HINT,
        "mailbox_id": mailbox_id, "values": values, "categories": categories.list_all(conn),
        "smtp_rows": mailbox_smtp.named(conn), "smtp_drawn_for": drawn_for,
        "default_port": default_port,
        "default_ports": {f"{k}/{s}": p for (k, s), p in mailbox_admin.DEFAULT_PORTS.items()},
        "from_preview": mailbox_admin.preview_from_name(values.get("from_name") or ""),
        "template_names": template_admin.NAMES, "overrides": overrides, "smtp_flows": SMTP_FLOWS,
    }


def _values_for_display(saved: dict[str, Any]) -> dict[str, Any]:
    out = {k: ("" if v is None else v) for k, v in saved.items() if k != "smtp"}
    out["verify_tls"] = not saved.get("allow_self_signed")
    for name, default in OAUTH_DEFAULTS.items():
        out[name] = out.get(name) or default
    out.update(_smtp_display(saved["smtp"]))
    for name, default in {**OAUTH_DEFAULTS, "oauth_flow": "refresh_token"}.items():
        out[f"smtp_{name}"] = out.get(f"smtp_{name}") or default
    return out


def _typed_display(form: dict[str, str]) -> dict[str, Any]:
    """The values as typed, to show the form again after an answer."""
    values: dict[str, Any] = {k: form.get(k, "") for k in (*MAILBOX_TEXT, *OAUTH_FORM) if k not in WRITE_ONLY}
    for name in MAILBOX_CHECKBOXES:
        values[name] = bool(form.get(name))
    values["verify_tls"] = bool(form.get("verify_tls"))
    for k in SMTP_TEXT:
        if k != "password":
            values[f"smtp_{k}"] = form.get(f"smtp_{k}", "")
    values["smtp_verify_tls"] = bool(form.get("smtp_verify_tls"))
    values.update({f"smtp_{k}": form.get(f"smtp_{k}", "") for k in OAUTH_FORM if k not in WRITE_ONLY})
    for name in ("smtp_id", "smtp_fields_for", "smtp_edit"):
        values[name] = form.get(name, "")
    return values


@router.get("/mailboxes")
def mailbox_list(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        rows = mailbox_admin.list_all(conn)
    return render(request, "mailboxes.html", mailboxes=rows)


@router.get("/mailboxes/new")
def mailbox_new(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        context = _form_context(conn, None, dict(NEW_DEFAULTS))
    return render(request, "mailbox_form.html", errors={}, **context)


@router.get("/mailboxes/{mailbox_id}")
def mailbox_edit(request: Request, mailbox_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        saved = mailbox_admin.view(conn, mailbox_id)
        context = _form_context(conn, mailbox_id, _values_for_display(saved))
        polls = mailbox_admin.recent_polls(conn, mailbox_id, PAGE_POLLS)
    return render(request, "mailbox_form.html", errors={}, saved=saved, polls=polls, **context)


def _mailbox_post(request: Request, c: WebContext, form: dict[str, str], mailbox_id: int | None) -> Response:
    action = form.get("action", "save")
    raw = mailbox_form_values(form)
    errors: dict[str, str] = {}
    result: dict[str, Any] | None = None
    folder_list: list[str] | None = None
    try:
        if action == "save":
            with c.tx() as conn:
                saved_id = mailbox_admin.save(conn, c.keys, raw, mailbox_id)
            return see_other(f"/mailboxes/{saved_id}?{urlencode({'done': 'Saved.'})}")
        if action == "test":
            result = probes.test_mailbox(c.pool, c.keys, raw, mailbox_id)
        elif action == "folders":
            listed = probes.list_folders(c.pool, c.keys, raw, mailbox_id)
            folder_list = listed["folders"]
            if not listed["ok"]:
                result = {"ok": False, "steps": [{"step": listed["step"], "ok": False, "detail": listed["detail"]}]}
        elif action == "send_test":
            result = probes.send_test_mail(c.pool, c.keys, raw, mailbox_id, form.get("test_to", ""))
    except InvalidSetting as exc:
        errors = exc.errors
    except Conflict as exc:
        errors = {exc.field or "form": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a test that cannot even start: say why on the page
        if action == "save":
            raise
        errors = {"form": f"{exc}"}
    with c.tx() as conn:
        context = _form_context(conn, mailbox_id, _typed_display(form))
        saved = mailbox_admin.view(conn, mailbox_id) if mailbox_id is not None else None
    return render(request, "mailbox_form.html", 422 if errors else 200, errors=errors, result=result,
                  folder_list=folder_list, saved=saved, test_to=form.get("test_to", ""), **context)


@router.post("/mailboxes/new")
def mailbox_create(request: Request, form: Form, c: Ctx) -> Response:
    return _mailbox_post(request, c, form, None)


@router.post("/mailboxes/{mailbox_id}")
def mailbox_update(request: Request, mailbox_id: int, form: Form, c: Ctx) -> Response:
    with c.tx() as conn:
        mailbox_admin.view(conn, mailbox_id)  # 404 before anything else
    return _mailbox_post(request, c, form, mailbox_id)


@router.get("/mailboxes/{mailbox_id}/delete")
def mailbox_delete_confirm(request: Request, mailbox_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        saved = mailbox_admin.view(conn, mailbox_id)
    return render(request, "confirm_delete.html", saved=saved)


@router.post("/mailboxes/{mailbox_id}/delete")
def mailbox_delete(mailbox_id: int, form: Form, c: Ctx) -> Response:
    if form.get("confirm") != "yes":
        return see_other(f"/mailboxes/{mailbox_id}/delete")
    with c.tx() as conn:
        address = mailbox_admin.remove(conn, mailbox_id)
    return see_other(f"/mailboxes?{urlencode({'done': f'Mailbox {address} removed; its requests stay.'})}")


@router.post("/mailboxes/{mailbox_id}/enable")
def mailbox_enable(mailbox_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        mailbox_admin.set_enabled(conn, mailbox_id, True)
    return see_other("/mailboxes")


@router.post("/mailboxes/{mailbox_id}/disable")
def mailbox_disable(mailbox_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        mailbox_admin.set_enabled(conn, mailbox_id, False)
    return see_other("/mailboxes")
