"""Logging in and out of the admin pages.

The login form has no session yet, so it is protected against cross-site
posting with a double-submit cookie (a random value in a cookie and in the
form, which another site can neither read nor set). A wrong password and an
unknown user name get the same answer; too many failures are throttled
(services.admin.users) and answered 429 with Retry-After.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.admin import users
from services.admin.users import SESSION_SECONDS, Throttled
from services.web.security import (
    LOGIN_CSRF_COOKIE,
    Principal,
    client_address,
    cookie_name,
    principal,
    secure_request,
    session_cookie,
)

log = logging.getLogger(__name__)
router = APIRouter()


def _safe_next(target: Any) -> str:
    text = str(target or "/")
    # Only paths on this site: no scheme, no //host, no backslash tricks.
    if not text.startswith("/") or text.startswith(("//", "/\\")):
        return "/"
    return text


def _login_page(request: Request, error: str | None = None, status: int = 200,
                headers: dict[str, str] | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = request.app.state.ctx.templates.TemplateResponse(
        request, "login.html",
        {"error": error, "next": _safe_next(request.query_params.get("next")), "login_csrf": token},
        status_code=status, headers=headers)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=secure_request(request), path="/login")
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    sent, expected = str(form.get("csrf_token") or ""), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent, expected):
        return _login_page(request, "The form had expired; please log in again.", 403)
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    client = client_address(request)
    pool = request.app.state.ctx.pool

    def attempt() -> tuple[str, users.Session] | None:
        with pool.connection() as conn, conn.transaction():
            return users.login(conn, username, password, client)

    try:
        found = await run_in_threadpool(attempt)
    except Throttled as exc:
        log.warning("login throttled", extra={"username": username, "client": client})
        return _login_page(request, f"Too many failed logins; try again in {exc.retry_after} seconds.",
                           429, {"Retry-After": str(exc.retry_after)})
    if found is None:
        log.info("login failed", extra={"username": username, "client": client})
        return _login_page(request, "Wrong user name or password.", 401)
    session_id, session = found
    log.info("logged in", extra={"user": session.user.username, "client": client})
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(cookie_name(request), session_id, max_age=SESSION_SECONDS, httponly=True,
                        secure=secure_request(request), samesite="lax", path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, who: Principal = Depends(principal)) -> Response:  # noqa: B008
    session_id = session_cookie(request)
    if session_id:
        with request.app.state.ctx.tx() as conn:
            users.logout(conn, session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(cookie_name(request), path="/")
    return response
