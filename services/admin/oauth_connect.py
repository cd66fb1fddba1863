"""Connecting a mailbox that signs in with OAuth2: the authorization-code flow with PKCE.

    start(conn, keys, mailbox_id, redirect_uri)  -> the provider's sign-in address
    finish(app, answer)                          -> the id of the mailbox now connected (or None)

`deskmail mailbox connect`, the API's /oauth2/authorize and the page's
Connect button start it; the page's /oauth2/callback, or the address the
browser landed on pasted into the CLI, finishes it (shared/oauth2/authorize.py).
A flow that cannot go on is a Conflict that says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from services.admin import mailboxes
from services.admin.errors import Conflict
from shared.crypto import Keys
from shared.oauth2 import authorize


def start(conn: psycopg.Connection, keys: Keys, mailbox_id: int, redirect_uri: str) -> str:
    found = mailboxes.row(conn, mailbox_id)
    if found["auth_method"] != "oauth2" or found["oauth_grant_id"] is None:
        raise Conflict(f"mailbox {mailbox_id} signs in with a password; choose OAuth2 first"
                       f" (deskmail mailbox edit {mailbox_id} --auth oauth2 ..., or the mailbox's page)")
    try:
        return authorize.start(conn, keys, found["oauth_grant_id"], redirect_uri, found["username"])
    except authorize.AuthorizationError as exc:
        raise Conflict(str(exc)) from None


def finish(pool: Any, keys: Keys, answer: Mapping[str, Any]) -> int | None:
    """Exchange the provider's code for tokens (state, code, error, error_description as it sent them)."""
    try:
        grant_id = authorize.finish(pool, keys, answer.get("state"), answer.get("code"), answer.get("error"),
                                    answer.get("error_description"))
    except authorize.AuthorizationError as exc:
        raise Conflict(str(exc)) from None
    with pool.connection() as conn:
        found = conn.execute("SELECT id FROM mailboxes WHERE oauth_grant_id = %s", (grant_id,)).fetchone()
    return int(found["id"]) if found else None


def parse_redirect(url: str) -> dict[str, str]:
    """The query of the address the provider sent the browser to (pasted into the CLI)."""
    return authorize.parse_redirect(url)
