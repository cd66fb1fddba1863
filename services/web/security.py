"""Who is asking, and may they change things: sessions, bearer tokens, CSRF, security headers.

- Pages use a session cookie holding only a random id (HttpOnly, SameSite=Lax,
  Secure and `__Host-` prefixed when served over TLS); the database has its
  SHA-256 and the session's CSRF synchroniser token.
- Every state-changing request made with the cookie must carry that token:
  a `csrf_token` form field, or an `X-CSRF-Token` header from our own script.
- API clients send `Authorization: Bearer <token>` (`deskmail admin
  create-token`); no cookie, so no CSRF check is needed.
- Every answer carries a strict Content-Security-Policy (no inline script,
  no framing by other sites) and is not cached.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.admin import users
from services.admin.users import Session, User

COOKIE = "deskmail_session"
SECURE_COOKIE = "__Host-deskmail_session"
LOGIN_CSRF_COOKIE = "deskmail_login_csrf"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds HEADERS to every answer that does not set its own policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (k, v) for k, v in HEADERS if k not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass(frozen=True)
class Principal:
    user: User
    session: Session | None  # None for bearer-token clients
    session_id: str | None = None

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token if self.session else ""


class LoginRequired(Exception):
    """No valid session or token: pages redirect to the login, the API answers 401."""


class CsrfRefused(Exception):
    """A state-changing request with the session cookie but without its CSRF token."""


def secure_request(request: Request) -> bool:
    return request.url.scheme == "https"


def session_cookie(request: Request) -> str | None:
    return request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)


def cookie_name(request: Request) -> str:
    return SECURE_COOKIE if secure_request(request) else COOKIE


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def principal(request: Request) -> Principal:
    """The dependency every protected route uses."""
    pool = request.app.state.ctx.pool
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()

        def by_token() -> User | None:
            with pool.connection() as conn:
                found = users.token_user(conn, token)
                conn.commit()
                return found

        user = await run_in_threadpool(by_token)
        if user is None:
            raise LoginRequired("the bearer token is not valid (revoked, or mistyped)")
        return Principal(user, None)
    session_id = session_cookie(request)
    if not session_id:
        raise LoginRequired("log in first, or send an API token as 'Authorization: Bearer ...'")

    def by_session() -> Session | None:
        with pool.connection() as conn:
            return users.session(conn, session_id)

    session = await run_in_threadpool(by_session)
    if session is None:
        raise LoginRequired("the session has expired; log in again")
    if request.method in UNSAFE:
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await request.form()).get("csrf_token") or "")
        if not sent or not hmac.compare_digest(sent, session.csrf_token):
            raise CsrfRefused("the form is out of date or did not come from this site; reload and retry")
    request.state.principal = Principal(session.user, session, session_id)
    return request.state.principal
