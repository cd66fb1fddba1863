"""The admin web's OAuth2 Connect button and the provider's callback (services/admin/oauth_connect.py).

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

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from services.admin import oauth_connect
from services.admin.errors import Conflict
from services.web.context import Ctx
from services.web.page_kit import done_at

router = APIRouter()
REDIRECT_ENV = "DESKMAIL_OAUTH_REDIRECT_URI"


def redirect_uri(request: Request) -> str:
    return os.environ.get(REDIRECT_ENV) or str(request.url_for("oauth2_callback"))


@router.post("/mailboxes/{mailbox_id}/oauth2/connect")
def connect(request: Request, mailbox_id: int, c: Ctx) -> Response:
    try:
        with c.tx() as conn:
            url = oauth_connect.start(conn, c.keys, mailbox_id, redirect_uri(request))
    except Conflict as exc:
        return done_at(f"/mailboxes/{mailbox_id}", str(exc))
    return RedirectResponse(url, status_code=303)


@router.post("/api/v1/mailboxes/{mailbox_id}/oauth2/authorize")
def authorize_url(request: Request, mailbox_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        return JSONResponse({"authorization_url": oauth_connect.start(conn, c.keys, mailbox_id,
                                                                      redirect_uri(request))})


@router.get("/oauth2/callback", name="oauth2_callback")
def callback(request: Request, c: Ctx) -> Response:
    try:
        mailbox_id = oauth_connect.finish(c.pool, c.keys, dict(request.query_params))
    except Conflict as exc:
        return c.templates.TemplateResponse(request, "error.html", {"status": 400, "message": str(exc)},
                                            status_code=400)
    return done_at(f"/mailboxes/{mailbox_id}" if mailbox_id else "/mailboxes", "Connected: OAuth2 sign-in stored.")
