"""A small OAuth2 token server for the tests: Dovecot's oauth2 passdb checks tokens with it.

Run as a daemon by scripts/dovecot-oauth.sh (``python -m tests.support.oauth_server
--port 11089``), so that every test process and the private OAuth2 Dovecot share
one server; tests isolate themselves with their own client ids and user names.

    POST /token        grant_type refresh_token | client_credentials | authorization_code
                       (PKCE S256 checked); client_secret_post or HTTP Basic
    POST /introspect   RFC 7662: {"active": true, "username": ...} or {"active": false}
    GET  /authorize    signs in the login_hint user at once (or the client's user) and
                       redirects to redirect_uri with code and state

Test hooks (JSON bodies, JSON answers):

    POST /admin/clients   {client_id, client_secret?, redirect_uris?, mailbox?, rotate?, access_ttl?}
    POST /admin/grant     {client_id, user} -> {access_token, refresh_token}: a consented grant
    POST /admin/expire    {user}: that user's access tokens expire now
    POST /admin/revoke    {user}: that user's tokens and grants are revoked
    POST /admin/fault     {key: user or client_id, where: token|introspect|authorize, mode: none|drop|500|deny}
    GET  /admin/events?client_id=   what the token endpoint did for that client, in order
    GET  /admin/tokens?client_id=   every token issued to that client (for leak checks)
    GET  /admin/ping

HTTP/1.1 with keep-alive, as Dovecot's HTTP client reuses connections
(oauth2-testing.md, gotcha 7): every answer has a Content-Length and every
request body is read in full, so the second request on a connection works.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class Client:
    client_id: str
    client_secret: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    mailbox: str | None = None  # client_credentials tokens are for this mailbox (M365 app access)
    rotate: bool = False  # every refresh returns a new refresh token and spends the old one
    access_ttl: int = 3600


@dataclass
class Token:
    user: str
    client_id: str
    expires_at: float
    revoked: bool = False


@dataclass
class Grant:
    user: str
    client_id: str
    revoked: bool = False


@dataclass
class Code:
    user: str
    client_id: str
    redirect_uri: str
    challenge: str
    expires_at: float


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: dict[str, Client] = {}
        self.access: dict[str, Token] = {}
        self.refresh: dict[str, Grant] = {}
        self.codes: dict[str, Code] = {}
        self.faults: dict[tuple[str, str], str] = {}  # (key, where) -> mode
        self.events: dict[str, list[dict[str, Any]]] = {}

    def issue(self, client: Client, user: str, with_refresh: bool) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(24)
        self.access[access] = Token(user, client.client_id, time.time() + client.access_ttl)
        out: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": client.access_ttl}
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self.refresh[refresh] = Grant(user, client.client_id)
            out["refresh_token"] = refresh
        return out

    def fault(self, where: str, *keys: str | None) -> str | None:
        for key in keys:
            if key and (mode := self.faults.get((key, where))) not in (None, "none"):
                return mode
        return None


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "deskmail-test-oauth/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass  # the tests read /admin/events; access logs would only hold tokens

    # -- plumbing -----------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self._body().decode()).items()}

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/authorize":
            self._authorize(query)
        elif parts.path == "/admin/events":
            with STATE.lock:
                self._send(200, {"events": STATE.events.get(query.get("client_id", ""), [])})
        elif parts.path == "/admin/tokens":
            client_id = query.get("client_id", "")
            with STATE.lock:
                tokens = [t for t, v in STATE.access.items() if v.client_id == client_id]
                tokens += [t for t, v in STATE.refresh.items() if v.client_id == client_id]
            self._send(200, {"tokens": tokens})
        elif parts.path == "/admin/ping":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/token":
            self._token(self._form())
        elif path == "/introspect":
            self._introspect(self._form())
        elif path.startswith("/admin/"):
            try:
                body = json.loads(self._body() or b"{}")
            except ValueError:
                self._send(400, {"error": "not json"})
                return
            self._admin(path[len("/admin/"):], body)
        else:
            self._body()
            self._send(404, {"error": "not_found"})

    # -- the OAuth2 endpoints -------------------------------------------------

    def _client(self, form: dict[str, str]) -> Client | None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        client = STATE.clients.get(client_id or "")
        if client is None or (client.client_secret is not None and secret != client.client_secret):
            return None
        return client

    def _token(self, form: dict[str, str]) -> None:
        with STATE.lock:
            client = self._client(form)
            grant_type = form.get("grant_type", "")
            if client is None:
                self._send(401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"})
                return
            events = STATE.events.setdefault(client.client_id, [])
            mode = STATE.fault("token", client.client_id)
            events.append({"grant_type": grant_type, "at": time.time(), "fault": mode})
            if mode == "drop":
                self._drop()
                return
            if mode == "500":
                self._send(503, {"error": "temporarily_unavailable", "error_description": "maintenance"})
                return
            if grant_type == "client_credentials":
                if not client.mailbox:
                    self._send(400, {"error": "unauthorized_client"})
                    return
                self._send(200, STATE.issue(client, client.mailbox, with_refresh=False))
            elif grant_type == "refresh_token":
                grant = STATE.refresh.get(form.get("refresh_token", ""))
                if grant is None or grant.revoked or grant.client_id != client.client_id:
                    events[-1]["refused"] = True
                    self._send(400, {"error": "invalid_grant", "error_description": "refresh token expired or revoked"})
                    return
                answer = STATE.issue(client, grant.user, with_refresh=client.rotate)
                if client.rotate:
                    grant.revoked = True  # spent: only the new one works from now on
                events[-1]["rotated"] = client.rotate
                self._send(200, answer)
            elif grant_type == "authorization_code":
                code = STATE.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if (code is None or code.client_id != client.client_id or code.expires_at < time.time()
                        or code.redirect_uri != form.get("redirect_uri") or code.challenge != digest):
                    self._send(400, {"error": "invalid_grant", "error_description": "bad code, redirect_uri or verifier"})
                    return
                self._send(200, STATE.issue(client, code.user, with_refresh=True))
            else:
                self._send(400, {"error": "unsupported_grant_type"})

    def _introspect(self, form: dict[str, str]) -> None:
        with STATE.lock:
            token = STATE.access.get(form.get("token", ""))
            mode = STATE.fault("introspect", token.user if token else None, token.client_id if token else None)
            if mode == "drop":
                self._drop()
                return
            if mode == "500":
                self._send(500, {"error": "server_error"})
                return
            if token is None or token.revoked or token.expires_at < time.time():
                self._send(200, {"active": False})
                return
            self._send(200, {"active": True, "username": token.user, "client_id": token.client_id,
                             "exp": int(token.expires_at), "scope": "mail"})

    def _authorize(self, query: dict[str, str]) -> None:
        with STATE.lock:
            client = STATE.clients.get(query.get("client_id", ""))
            redirect_uri = query.get("redirect_uri", "")
            if client is None or (client.redirect_uris and redirect_uri not in client.redirect_uris):
                self._send(400, {"error": "invalid_request", "error_description": "unknown client or redirect_uri"})
                return
            state = query.get("state", "")
            user = query.get("login_hint") or client.mailbox or ""
            if STATE.fault("authorize", client.client_id, user) == "deny":
                params = {"error": "access_denied", "error_description": "the user declined", "state": state}
            elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                params = {"error": "invalid_request", "error_description": "PKCE S256 required", "state": state}
            else:
                code = "code-" + secrets.token_urlsafe(16)
                STATE.codes[code] = Code(user, client.client_id, redirect_uri, query["code_challenge"], time.time() + 300)
                params = {"code": code, "state": state}
            STATE.events.setdefault(client.client_id, []).append(
                {"authorize": True, "scope": query.get("scope"), "user": user, "at": time.time()})
        sep = "&" if urlsplit(redirect_uri).query else "?"
        self._send(302, {}, {"Location": redirect_uri + sep + urlencode(params)})

    # -- test hooks -------------------------------------------------------------

    def _admin(self, action: str, body: dict[str, Any]) -> None:
        with STATE.lock:
            if action == "clients":
                client = Client(**{k: v for k, v in body.items() if k in Client.__dataclass_fields__})
                STATE.clients[client.client_id] = client
                self._send(200, {"ok": True})
            elif action == "grant":
                client = STATE.clients[body["client_id"]]
                self._send(200, STATE.issue(client, body["user"], with_refresh=True))
            elif action in ("expire", "revoke"):
                user = body["user"]
                for token in STATE.access.values():
                    if token.user == user:
                        if action == "expire":
                            token.expires_at = min(token.expires_at, time.time() - 1)
                        else:
                            token.revoked = True
                if action == "revoke":
                    for grant in STATE.refresh.values():
                        if grant.user == user:
                            grant.revoked = True
                self._send(200, {"ok": True})
            elif action == "fault":
                STATE.faults[(body["key"], body["where"])] = body.get("mode", "none")
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": "no such hook"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11089)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
