"""The authorization-code flow with PKCE: a person signs in at the provider for a mailbox.

    start(grant, redirect_uri)   a fresh state and PKCE verifier are stored on the
                                 grant (the verifier encrypted); the provider's
                                 authorization URL to send the administrator to
    finish(state, code)          the provider sent the administrator back: the
                                 code is exchanged (with the verifier) and the
                                 tokens stored, in one transaction; the state is
                                 spent, so a replayed callback does nothing

The admin web's Connect button and `deskmail mailbox connect` both use these.
A pending authorization expires after PENDING_FOR.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg

from shared.crypto import Keys
from shared.db import transaction
from shared.oauth2 import client as token_client
from shared.oauth2 import pkce
from shared.oauth2.client import OAuthError
from shared.oauth2.grants import Grant, store_tokens

PENDING_FOR = dt.timedelta(minutes=30)


class AuthorizationError(Exception):
    """The flow cannot go on; the message says why, for the administrator."""


def start(conn: psycopg.Connection, keys: Keys, grant_id: int, redirect_uri: str,
          login_hint: str | None = None) -> str:
    row = conn.execute("SELECT * FROM oauth_grants WHERE id = %s", (grant_id,)).fetchone()
    if row is None:
        raise AuthorizationError("this mailbox has no OAuth2 settings; set --auth oauth2 first")
    grant = Grant.from_row(row, keys)
    if grant.flow == "client_credentials":
        raise AuthorizationError("this mailbox uses client credentials: there is nobody to sign in;"
                                 " the first poll obtains a token by itself")
    if not grant.authorize_url:
        raise AuthorizationError("no authorization URL is set for this provider (--oauth-authorize-url)")
    verifier, state = pkce.verifier(), pkce.state()
    conn.execute(
        "UPDATE oauth_grants SET auth_state = %s, auth_verifier_enc = %s, auth_redirect_uri = %s,"
        " auth_started_at = now() WHERE id = %s",
        (state, keys.encrypt(verifier), redirect_uri, grant_id))
    params = [("response_type", "code"), ("client_id", grant.client_id), ("redirect_uri", redirect_uri),
              ("scope", grant.scopes), ("state", state), ("code_challenge", pkce.challenge(verifier)),
              ("code_challenge_method", "S256"), *grant.extra_authorize_params]
    if login_hint:
        params.append(("login_hint", login_hint))
    separator = "&" if urlsplit(grant.authorize_url).query else "?"
    return grant.authorize_url + separator + urlencode(params)


def finish(pool: Any, keys: Keys, state: str | None, code: str | None, error: str | None = None,
           error_description: str | None = None) -> int:
    """Complete the flow from the callback's parameters; the grant's id."""
    if not state:
        raise AuthorizationError("the provider's answer has no state; start again with Connect")
    outcome: AuthorizationError | None = None
    with transaction(pool) as conn:
        row = conn.execute("SELECT * FROM oauth_grants WHERE auth_state = %s FOR UPDATE", (state,)).fetchone()
        if row is None:
            raise AuthorizationError("this sign-in is unknown or was completed already; start again with Connect")
        grant_id = int(row["id"])
        started = row["auth_started_at"]
        if error or not code:
            outcome = AuthorizationError(f"the provider did not grant access ({(error or 'no code')[:60]}"
                                         f"{': ' + error_description[:200] if error_description else ''})")
        elif started is None or dt.datetime.now(dt.UTC) - started > PENDING_FOR:
            outcome = AuthorizationError("this sign-in took too long; start again with Connect")
        else:
            grant = Grant.from_row(row, keys)
            verifier = keys.decrypt(row["auth_verifier_enc"]) or ""
            try:
                tokens = token_client.exchange_code(grant.token_url, grant.client_id, grant.client_secret,
                                                    code, verifier, row["auth_redirect_uri"])
            except OAuthError as exc:
                outcome = AuthorizationError(f"exchanging the provider's code failed: {exc}")
            else:
                if not tokens.refresh_token:
                    outcome = AuthorizationError(
                        "the provider sent no refresh token, so Deskmail could not sign in again later;"
                        " check the scopes (Microsoft: offline_access) and try again")
                else:
                    store_tokens(conn, keys, grant_id, tokens)  # also spends the state
                    return grant_id
        # A failed or replayed callback spends the state too.
        conn.execute("UPDATE oauth_grants SET auth_state = NULL, auth_verifier_enc = NULL,"
                     " auth_started_at = NULL WHERE id = %s", (grant_id,))
    assert outcome is not None
    raise outcome


def parse_redirect(url: str) -> dict[str, str]:
    """code, state, error, error_description from the address the provider sent the browser to."""
    query = parse_qs(urlsplit(url.strip()).query)
    return {k: v[0] for k, v in query.items() if k in ("code", "state", "error", "error_description") and v}
