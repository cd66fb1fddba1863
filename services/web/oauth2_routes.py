"""The admin web's OAuth2 Connect button and the provider's callback (shared/oauth2/authorize.py).

    POST /mailboxes/{id}/oauth2/connect          (page form) -> 303 to the provider's sign-in
    POST /api/v1/mailboxes/{id}/oauth2/authorize (API)       -> {"authorization_url": ...}
    GET  /oauth2/callback?code&state                          -> tokens stored; back to the mailbox

Mounted behind the admin login like the pages: the administrator's session
cookie (SameSite=Lax) comes along when the provider redirects back. The
redirect URI registered with the provider is this server's /oauth2/callback,
or DESKMAIL_OAUTH_REDIRECT_URI behind a proxy that changes the address.
Nothing here ever puts a token in a page, a redirect or a log line.
"""

from __future__ import annotations

import os
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from services.admin.errors import NotFound
from services.web.context import Ctx, WebContext
from shared.oauth2 import authorize

router = APIRouter()
REDIRECT_ENV = "DESKMAIL_OAUTH_REDIRECT_URI"


def redirect_uri(request: Request) -> str:
    return os.environ.get(REDIRECT_ENV) or str(request.url_for("oauth2_callback"))


def _start(c: WebContext, request: Request, mailbox_id: int) -> str:
    with c.tx() as conn:
        row = conn.execute("SELECT username, auth_method, oauth_grant_id FROM mailboxes"
                           " WHERE id = %s AND removed_at IS NULL", (mailbox_id,)).fetchone()
        if row is None:
            raise NotFound(f"no mailbox {mailbox_id}")
        if row["auth_method"] != "oauth2" or row["oauth_grant_id"] is None:
            raise authorize.AuthorizationError("this mailbox signs in with a password; choose OAuth2 first")
        return authorize.start(conn, c.keys, row["oauth_grant_id"], redirect_uri(request), row["username"])


@router.post("/mailboxes/{mailbox_id}/oauth2/connect")
def connect(request: Request, mailbox_id: int, c: Ctx) -> Response:
    try:
        url = _start(c, request, mailbox_id)
    except authorize.AuthorizationError as exc:
        return RedirectResponse(f"/mailboxes/{mailbox_id}?{urlencode({'done': str(exc)})}", status_code=303)
    return RedirectResponse(url, status_code=303)


@router.post("/api/v1/mailboxes/{mailbox_id}/oauth2/authorize")
def authorize_url(request: Request, mailbox_id: int, c: Ctx) -> Response:
    try:
        return JSONResponse({"authorization_url": _start(c, request, mailbox_id)})
    except authorize.AuthorizationError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)


@router.get("/oauth2/callback", name="oauth2_callback")
def callback(request: Request, c: Ctx, code: str | None = None, state: str | None = None,
             error: str | None = None, error_description: str | None = None) -> Response:
    try:
        grant_id = authorize.finish(c.pool, c.keys, state, code, error, error_description)
    except authorize.AuthorizationError as exc:
        return c.templates.TemplateResponse(request, "error.html", {"status": 400, "message": str(exc)},
                                            status_code=400)
    with c.tx() as conn:
        row = conn.execute("SELECT id FROM mailboxes WHERE oauth_grant_id = %s", (grant_id,)).fetchone()
    target = f"/mailboxes/{row['id']}" if row else "/mailboxes"
    return RedirectResponse(f"{target}?{urlencode({'done': 'Connected: OAuth2 sign-in stored.'})}", status_code=303)
