"""Talking to a token endpoint (RFC 6749), and what each failure means.

Three outcomes matter to the rest of Deskmail, whatever the provider says:

    TokenUnavailable   the endpoint is unreachable, slow, answers 5xx or 429, or
                       says temporarily_unavailable: try again later; the stored
                       credentials are fine
    GrantRefused       invalid_grant: the refresh token (or code) is expired,
                       revoked or already used; only signing in again helps
                       (the grant is marked "needs reconnect")
    ClientRejected     invalid_client, unauthorized_client, invalid_scope, ...:
                       the OAuth2 settings are wrong; an administrator must fix them

Messages carry the endpoint and the provider's error code and description,
never a token or a secret: they end up in logs and on the status page.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlencode, urlsplit

from shared import settings

TIMEOUT = 20.0
TEMPORARY_CODES = ("temporarily_unavailable", "server_error", "slow_down")


class OAuthError(Exception):
    """A sign-in problem in words an administrator understands (no secrets inside)."""

    transient = False
    needs_reconnect = False


class TokenUnavailable(OAuthError):
    transient = True


class GrantRefused(OAuthError):
    needs_reconnect = True


class ClientRejected(OAuthError):
    pass


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    obtained_at: float = field(default_factory=time.time)

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in


@cache
def _context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:  # a private CA in front of the provider (proxy), in addition to the system's
        context.load_verify_locations(ca_file)
    return context


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _describe(body: dict[str, Any]) -> str:
    code = str(body.get("error") or "unknown_error")[:60]
    text = str(body.get("error_description") or "").strip().splitlines()
    return f"{code}: {text[0][:240]}" if text else code


def post(url: str, form: dict[str, str], timeout: float = TIMEOUT) -> Tokens:
    """POST a token request; the Tokens, or one of the three errors above."""
    data = urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
        "User-Agent": "deskmail"})
    where = _where(url)
    context = _context(settings.ca_file()) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except ssl.SSLCertVerificationError as exc:
        raise ClientRejected(f"the certificate of the token endpoint {where} is not trusted"
                             f" ({exc.verify_message})") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TokenUnavailable(f"the token endpoint {where} cannot be reached ({reason});"
                               " Deskmail tries again later") from None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if status >= 500 or status == 429:
            raise TokenUnavailable(f"the token endpoint {where} answered HTTP {status}; Deskmail tries again later")
        raise TokenUnavailable(f"the token endpoint {where} answered HTTP {status} with something"
                               " that is not JSON; is the token URL right?")
    if status >= 500 or status == 429 or body.get("error") in TEMPORARY_CODES:
        raise TokenUnavailable(f"the token endpoint {where} is temporarily unavailable (HTTP {status},"
                               f" {_describe(body)}); Deskmail tries again later")
    if status != 200 or "error" in body:
        if body.get("error") == "invalid_grant":
            raise GrantRefused(f"the provider refused the sign-in ({_describe(body)}); the mailbox must"
                               " be connected again")
        raise ClientRejected(f"the token endpoint {where} refused the request (HTTP {status},"
                             f" {_describe(body)}); check the OAuth2 settings")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ClientRejected(f"the token endpoint {where} answered without an access token")
    try:
        expires_in = int(body.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600
    refresh = body.get("refresh_token")
    return Tokens(token, max(expires_in, 1), refresh if isinstance(refresh, str) and refresh else None,
                  body.get("scope") if isinstance(body.get("scope"), str) else None)


def _client_auth(client_id: str, client_secret: str | None) -> dict[str, str]:
    # client_secret_post: what Microsoft and Google accept; a public client sends only its id.
    form = {"client_id": client_id}
    if client_secret:
        form["client_secret"] = client_secret
    return form


def refresh(token_url: str, client_id: str, client_secret: str | None, refresh_token: str,
            scopes: str | None = None) -> Tokens:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            **_client_auth(client_id, client_secret)}
    if scopes:
        form["scope"] = scopes
    return post(token_url, form)


def client_credentials(token_url: str, client_id: str, client_secret: str | None,
                       scopes: str | None = None) -> Tokens:
    form = {"grant_type": "client_credentials", **_client_auth(client_id, client_secret)}
    if scopes:
        form["scope"] = scopes
    return post(token_url, form)


def exchange_code(token_url: str, client_id: str, client_secret: str | None, code: str,
                  verifier: str, redirect_uri: str) -> Tokens:
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": redirect_uri, **_client_auth(client_id, client_secret)}
    return post(token_url, form)
