"""What every admin page shares: reading a form, rendering a template, redirecting after a post.

Pages are server-rendered and every form works without JavaScript. Forms
post back to their own page; a form with an error is shown again with the
values as typed and each message beside its field (status 422). Successful
posts redirect (post/redirect/get), so a reload never submits twice.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from services.web.context import WebContext
from services.web.security import CSP, Principal
from shared.oauth2.providers import endpoints

STEP_NAMES = {"dns": "DNS", "tcp": "TCP", "tls": "TLS", "starttls": "STARTTLS", "connect": "Connect",
              "login": "Login", "folder": "Folder", "archive_folder": "Archive folder", "config": "Settings",
              "token_endpoint": "OAuth2 token endpoint", "token": "OAuth2 token", "send": "Send",
              "ready": "Ready", "ehlo": "EHLO"}


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


Form = Annotated[dict[str, str], Depends(form_data)]


def step_name(step: str) -> str:
    if step.startswith("smtp_"):
        return "SMTP " + STEP_NAMES.get(step[5:], step[5:])
    return STEP_NAMES.get(step, step)


def user_of(request: Request) -> str:
    who: Principal = request.state.principal
    return who.user.username


def render(request: Request, name: str, http_status: int = 200, /, **context: Any) -> Response:
    who: Principal | None = getattr(request.state, "principal", None)
    c: WebContext = request.app.state.ctx
    response = c.templates.TemplateResponse(request, name, {
        "user": who.user.username if who else None, "csrf": who.csrf_token if who else "",
        "step_name": step_name, "done": request.query_params.get("done"), **context}, status_code=http_status)
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
