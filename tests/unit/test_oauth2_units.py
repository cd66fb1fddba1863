"""OAuth2 pieces without servers: SASL strings, PKCE, presets and validation, token-endpoint answers."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from shared.oauth2 import client, pkce, providers, sasl


def test_sasl_strings_are_what_servers_expect():
    assert sasl.xoauth2("a@x.com", "T") == "user=a@x.com\x01auth=Bearer T\x01\x01"
    assert sasl.oauthbearer("a,b=c@x", "T", "imap.x", 993) == (
        "n,a=a=2Cb=3Dc@x,\x01host=imap.x\x01port=993\x01auth=Bearer T\x01\x01")
    assert "\n" not in sasl.b64("x" * 3000), "one line, standard base64"
    assert sasl.failure_detail(base64.b64encode(b'{"status":"401"}')) == '{"status":"401"}'


@pytest.mark.parametrize("offered,preference,chosen", [
    ({"XOAUTH2", "OAUTHBEARER"}, "auto", "XOAUTH2"),
    ({"OAUTHBEARER"}, "auto", "OAUTHBEARER"),
    (set(), "auto", "XOAUTH2"),
    ({"XOAUTH2"}, "oauthbearer", "OAUTHBEARER"),
])
def test_mechanism_choice(offered, preference, chosen):
    assert sasl.choose(offered, preference) == chosen


def test_pkce_matches_rfc_7636_appendix_b():
    assert pkce.challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    verifier = pkce.verifier()
    assert 43 <= len(verifier) <= 128 and pkce.state() != pkce.state()


def test_presets_fill_in_endpoints_and_scopes():
    ms = providers.endpoints({"provider": "microsoft", "tenant": "contoso.com"})
    assert ms.token_url == "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    assert "offline_access" in ms.scopes and "IMAP.AccessAsUser.All" in ms.scopes
    app_only = providers.endpoints({"provider": "microsoft", "tenant": "contoso.com", "flow": "client_credentials"})
    assert app_only.scopes == "https://outlook.office365.com/.default"
    google = providers.endpoints({"provider": "google"})
    assert google.scopes == "https://mail.google.com/" and ("access_type", "offline") in google.extra_authorize_params


def test_validation_words_each_problem():
    errors = providers.validate({"provider": "generic", "flow": "authorization_code", "client_id": " ",
                                 "token_url": "http://tokens.example.com/t"})
    assert set(errors) == {"client_id", "token_url", "authorize_url"}
    errors = providers.validate({"provider": "microsoft", "flow": "client_credentials", "client_id": "x",
                                 "tenant": "common", "client_secret": "s"})
    assert set(errors) == {"tenant"}
    assert "flow" in providers.validate({"provider": "google", "flow": "client_credentials", "client_id": "x",
                                         "client_secret": "s"})
    assert providers.validate({"provider": "generic", "client_id": "x", "token_url": "http://127.0.0.1:9/t",
                               "authorize_url": "https://idp.example.com/a"}) == {}


class _Answer(BaseHTTPRequestHandler):
    reply: tuple[int, bytes] = (200, b"{}")

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = type(self).reply
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    httpd = HTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/token"
    httpd.shutdown()


@pytest.mark.parametrize("status,body,error", [
    (400, {"error": "invalid_grant", "error_description": "AADSTS70000: revoked"}, client.GrantRefused),
    (401, {"error": "invalid_client"}, client.ClientRejected),
    (503, {"error": "temporarily_unavailable"}, client.TokenUnavailable),
    (429, {}, client.TokenUnavailable),
    (502, None, client.TokenUnavailable),
    (200, {"token_type": "Bearer"}, client.ClientRejected),
])
def test_token_endpoint_answers_are_classified(endpoint, status, body, error):
    _Answer.reply = (status, b"<html>" if body is None else json.dumps(body).encode())
    with pytest.raises(error) as raised:
        client.refresh(endpoint, "id", "secret", "rt-SECRET")
    assert "rt-SECRET" not in str(raised.value) and "secret" not in str(raised.value).replace("secret'", "")


def test_token_endpoint_success_and_unreachable(endpoint):
    _Answer.reply = (200, json.dumps({"access_token": "AT", "expires_in": "3599", "refresh_token": "RT2"}).encode())
    tokens = client.refresh(endpoint, "id", None, "RT1")
    assert (tokens.access_token, tokens.expires_in, tokens.refresh_token) == ("AT", 3599, "RT2")
    assert "AT" not in repr(tokens)
    with pytest.raises(client.TokenUnavailable, match="cannot be reached"):
        client.client_credentials("http://127.0.0.1:9/token", "id", "s")
