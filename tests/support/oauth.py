"""The OAuth2 test servers: the token server, the oauth2-passdb Dovecot, an SMTP server taking XOAUTH2.

scripts/dovecot-oauth.sh runs the token server (tests/support/oauth_server.py)
and a Dovecot whose passdb asks it about every token. `TokenServer` drives the
token server's test hooks; `OAuthSmtp` is the SMTP sink (tests/support/smtp.py)
with AUTH XOAUTH2 and OAUTHBEARER handlers that check tokens with the same
token server, so expiry and revocation behave as they do on the IMAP side.
Mail lives in the password instance's Maildirs, so tests/support/dovecot.py
seeds and inspects it.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.support import dovecot
from tests.support.smtp import SmtpSink, _Controller, _Handler

HOST = "127.0.0.1"
IMAP_PORT = 11143
IMAPS_PORT = 11993
POP3_PORT = 11110
POP3S_PORT = 11995
TOKEN_PORT = 11089
BASE_URL = f"http://{HOST}:{TOKEN_PORT}"
STATE_DIR = Path("/tmp/deskmail-dovecot-oauth")
LOG_FILE = STATE_DIR / "dovecot.log"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dovecot-oauth.sh"
PORTS = {("imap", "none"): IMAP_PORT, ("imap", "tls"): IMAPS_PORT,
         ("pop3", "none"): POP3_PORT, ("pop3", "tls"): POP3S_PORT}


@cache
def ensure_started() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=300,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{SCRIPT} start failed:\n{result.stdout}{result.stderr}")


def _call(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE_URL + path, data=data, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@dataclass
class TokenServer:
    """One test's client at the shared token server; its hooks."""

    client_id: str
    client_secret: str
    token_url: str = f"{BASE_URL}/token"
    authorize_url: str = f"{BASE_URL}/authorize"

    @classmethod
    def new_client(cls, **options: Any) -> TokenServer:
        ensure_started()
        server = cls(f"client-{uuid.uuid4().hex[:10]}", f"secret-{uuid.uuid4().hex}")
        _call("/admin/clients", {"client_id": server.client_id, "client_secret": server.client_secret, **options})
        return server

    def grant(self, user: str) -> dict[str, Any]:
        """A consented grant for `user`: access_token and refresh_token."""
        return _call("/admin/grant", {"client_id": self.client_id, "user": user})

    def expire(self, user: str) -> None:
        _call("/admin/expire", {"user": user})

    def revoke(self, user: str) -> None:
        _call("/admin/revoke", {"user": user})

    def fault(self, key: str, where: str, mode: str) -> None:
        _call("/admin/fault", {"key": key, "where": where, "mode": mode})

    def events(self) -> list[dict[str, Any]]:
        return list(_call(f"/admin/events?client_id={self.client_id}")["events"])

    def issued(self) -> set[str]:
        """Every access and refresh token the server gave this client."""
        return set(_call(f"/admin/tokens?client_id={self.client_id}")["tokens"])

    def grant_types(self) -> list[str]:
        return [e["grant_type"] for e in self.events() if "grant_type" in e]


def introspect(token: str) -> dict[str, Any] | None:
    """The token server's RFC 7662 answer; None if it cannot be reached (a temporary failure)."""
    request = urllib.request.Request(f"{BASE_URL}/introspect", data=f"token={token}".encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.loads(response.read()))
    except (OSError, ValueError):
        return None


def _parse(mechanism: str, blob: bytes) -> tuple[str, str]:
    """(user, token) from an XOAUTH2 or OAUTHBEARER initial response."""
    text = base64.b64decode(blob).decode()
    fields = text.split("\x01")
    user = ""
    if mechanism == "OAUTHBEARER":
        header = fields[0]  # n,a=user,
        for part in header.split(","):
            if part.startswith("a="):
                user = part[2:].replace("=2C", ",").replace("=3D", "=")
    token = ""
    for item in fields[1:] if mechanism == "OAUTHBEARER" else fields:
        if item.startswith("user="):
            user = item[5:]
        elif item.startswith("auth=Bearer "):
            token = item[len("auth=Bearer "):]
    return user, token


class _OAuthHandler(_Handler):
    async def _oauth(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        blob = args[1].encode() if len(args) > 1 else await server.challenge_auth("")
        if not isinstance(blob, bytes):
            return AuthResult(success=False, handled=False, message="501 5.7.0 Auth aborted")
        user, token = _parse(mechanism, blob)
        answer = introspect(token)
        if answer is None:
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
        if answer.get("active") and str(answer.get("username", "")).lower() == user.lower():
            self._sink.logins.append((mechanism, user))
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        # Like Gmail and Dovecot: a JSON error challenge first, the 535 after the client's empty answer.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._oauth(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._oauth(server, args, "OAUTHBEARER")


class OAuthSmtp(SmtpSink):
    """An SMTP sink that demands AUTH XOAUTH2 or OAUTHBEARER, checked with the token server."""

    def __init__(self, tls: str = "none") -> None:
        super().__init__(tls=tls)  # type: ignore[arg-type]
        self.logins: list[tuple[str, str]] = []

    def _make_controller(self) -> _Controller:
        kwargs: dict[str, Any] = {}
        if self.tls != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            pair = self._cert_pair()
            context.load_cert_chain(pair.cert, pair.key)
            kwargs["ssl_context" if self.tls == "ssl" else "tls_context"] = context
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _Controller(_OAuthHandler(self), hostname=self.host, port=self.port,
                               server_hostname="localhost", ready_timeout=5.0, auth_required=True,
                               auth_require_tls=False, auth_exclude_mechanism=["LOGIN", "PLAIN"], **kwargs)


CA_FILE = dovecot.CA_FILE
