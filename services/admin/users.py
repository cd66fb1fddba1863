"""Administrators of the admin web and API: users, sessions, API tokens, throttling.

Passwords are hashed with Argon2id (argon2-cffi). A browser session is a
random id in a cookie; the database keeps only its SHA-256, with the
session's CSRF synchroniser token. API clients present a bearer token,
also stored as a SHA-256 only. Failed logins are counted per user name and
per client address; past `MAX_FAILURES` within `FAILURE_WINDOW` seconds
further attempts are refused without checking the password, so guessing is
slow whatever the password.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.admin.errors import Conflict
from shared.mailboxes import InvalidSetting

SESSION_SECONDS = 12 * 3600
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
MIN_PASSWORD = 10

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user name is unknown, so an unknown name costs
    the same time as a wrong password and does not reveal which names exist.

    Made on first use, not at import: Argon2id touches 64 MB, and every stage
    process imports this module (through the CLI) without ever logging anyone in.
    """
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    id: int
    username: str


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str


class Throttled(Exception):
    """Too many failed logins; `retry_after` seconds until the next attempt is allowed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} seconds")
        self.retry_after = retry_after


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create_user(conn: psycopg.Connection, username: str, password: str) -> int:
    errors = {}
    if not username.strip():
        errors["username"] = "must not be empty"
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"must be at least {MIN_PASSWORD} characters long"
    if errors:
        raise InvalidSetting(errors)
    if conn.execute("SELECT 1 FROM users WHERE lower(username) = lower(%s)", (username,)).fetchone():
        raise Conflict(f"a user named {username!r} already exists")
    row = conn.execute(
        "INSERT INTO users (username, password_hash) VALUES (%s, %s) RETURNING id",
        (username.strip(), _hasher.hash(password)),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def _throttle_wait(conn: psycopg.Connection, username: str, client: str) -> int:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE lower(username) = lower(%(u)s)) AS by_user,"
        " count(*) FILTER (WHERE client = %(c)s) AS by_client,"
        " min(failed_at) AS oldest"
        " FROM login_failures WHERE failed_at > now() - make_interval(secs => %(w)s)"
        " AND (lower(username) = lower(%(u)s) OR client = %(c)s)",
        {"u": username, "c": client, "w": FAILURE_WINDOW},
    ).fetchone()
    assert row is not None
    if max(row["by_user"], row["by_client"]) < MAX_FAILURES:
        return 0
    waited = conn.execute("SELECT extract(epoch FROM now() - %s)::int AS s", (row["oldest"],)).fetchone()
    return max(1, FAILURE_WINDOW - int(waited["s"] if waited else 0))


def login(conn: psycopg.Connection, username: str, password: str, client: str) -> tuple[str, Session] | None:
    """A new session (cookie value, session) for the right password; None for a wrong one.

    Raises Throttled after too many recent failures for this name or client.
    """
    wait = _throttle_wait(conn, username, client)
    if wait:
        raise Throttled(wait)
    row = conn.execute(
        "SELECT id, username, password_hash FROM users WHERE lower(username) = lower(%s)"
        " AND disabled_at IS NULL", (username,)
    ).fetchone()
    try:
        _hasher.verify(row["password_hash"] if row else _dummy_hash(), password)
        ok = row is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or row is None:
        conn.execute("INSERT INTO login_failures (username, client) VALUES (%s, %s)", (username, client))
        conn.execute("DELETE FROM login_failures WHERE failed_at < now() - make_interval(secs => %s)",
                     (FAILURE_WINDOW,))
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (_hasher.hash(password), row["id"]))
    conn.execute("DELETE FROM login_failures WHERE lower(username) = lower(%s)", (username,))
    conn.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (row["id"],))
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO web_sessions (id_hash, user_id, csrf_token, expires_at)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
        (_digest(session_id), row["id"], csrf, SESSION_SECONDS),
    )
    return session_id, Session(User(row["id"], row["username"]), csrf)


def session(conn: psycopg.Connection, session_id: str) -> Session | None:
    row = conn.execute(
        "SELECT s.csrf_token, u.id, u.username FROM web_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id_hash = %s AND s.expires_at > now() AND u.disabled_at IS NULL",
        (_digest(session_id),),
    ).fetchone()
    return Session(User(row["id"], row["username"]), row["csrf_token"]) if row else None


def logout(conn: psycopg.Connection, session_id: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_hash = %s OR expires_at < now()", (_digest(session_id),))


def create_token(conn: psycopg.Connection, username: str, name: str) -> str:
    """A new bearer token for `username`; shown once, stored only as a digest."""
    row = conn.execute("SELECT id FROM users WHERE lower(username) = lower(%s)", (username,)).fetchone()
    if row is None:
        raise LookupError(f"no user named {username!r}")
    token = "dmk_" + secrets.token_urlsafe(32)
    conn.execute("INSERT INTO api_tokens (user_id, name, token_hash) VALUES (%s, %s, %s)",
                 (row["id"], name or "api", _digest(token)))
    return token


def token_user(conn: psycopg.Connection, token: str) -> User | None:
    row = conn.execute(
        "UPDATE api_tokens t SET last_used_at = now() FROM users u"
        " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND u.id = t.user_id AND u.disabled_at IS NULL"
        " RETURNING u.id, u.username",
        (_digest(token),),
    ).fetchone()
    return User(row["id"], row["username"]) if row else None


