"""The OAuth2 settings of a mailbox or an SMTP setting, for the CLI, the JSON API and the pages alike.

Every front end names them the same way, and `apply` is the one function
that saves them, so a wrong value gets the same message everywhere:

    auth_method           password | oauth2
    oauth_provider        microsoft | google | generic (providers.py presets)
    oauth_flow            authorization_code (Connect) | client_credentials | refresh_token (pasted)
    oauth_tenant, oauth_client_id, oauth_scopes, oauth_token_url, oauth_authorize_url, oauth_mechanism
    oauth_client_secret   write-only; blank or absent keeps the saved one
    oauth_refresh_token   write-only; a refresh token pasted by an administrator

`public` gives the settings back as front ends show them: the client secret
only as set or not, no token ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from shared.crypto import Keys
from shared.oauth2 import grants

FIELDS = {"oauth_provider": "provider", "oauth_flow": "flow", "oauth_tenant": "tenant",
          "oauth_client_id": "client_id", "oauth_token_url": "token_url",
          "oauth_authorize_url": "authorize_url", "oauth_scopes": "scopes", "oauth_mechanism": "mechanism"}
METHOD = "auth_method"
SECRET = "oauth_client_secret"
REFRESH = "oauth_refresh_token"
METHODS = ("password", "oauth2")
NAMES = frozenset({METHOD, SECRET, REFRESH, *FIELDS})

USERNAME_NEEDED = "OAuth2 signs in as a user: set the user name (--username) to the mailbox's address"
NEEDS_OAUTH = "OAuth2 settings need the OAuth2 sign-in (auth_method oauth2, --auth oauth2)"

# The grant's columns as `public` wants them, for a query that joins oauth_grants AS g.
COLUMNS = """
g.provider AS oauth_provider, g.flow AS oauth_flow, g.tenant AS oauth_tenant, g.client_id AS oauth_client_id,
g.token_url AS oauth_token_url, g.authorize_url AS oauth_authorize_url, g.scopes AS oauth_scopes,
g.mechanism AS oauth_mechanism, g.client_secret_enc IS NOT NULL AS oauth_has_client_secret,
g.id IS NOT NULL AND NOT g.needs_reconnect
  AND (g.refresh_token_enc IS NOT NULL OR g.flow = 'client_credentials') AS oauth_connected,
CASE WHEN g.needs_reconnect THEN g.reconnect_reason END AS oauth_reconnect_reason,
g.access_expires_at AS oauth_token_expires_at
"""
SHOWN = ("oauth_provider", "oauth_flow", "oauth_tenant", "oauth_client_id", "oauth_token_url",
         "oauth_authorize_url", "oauth_scopes", "oauth_mechanism", "oauth_has_client_secret",
         "oauth_connected", "oauth_reconnect_reason", "oauth_token_expires_at")


@dataclass
class Given:
    """What a front end sent about OAuth2 (None: not sent, keep what is saved)."""

    method: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # grant settings: provider, flow, ...
    secret: str | None = field(default=None, repr=False)
    refresh: str | None = field(default=None, repr=False)

    @property
    def empty(self) -> bool:
        return self.method is None and not self.values and self.secret is None and self.refresh is None


def split(raw: Mapping[str, Any]) -> tuple[dict[str, Any], Given, dict[str, str]]:
    """(raw without the OAuth2 fields, the OAuth2 fields, their type errors)."""
    rest = {k: v for k, v in raw.items() if k not in NAMES}
    given = Given()
    errors: dict[str, str] = {}
    for name in NAMES & raw.keys():
        value = raw[name]
        if value is not None and not isinstance(value, str):
            errors[name] = f"must be text, not {value!r}"
        elif name == METHOD:
            method = (value or "").strip().lower() or None
            if method is not None and method not in METHODS:
                errors[name] = f"must be one of {', '.join(METHODS)}, not {value!r}"
            given.method = method
        elif name == SECRET:
            given.secret = (value or "").strip() or None  # blank keeps the saved one
        elif name == REFRESH:
            given.refresh = (value or "").strip() or None
        else:
            given.values[FIELDS[name]] = value
    return rest, given, errors


def _owner(conn: psycopg.Connection, table: str, owner_id: int | None) -> dict[str, Any]:
    assert table in ("mailboxes", "smtp_settings")
    if owner_id is None:
        return {}
    row = conn.execute(f"SELECT auth_method, oauth_grant_id, username FROM {table} WHERE id = %s",
                       (owner_id,)).fetchone()
    return row or {}


def check(conn: psycopg.Connection, table: str, owner_id: int | None, given: Given,
          username: Any) -> dict[str, str]:
    """Every problem `apply` would find (field -> message), without writing anything."""
    if given.empty:
        return {}
    owner = _owner(conn, table, owner_id)
    method = given.method or owner.get("auth_method") or "password"
    if method == "password":
        return {METHOD: NEEDS_OAUTH} if given.values or given.refresh else {}
    errors: dict[str, str] = {}
    if not str(username or "").strip():
        errors["username"] = USERNAME_NEEDED
    current = None
    if owner.get("oauth_grant_id") is not None:
        current = conn.execute("SELECT * FROM oauth_grants WHERE id = %s", (owner["oauth_grant_id"],)).fetchone()
    return {**errors, **grants.problems(current, given.values, given.secret)}


def apply(conn: psycopg.Connection, keys: Keys, table: str, owner_id: int, given: Given) -> str | None:
    """Save the OAuth2 settings of a saved mailbox or SMTP setting; a note for the administrator, or None.

    InvalidSetting (the fields as named above) when something is wrong.
    """
    from shared.mailboxes import InvalidSetting

    if given.empty:
        return None
    owner = _owner(conn, table, owner_id)
    errors = check(conn, table, owner_id, given, owner.get("username"))
    if errors:
        raise InvalidSetting(errors)
    method = given.method or owner["auth_method"]
    if method == "password":
        conn.execute(f"UPDATE {table} SET auth_method = 'password' WHERE id = %s", (owner_id,))
        return None
    grant_id = grants.save(conn, keys, owner["oauth_grant_id"], given.values, given.secret)
    conn.execute(f"UPDATE {table} SET auth_method = 'oauth2', oauth_grant_id = %s WHERE id = %s",
                 (grant_id, owner_id))
    if given.refresh:
        grants.store_refresh_token(conn, keys, grant_id, given.refresh)
        return "refresh token stored; the next poll signs in with it"
    state = conn.execute("SELECT flow, needs_reconnect FROM oauth_grants WHERE id = %s", (grant_id,)).fetchone()
    if state["flow"] == "client_credentials":
        return "client credentials: the first poll obtains a token"
    if state["needs_reconnect"]:
        if table == "mailboxes":
            return (f"not connected yet: run 'deskmail mailbox connect {owner_id}'"
                    " (or Connect in the admin web)")
        return "not connected yet: paste a refresh token (--refresh-token-stdin)"
    return None


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """The OAuth2 part of a row selected with COLUMNS: settings as set (None: the preset), no secret."""
    out = {k: row.get(k) for k in SHOWN}
    out["oauth_has_client_secret"] = bool(out["oauth_has_client_secret"])
    out["oauth_connected"] = bool(out["oauth_connected"])
    return out


def same_as_saved(conn: psycopg.Connection, table: str, owner_id: int | None, given: Given) -> bool:
    """Whether `given` changes nothing of the saved OAuth2 settings (so the saved sign-in applies)."""
    owner = _owner(conn, table, owner_id)
    if owner.get("oauth_grant_id") is None or given.secret or given.refresh:
        return False
    if (given.method or owner["auth_method"]) != owner["auth_method"]:
        return False
    current = conn.execute("SELECT * FROM oauth_grants WHERE id = %s", (owner["oauth_grant_id"],)).fetchone()
    return current is not None and grants.merged(current, given.values) == grants.merged(current, {})


def view(conn: psycopg.Connection, table: str, owner_id: int) -> dict[str, Any]:
    """auth_method and the `public` OAuth2 settings of a mailbox or SMTP setting."""
    assert table in ("mailboxes", "smtp_settings")
    row = conn.execute(f"SELECT o.auth_method, {COLUMNS} FROM {table} o"
                       " LEFT JOIN oauth_grants g ON g.id = o.oauth_grant_id WHERE o.id = %s", (owner_id,)).fetchone()
    return {} if row is None else {"auth_method": row["auth_method"], **public(row)}


SMTP_FLOWS = ("refresh_token", "client_credentials")  # no Connect button for SMTP: a pasted token or app-only
