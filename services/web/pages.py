"""The admin pages: server-rendered, every form works without JavaScript.

Each page calls the same service functions as the API (often the API's own
helpers), so a value refused here is refused there in the same words. Forms
post back to their own page; a form with an error is shown again with the
values as typed and each message beside its field. Successful posts
redirect (post/redirect/get), so a reload never submits twice.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from services.admin import categories
from services.admin import mailboxes as mailbox_admin
from services.admin import requests as request_views
from services.admin import status as ops_status
from services.admin.errors import Conflict
from services.web import api_mailboxes, api_ops, api_settings, api_templates
from services.web.context import Ctx, WebContext
from services.web.schemas import TemplateIn
from services.web.security import CSP, Principal
from shared import smtp_settings, template_store
from shared import templates as mail_templates
from shared.mailboxes import DEFAULT_PORTS, InvalidSetting
from shared.oauth2 import owners
from shared.oauth2.providers import endpoints

router = APIRouter()

MAILBOX_TEXT = ("from_name", "address", "folder", "archive_folder", "host", "username", "password",
                "account_type", "port", "security", "category_id", "smtp_id", "poll_interval",
                "max_per_poll", "max_message_bytes")
MAILBOX_CHECKBOXES = ("archive", "auto_reply", "enabled")
OAUTH_FORM = ("auth_method", *owners.FIELDS, owners.SECRET, owners.REFRESH)  # shared/oauth2/owners.py names
WRITE_ONLY = ("password", owners.SECRET, owners.REFRESH)
SMTP_FORM = ("host", "port", "security", "username", "password")
PAGE_POLLS = 10  # the mailbox page's "Recent polls"; the API gives up to 100
STEP_NAMES = {"dns": "DNS", "tcp": "TCP", "tls": "TLS", "starttls": "STARTTLS", "connect": "Connect",
              "login": "Login", "folder": "Folder", "archive_folder": "Archive folder", "config": "Settings",
              "token_endpoint": "OAuth2 token endpoint", "token": "OAuth2 token", "send": "Send"}


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


Form = Annotated[dict[str, str], Depends(form_data)]


def step_name(step: str) -> str:
    if step.startswith("smtp_"):
        return "SMTP " + STEP_NAMES.get(step[5:], step[5:])
    return STEP_NAMES.get(step, step)


def render(request: Request, name: str, http_status: int = 200, /, **context: Any) -> Response:
    who: Principal | None = getattr(request.state, "principal", None)
    c: WebContext = request.app.state.ctx
    response = c.templates.TemplateResponse(request, name, {
        "user": who.user.username if who else None, "csrf": who.csrf_token if who else "",
        "step_name": step_name, **context}, status_code=http_status)
    origin = _connect_origin(context.get("saved"))
    if origin:
        # The Connect form's answer redirects to the provider's sign-in page, and
        # browsers check a form's redirects against form-action too.
        response.headers["content-security-policy"] = CSP.replace("form-action 'self'",
                                                                  f"form-action 'self' {origin}")
    return response


def _connect_origin(saved: Any) -> str | None:
    """scheme://host[:port] of a saved OAuth2 mailbox's authorization endpoint (its Connect target)."""
    if not isinstance(saved, dict) or saved.get("auth_method") != "oauth2" or not saved.get("oauth_provider"):
        return None
    try:
        url = endpoints({k[6:]: v for k, v in saved.items() if k.startswith("oauth_")}).authorize_url
    except KeyError:  # a generic provider without a token URL: nothing to connect to
        return None
    parts = urlsplit(url or "")
    if parts.scheme not in ("https", "http") or not parts.netloc or any(c in parts.netloc for c in " ;'\""):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def done_at(path: str, message: str) -> RedirectResponse:
    """Back to `path`, which then says what was done."""
    return see_other(f"{path}?{urlencode({'done': message})}")


# ---- status (home) -----------------------------------------------------------

@router.get("/")
def home(request: Request, c: Ctx) -> Response:
    status = api_ops.status(c)
    letters = api_ops.dead_letters(c) if any(
        q["kind"] == "dead" and q["messages"] for q in status["queues"]) else []
    try:
        discarded = api_ops.discarded(c, 5)
    except Exception:  # noqa: BLE001 - the database is down: the status above already says so
        discarded = None
    return render(request, "status.html", status=status, letters=letters, discarded=discarded,
                  age_text=ops_status.age_text, done=request.query_params.get("done"))


@router.post("/dead-letters/{letter_id}/replay")
def replay_letter(letter_id: str, c: Ctx) -> Response:
    done = api_ops.replay(c, [letter_id], None)
    return done_at("/", f"{done['count']} dead letter(s) replayed")


@router.post("/dead-letters/replay")
def replay_letters(form: Form, c: Ctx) -> Response:
    done = api_ops.replay(c, None, form.get("stage") or None)
    return done_at("/", f"{done['count']} dead letter(s) replayed")


@router.post("/dead-letters/{letter_id}/discard")
def discard_letter(request: Request, letter_id: str, form: Form, c: Ctx) -> Response:
    who = f"{request.state.principal.user.username} (web)"
    done = api_ops.discard(c, letter_id, form.get("reason"), who)
    return done_at("/", f"{done['count']} dead letter(s) discarded")


# ---- mailboxes -------------------------------------------------------------

@router.get("/mailboxes")
def mailbox_list(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        rows = mailbox_admin.list_all(conn)
    return render(request, "mailboxes.html", mailboxes=rows, done=request.query_params.get("done"))


def mailbox_form_values(form: dict[str, str]) -> dict[str, Any]:
    """The mailbox form's fields as the service layer's input (checkboxes: absent means off)."""
    raw: dict[str, Any] = {k: form[k] for k in MAILBOX_TEXT if k in form}
    raw.update({k: form[k] for k in OAUTH_FORM if k in form})
    if form.get("auth_method", "password") == "password":
        # The OAuth2 fields are on the page (hidden) whatever is chosen: they only count with OAuth2.
        raw = {k: v for k, v in raw.items() if k == "auth_method" or k not in OAUTH_FORM}
    for name in MAILBOX_CHECKBOXES:
        raw[name] = "on" if form.get(name) else "off"
    # The form asks the positive question ("verify the certificate"), on by default.
    raw["allow_self_signed"] = "off" if form.get("verify_tls") else "on"
    if raw.get("smtp_id") in ("system", "custom"):
        raw["smtp_id"] = ""
    return raw


def smtp_form_values(form: dict[str, str]) -> dict[str, Any] | None:
    """The custom SMTP fields of the mailbox form, or None for the system default."""
    if form.get("smtp_id") != "custom":
        return None
    values: dict[str, Any] = {k: form.get(f"smtp_{k}", "") for k in SMTP_FORM}
    values["allow_self_signed"] = "off" if form.get("smtp_verify_tls") else "on"
    return _with_oauth(values, form, "smtp_")


def _form_context(c: WebContext, conn: Any, mailbox_id: int | None, values: dict[str, Any]) -> dict[str, Any]:
    kind, security = values.get("account_type") or "imap", values.get("security") or "tls"
    smtp_rows = [r for r in smtp_settings.list_all(conn) if not r["is_system"]]
    custom = None
    if values.get("smtp_id") not in (None, "", "system", "custom"):
        custom = next((r for r in smtp_rows if str(r["id"]) == str(values["smtp_id"])), None)
    overrides = {}
    if mailbox_id is not None:
        overrides = {n: template_store.effective(conn, mailbox_id, n).source for n in mail_templates.TEMPLATE_NAMES}
    return {
        "mailbox_id": mailbox_id, "values": values, "categories": categories.list_all(conn),
        "smtp_rows": smtp_rows, "custom_smtp": custom,
        "default_port": DEFAULT_PORTS.get((kind, security), ""),
        "default_ports": {f"{k}/{s}": p for (k, s), p in DEFAULT_PORTS.items()},
        "from_preview": mailbox_admin.preview_from_name(values.get("from_name") or ""),
        "template_names": mail_templates.TEMPLATE_NAMES, "overrides": overrides, "smtp_flows": SMTP_FLOWS,
    }


def _values_for_display(saved: dict[str, Any]) -> dict[str, Any]:
    out = {k: ("" if v is None else v) for k, v in saved.items()}
    out["verify_tls"] = not saved.get("allow_self_signed")
    out["smtp_id"] = saved.get("smtp_id") or "system"
    for name, default in OAUTH_DEFAULTS.items():
        out[name] = out.get(name) or default
    return out


def _typed_display(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: form.get(k, "") for k in (*MAILBOX_TEXT, *OAUTH_FORM) if k not in WRITE_ONLY}
    for name in MAILBOX_CHECKBOXES:
        values[name] = bool(form.get(name))
    values["verify_tls"] = bool(form.get("verify_tls"))
    for k in SMTP_FORM:
        if k != "password":
            values[f"smtp_{k}"] = form.get(f"smtp_{k}", "")
    values["smtp_verify_tls"] = bool(form.get("smtp_verify_tls"))
    values.update({f"smtp_{k}": form.get(f"smtp_{k}", "") for k in OAUTH_FORM if k not in WRITE_ONLY})
    return values


NEW_DEFAULTS = {"folder": "INBOX", "archive": True, "archive_folder": "deskmail_archive", "account_type": "imap",
                "security": "tls", "verify_tls": True, "enabled": True, "poll_interval": 60, "max_per_poll": 500,
                "max_message_bytes": 25 * 1024 * 1024, "smtp_id": "system", "smtp_security": "starttls",
                "smtp_verify_tls": True, "smtp_auth_method": "password", "smtp_oauth_provider": "microsoft",
                "smtp_oauth_flow": "refresh_token", "smtp_oauth_mechanism": "auto"}
OAUTH_DEFAULTS = {"auth_method": "password", "oauth_provider": "microsoft", "oauth_flow": "authorization_code",
                  "oauth_mechanism": "auto"}
NEW_DEFAULTS.update(OAUTH_DEFAULTS)


@router.get("/mailboxes/new")
def mailbox_new(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        context = _form_context(c, conn, None, dict(NEW_DEFAULTS))
    return render(request, "mailbox_form.html", errors={}, **context)


@router.get("/mailboxes/{mailbox_id}")
def mailbox_edit(request: Request, mailbox_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        saved = mailbox_admin.view(conn, mailbox_id)
        values = _values_for_display(saved)
        context = _form_context(c, conn, mailbox_id, values)
        if context["custom_smtp"]:
            values["smtp_id"] = "custom"
            for k in SMTP_FORM:
                if k != "password":
                    values[f"smtp_{k}"] = context["custom_smtp"].get(k) or ""
            values["smtp_verify_tls"] = not context["custom_smtp"]["allow_self_signed"]
            smtp_oauth = owners.view(conn, "smtp_settings", context["custom_smtp"]["id"])
            context["custom_smtp"].update(smtp_oauth)
            values.update({f"smtp_{k}": v for k, v in smtp_oauth.items() if v is not None})
        for name, default in {**OAUTH_DEFAULTS, "oauth_flow": "refresh_token"}.items():
            values.setdefault(f"smtp_{name}", default)
        polls = mailbox_admin.recent_polls(conn, mailbox_id, PAGE_POLLS)
    return render(request, "mailbox_form.html", errors={}, saved=saved, polls=polls,
                  done=request.query_params.get("done"), **context)


def _save_mailbox(c: WebContext, form: dict[str, str], mailbox_id: int | None) -> int:
    raw = mailbox_form_values(form)
    smtp_raw = smtp_form_values(form)
    with c.tx() as conn:
        return mailbox_admin.save_with_smtp(conn, c.keys, raw, smtp_raw, mailbox_id)


def _mailbox_post(request: Request, c: WebContext, form: dict[str, str], mailbox_id: int | None) -> Response:
    action = form.get("action", "save")
    errors: dict[str, str] = {}
    result: dict[str, Any] | None = None
    folder_list: list[str] | None = None
    try:
        if action == "save":
            new_id = _save_mailbox(c, form, mailbox_id)
            return see_other(f"/mailboxes/{new_id}?{urlencode({'done': 'Saved.'})}")
        if action == "test":
            result = api_mailboxes.run_test(c, mailbox_form_values(form), mailbox_id)
        elif action == "folders":
            listed = api_mailboxes.run_folders(c, mailbox_form_values(form), mailbox_id)
            folder_list = listed["folders"]
            if not listed["ok"]:
                result = {"ok": False, "steps": [{"step": listed["step"], "ok": False, "detail": listed["detail"]}]}
        elif action == "send_test":
            result = mailbox_admin.send_test_mail_from(c.pool, c.keys, mailbox_form_values(form),
                                                       smtp_form_values(form), mailbox_id, form.get("test_to", ""))
    except InvalidSetting as exc:
        errors = exc.errors
    except Conflict as exc:
        errors = {exc.field or "form": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a test that cannot even start: say why on the page
        if action == "save":
            raise
        errors = {"form": f"{exc}"}
    with c.tx() as conn:
        context = _form_context(c, conn, mailbox_id, _typed_display(form))
        saved = mailbox_admin.view(conn, mailbox_id) if mailbox_id is not None else None
    status = 422 if errors else 200
    return render(request, "mailbox_form.html", status, errors=errors, result=result, folder_list=folder_list,
                  saved=saved, test_to=form.get("test_to", ""), **context)


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
        address = mailbox_admin.view(conn, mailbox_id)["address"]
        mailbox_admin.remove(conn, mailbox_id)
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


# ---- templates ---------------------------------------------------------------

def _template_page(request: Request, c: WebContext, mailbox_id: int | None, name: str,
                   form: dict[str, str] | None) -> Response:
    errors: dict[str, str] = {}
    rendered = None
    action = (form or {}).get("action", "")
    with c.tx() as conn:
        current = api_templates.template_out(conn, mailbox_id, name)
        mailbox = mailbox_admin.view(conn, mailbox_id) if mailbox_id is not None else None
        body = TemplateIn(**{k: form[k] for k in ("subject", "body_text", "body_html") if k in form}) \
            if form else TemplateIn()
        try:
            if action == "save":
                api_templates.save(conn, mailbox_id, name, body)
                base = f"/mailboxes/{mailbox_id}/templates/{name}" if mailbox_id else f"/templates/{name}"
                return see_other(f"{base}?{urlencode({'done': 'Saved.'})}")
            if action == "revert":
                template_store.reset(conn, mailbox_id, name)
                base = f"/mailboxes/{mailbox_id}/templates/{name}" if mailbox_id else f"/templates/{name}"
                return see_other(f"{base}?{urlencode({'done': 'Reverted.'})}")
            rendered = api_templates.preview(conn, mailbox_id, name, body)
        except InvalidSetting as exc:
            errors = exc.errors
    shown = {**current, **{k: v for k, v in (form or {}).items() if k in ("subject", "body_text", "body_html")}}
    return render(request, "template_form.html", 422 if errors else 200, name=name, mailbox=mailbox,
                  template=shown, source=current["source"], errors=errors, rendered=rendered,
                  fields=mail_templates.FIELDS, names=mail_templates.CONTEXT_NAMES[name],
                  done=request.query_params.get("done"))


@router.get("/templates")
def template_list(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        overview = template_store.overview(conn)
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


# ---- SMTP and categories -------------------------------------------------------

@router.get("/settings/smtp")
def smtp_page(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        row = smtp_settings.find(conn, smtp_settings.SYSTEM)
        values = {k: ("" if row is None or row[k] is None else row[k]) for k in ("host", "port", "security", "username")}
        values["security"] = values["security"] or "starttls"
        values["verify_tls"] = not (row and row["allow_self_signed"])
        has_password = bool(row and row["password_enc"] is not None)
        oauth = owners.view(conn, "smtp_settings", row["id"]) if row else {}
    values.update({k: v for k, v in oauth.items() if v is not None})
    for name, default in {**OAUTH_DEFAULTS, "oauth_flow": "refresh_token"}.items():
        values[name] = values.get(name) or default
    return render(request, "smtp.html", values=values, errors={}, has_password=has_password, oauth=oauth,
                  flows=SMTP_FLOWS, done=request.query_params.get("done"))


SMTP_FLOWS = [("refresh_token", "Paste a refresh token"), ("client_credentials", "Client credentials (app-only access)")]


def _with_oauth(raw: dict[str, Any], form: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """raw plus the form's sign-in method and, with OAuth2 chosen, its OAuth2 fields."""
    method = form.get(f"{prefix}auth_method", "password")
    raw["auth_method"] = method
    if method == "oauth2":
        raw.update({k: form[prefix + k] for k in OAUTH_FORM if prefix + k in form and k != "auth_method"})
    return raw


@router.post("/settings/smtp")
def smtp_post(request: Request, form: Form, c: Ctx) -> Response:
    raw: dict[str, Any] = {k: form.get(k, "") for k in SMTP_FORM}
    raw["allow_self_signed"] = "off" if form.get("verify_tls") else "on"
    raw = _with_oauth(raw, form)
    errors: dict[str, str] = {}
    result = None
    try:
        if form.get("action") == "test":
            result = api_settings.smtp_test(c, smtp_settings.SYSTEM, raw)
        else:
            with c.tx() as conn:
                api_settings.save_smtp(conn, c.keys, raw, smtp_settings.SYSTEM)
            return see_other(f"/settings/smtp?{urlencode({'done': 'Saved.'})}")
    except InvalidSetting as exc:
        errors = exc.errors
    with c.tx() as conn:
        row = smtp_settings.find(conn, smtp_settings.SYSTEM)
        oauth = owners.view(conn, "smtp_settings", row["id"]) if row else {}
    values: dict[str, Any] = {k: form.get(k, "") for k in ("host", "port", "security", "username", *OAUTH_FORM)
                              if k not in WRITE_ONLY}
    values["verify_tls"] = bool(form.get("verify_tls"))
    return render(request, "smtp.html", 422 if errors else 200, values=values, errors=errors, result=result,
                  has_password=bool(row and row["password_enc"] is not None), oauth=oauth, flows=SMTP_FLOWS)


@router.get("/categories")
def category_list(request: Request, c: Ctx) -> Response:
    with c.tx() as conn:
        rows = categories.list_all(conn)
    return render(request, "categories.html", rows=rows, errors={}, done=request.query_params.get("done"))


def _category_action(request: Request, c: WebContext, action: Any) -> Response:
    try:
        with c.tx() as conn:
            message = action(conn)
        return see_other(f"/categories?{urlencode({'done': message})}")
    except (InvalidSetting, Conflict) as exc:
        errors = exc.errors if isinstance(exc, InvalidSetting) else {exc.field or "form": str(exc)}
    with c.tx() as conn:
        rows = categories.list_all(conn)
    return render(request, "categories.html", 422 if isinstance(errors, dict) and "name" in errors else 409,
                  rows=rows, errors=errors)


@router.post("/categories")
def category_create(request: Request, form: Form, c: Ctx) -> Response:
    return _category_action(request, c, lambda conn: (
        categories.create(conn, form.get("name")) and f"Category {form.get('name', '').strip()} added."))


@router.post("/categories/{category_id}/rename")
def category_rename(request: Request, category_id: int, form: Form, c: Ctx) -> Response:
    return _category_action(request, c, lambda conn: (
        categories.rename(conn, category_id, form.get("name")) or "Category renamed."))


@router.post("/categories/{category_id}/delete")
def category_delete(request: Request, category_id: int, c: Ctx) -> Response:
    return _category_action(request, c, lambda conn: (
        categories.delete(conn, category_id) or "Category deleted."))


# ---- requests -----------------------------------------------------------------

@router.get("/requests")
def request_list(request: Request, c: Ctx) -> Response:
    raw = {k: request.query_params.get(k) for k in ("mailbox_id", "category_id", "status", "unparsed",
                                                    "cursor", "limit")}
    errors: dict[str, str] = {}
    try:
        filters = request_views.parse_filters(raw)
    except InvalidSetting as exc:
        errors = exc.errors
        filters = request_views.parse_filters({})
    with c.tx() as conn:
        found = request_views.page(conn, **filters)
        boxes = mailbox_admin.list_all(conn)
        cats = categories.list_all(conn)
    keep = {k: v for k, v in raw.items() if v and k != "cursor"}
    older = f"/requests?{urlencode({**keep, 'cursor': found['next_cursor']})}" if found["next_cursor"] else None
    return render(request, "requests.html", 422 if errors else 200, page=found, filters=raw, errors=errors,
                  mailboxes=boxes, categories=cats, older=older)


@router.get("/requests/{request_id}")
def request_page(request: Request, request_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        found = request_views.detail(conn, request_id)
    return render(request, "request.html", r=found)
