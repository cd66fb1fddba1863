"""OAuth2 grants in the database, and TokenSource: a valid access token when a login needs one.

One `oauth_grants` row per mailbox or SMTP setting that signs in with OAuth2
(mailboxes.oauth_grant_id, smtp_settings.oauth_grant_id). It holds the
provider settings and, encrypted, the client secret and the tokens.

Token life cycle
----------------
    token()            the stored access token while it is valid for more than
                       MARGIN seconds; else refresh
    renew(rejected)    after the mail server refused `rejected`: refresh once
    refresh            under the row's lock (SELECT ... FOR UPDATE), so two
                       fetchers or a fetcher and a replier never spend the same
                       refresh token twice; whoever comes second finds the new
                       access token and uses it. The new access token, its
                       expiry and a rotated refresh token are written in ONE
                       UPDATE and committed before the token is used: a process
                       killed right after a refresh loses nothing.
    invalid_grant      the grant is marked needs_reconnect (and its dead tokens
                       dropped) in the same way; nothing is retried until an
                       administrator connects the mailbox again.
    unreachable        nothing is written: the next poll tries again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.crypto import Keys
from shared.oauth2 import client as token_client
from shared.oauth2.client import GrantRefused, OAuthError, Tokens
from shared.oauth2.providers import endpoints, validate

log = logging.getLogger(__name__)

MARGIN = 120  # seconds: an access token closer than this to its expiry is refreshed first

SETTINGS = ("provider", "flow", "tenant", "authorize_url", "token_url", "scopes", "client_id", "mechanism")


class NeedsReconnect(OAuthError):
    """The grant has no usable refresh token: an administrator must sign in again."""

    needs_reconnect = True


def reconnect_hint(owner: str) -> str:
    return f"connect it again: Connect in the admin web, or deskmail {owner}"


@dataclass(frozen=True)
class Grant:
    """A grant's settings with the client secret decrypted (tokens stay in the row)."""

    id: int
    provider: str
    flow: str
    client_id: str
    client_secret: str | None
    token_url: str
    authorize_url: str | None
    scopes: str
    mechanism: str
    tenant: str | None
    extra_authorize_params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_row(cls, row: dict[str, Any], keys: Keys) -> Grant:
        ends = endpoints(row)
        return cls(id=row["id"], provider=row["provider"], flow=row["flow"], client_id=row["client_id"],
                   client_secret=keys.decrypt(row["client_secret_enc"]), token_url=ends.token_url,
                   authorize_url=ends.authorize_url, scopes=ends.scopes, mechanism=row["mechanism"],
                   tenant=row["tenant"], extra_authorize_params=ends.extra_authorize_params)


# ---- settings ------------------------------------------------------------------

def save(conn: psycopg.Connection, keys: Keys, grant_id: int | None, values: dict[str, Any],
         client_secret: str | None = None) -> int:
    """Create (grant_id None) or change a grant's settings; its id. InvalidSetting on bad values.

    Changing the provider, tenant, endpoints, client or flow invalidates the
    tokens of the old settings: they are dropped and the grant must be connected again.
    """
    from shared.mailboxes import InvalidSetting

    current = None
    if grant_id is not None:
        current = conn.execute("SELECT * FROM oauth_grants WHERE id = %s", (grant_id,)).fetchone()
    full = merged(current, values)
    errors = problems(current, values, client_secret)
    if errors:
        raise InvalidSetting(errors)
    cols = list(SETTINGS)
    if current is None:
        row = conn.execute(
            f"INSERT INTO oauth_grants ({', '.join(cols)}, client_secret_enc, needs_reconnect, reconnect_reason)"
            f" VALUES ({', '.join(['%s'] * len(cols))}, %s, %s, %s) RETURNING id",
            [full[c] for c in cols] + [keys.encrypt(client_secret), full["flow"] != "client_credentials",
                                       None if full["flow"] == "client_credentials" else "not connected yet"],
        ).fetchone()
        assert row is not None
        return int(row["id"])
    changed = any(full[k] != current[k] for k in SETTINGS if k not in ("mechanism", "scopes"))
    sets = [f"{c} = %s" for c in cols] + ["updated_at = now()"]
    params: list[Any] = [full[c] for c in cols]
    if client_secret is not None:
        sets.append("client_secret_enc = %s")
        params.append(keys.encrypt(client_secret))
    if changed:
        needs = full["flow"] != "client_credentials"
        sets += ["access_token_enc = NULL", "access_expires_at = NULL", "refresh_token_enc = NULL",
                 "needs_reconnect = %s", "reconnect_reason = %s"]
        params += [needs, "the OAuth2 settings changed" if needs else None]
    conn.execute(f"UPDATE oauth_grants SET {', '.join(sets)} WHERE id = %s", [*params, grant_id])
    return grant_id  # type: ignore[return-value]


def merged(current: dict[str, Any] | None, values: dict[str, Any]) -> dict[str, Any]:
    """The settings a grant would have with `values` applied over `current` (None: a new grant)."""
    full: dict[str, Any] = {**dict.fromkeys(SETTINGS), "flow": "authorization_code", "mechanism": "auto"}
    if current is not None:
        full.update({k: current[k] for k in SETTINGS})
    full.update({k: v for k, v in values.items() if k in SETTINGS})
    return {k: (v.strip() or None) if isinstance(v, str) else v for k, v in full.items()}


def problems(current: dict[str, Any] | None, values: dict[str, Any], client_secret: str | None) -> dict[str, str]:
    """What `save` would refuse, as oauth_<setting> -> message, without writing anything."""
    errors = validate({**merged(current, values), "client_secret": client_secret,
                       "has_client_secret": bool(current and current["client_secret_enc"])})
    return {f"oauth_{k}": v for k, v in errors.items()}


def store_tokens(conn: psycopg.Connection, keys: Keys, grant_id: int, tokens: Tokens) -> None:
    """Access token, expiry and (if the provider sent one) the new refresh token: one UPDATE."""
    conn.execute(
        "UPDATE oauth_grants SET access_token_enc = %s,"
        " access_expires_at = to_timestamp(%s),"
        " refresh_token_enc = coalesce(%s, refresh_token_enc),"
        " tokens_updated_at = now(), needs_reconnect = false, reconnect_reason = NULL,"
        " auth_state = NULL, auth_verifier_enc = NULL, auth_redirect_uri = NULL, auth_started_at = NULL"
        " WHERE id = %s",
        (keys.encrypt(tokens.access_token), tokens.expires_at, keys.encrypt(tokens.refresh_token), grant_id))


def store_refresh_token(conn: psycopg.Connection, keys: Keys, grant_id: int, refresh_token: str) -> None:
    """A refresh token pasted by an administrator: the next login refreshes with it."""
    conn.execute(
        "UPDATE oauth_grants SET refresh_token_enc = %s, access_token_enc = NULL, access_expires_at = NULL,"
        " tokens_updated_at = now(), needs_reconnect = false, reconnect_reason = NULL WHERE id = %s",
        (keys.encrypt(refresh_token), grant_id))


def mark_reconnect(conn: psycopg.Connection, grant_id: int, reason: str) -> None:
    conn.execute(
        "UPDATE oauth_grants SET needs_reconnect = true, reconnect_reason = %s, access_token_enc = NULL,"
        " access_expires_at = NULL, refresh_token_enc = NULL, tokens_updated_at = now() WHERE id = %s",
        (reason[:500], grant_id))


def describe(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A grant as an administrator may see it: settings and state, never a secret or a token."""
    if row is None:
        return None
    ends = endpoints(row)
    return {
        "provider": row["provider"], "flow": row["flow"], "tenant": row["tenant"],
        "client_id": row["client_id"], "token_url": ends.token_url, "authorize_url": ends.authorize_url,
        "scopes": ends.scopes, "mechanism": row["mechanism"],
        "client_secret": "(set, not shown)" if row["client_secret_enc"] is not None else "(none)",
        "connected": not row["needs_reconnect"] and (row["refresh_token_enc"] is not None
                                                     or row["flow"] == "client_credentials"),
        "access_token_expires_at": row["access_expires_at"],
        "needs_reconnect": row["needs_reconnect"], "reconnect_reason": row["reconnect_reason"],
        "tokens_updated_at": row["tokens_updated_at"],
    }


def for_owner(conn: psycopg.Connection, table: str, owner_id: int) -> dict[str, Any] | None:
    """The grant row of a mailbox ('mailboxes') or SMTP setting ('smtp_settings'), if any."""
    assert table in ("mailboxes", "smtp_settings")
    return conn.execute(
        f"SELECT g.* FROM oauth_grants g JOIN {table} o ON o.oauth_grant_id = g.id WHERE o.id = %s",
        (owner_id,)).fetchone()


# ---- tokens when a login needs them -----------------------------------------------

def obtain(grant: Grant, refresh_token: str | None) -> Tokens:
    """New tokens by the grant's flow: client credentials, or the stored refresh token."""
    if grant.flow == "client_credentials":
        return token_client.client_credentials(grant.token_url, grant.client_id, grant.client_secret, grant.scopes)
    if not refresh_token:
        raise NeedsReconnect("no refresh token is stored (not connected yet, or the sign-in was revoked)")
    return token_client.refresh(grant.token_url, grant.client_id, grant.client_secret, refresh_token,
                                grant.scopes or None)


Step = tuple[str, bool, str]


class TokenSource:
    """Access tokens of one grant for one login name; records its steps for `mailbox test`."""

    def __init__(self, pool: Any, keys: Keys, grant_id: int, login: str, owner: str = "mailbox connect ID",
                 obtain_tokens: Callable[[Grant, str | None], Tokens] = obtain) -> None:
        self.pool = pool
        self.keys = keys
        self.grant_id = grant_id
        self.login = login
        self.owner = owner
        self._obtain = obtain_tokens
        self.steps: list[Step] = []
        self._mechanism: str | None = None

    @property
    def mechanism(self) -> str:
        if self._mechanism is None:
            with self.pool.connection() as conn:
                row = conn.execute("SELECT mechanism FROM oauth_grants WHERE id = %s", (self.grant_id,)).fetchone()
            self._mechanism = row["mechanism"] if row else "auto"
        return self._mechanism

    def token(self) -> str:
        """A valid access token: the stored one, or a refreshed one."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM oauth_grants WHERE id = %s", (self.grant_id,)).fetchone()
            conn.rollback()
        if row is None:
            raise NeedsReconnect("the mailbox's OAuth2 settings are missing")
        self._mechanism = row["mechanism"]
        current = self._valid(row)
        if current is not None:
            left = (row["access_expires_at"] - _now()).total_seconds()
            self.steps.append(("token", True, f"stored access token valid for {_minutes(left)}"))
            return current
        return self._refresh(rejected=None)

    def renew(self, rejected: str) -> str:
        """A new access token after the server refused `rejected` (unless another process renewed it)."""
        return self._refresh(rejected=rejected)

    def _valid(self, row: dict[str, Any], rejected: str | None = None) -> str | None:
        if row["needs_reconnect"] or row["access_token_enc"] is None or row["access_expires_at"] is None:
            return None
        if (row["access_expires_at"] - _now()).total_seconds() <= MARGIN:
            return None
        token = self.keys.decrypt(row["access_token_enc"])
        return None if token == rejected else token

    def _refresh(self, rejected: str | None) -> str:
        failure: OAuthError | None = None
        token: str | None = None
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT * FROM oauth_grants WHERE id = %s FOR UPDATE", (self.grant_id,)).fetchone()
            if row is None:
                raise NeedsReconnect("the mailbox's OAuth2 settings are missing")
            if row["needs_reconnect"]:
                raise NeedsReconnect(f"needs reconnect: {row['reconnect_reason'] or 'not connected'};"
                                     f" {reconnect_hint(self.owner)}")
            token = self._valid(row, rejected)
            if token is not None:  # another process refreshed while we waited for the lock
                self.steps.append(("token", True, "access token renewed by another process meanwhile"))
                return token
            grant = Grant.from_row(row, self.keys)
            what = "obtained (client credentials)" if grant.flow == "client_credentials" else "refreshed"
            try:
                tokens = self._obtain(grant, self.keys.decrypt(row["refresh_token_enc"]))
            except GrantRefused as exc:
                mark_reconnect(conn, self.grant_id, str(exc))
                failure = NeedsReconnect(f"needs reconnect: {exc}; {reconnect_hint(self.owner)}")
            except NeedsReconnect as exc:
                mark_reconnect(conn, self.grant_id, str(exc))
                failure = NeedsReconnect(f"needs reconnect: {exc}; {reconnect_hint(self.owner)}")
            except OAuthError as exc:
                self.steps.append(("token_endpoint", False, str(exc)))
                raise
            else:
                store_tokens(conn, self.keys, self.grant_id, tokens)
                token = tokens.access_token
        # Committed: from here on the new tokens survive any crash.
        if failure is not None:
            self.steps.append(("token", False, str(failure)))
            log.warning("OAuth2 sign-in needs to be connected again", extra={"grant_id": self.grant_id,
                                                                             "error": str(failure)})
            raise failure
        assert token is not None
        self.steps.append(("token_endpoint", True, f"token endpoint {token_client._where(grant.token_url)} reached"))
        self.steps.append(("token", True, f"access token {what}, valid for {_minutes(tokens.expires_in)}"
                           + ("; new refresh token stored" if tokens.refresh_token else "")))
        log.info("OAuth2 access token renewed", extra={"grant_id": self.grant_id, "flow": grant.flow,
                                                       "rotated": tokens.refresh_token is not None})
        return token


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _minutes(seconds: float) -> str:
    return f"{max(int(seconds) // 60, 0)} min"
