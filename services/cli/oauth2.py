"""OAuth2 options of `deskmail mailbox add/edit` and `deskmail smtp ...`, and `deskmail mailbox connect`.

    deskmail mailbox add ... --auth oauth2 --oauth-provider microsoft --oauth-tenant contoso.com \\
        --oauth-client-id APP-ID --oauth-client-secret-stdin < secret.txt
    deskmail mailbox connect 3          prints the provider's sign-in address; paste
                                        back the address the browser lands on
    deskmail mailbox edit 3 --oauth-flow refresh_token --refresh-token-stdin < token.txt

Secrets (client secret, refresh token) come from standard input or the
environment, never from options (they would show in `ps` and shell history),
and are never printed. With both on standard input, the client secret is the
first line and the refresh token the second.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from services.app import App
from shared.crypto import Keys
from shared.db import transaction
from shared.oauth2 import authorize, grants, owners
from shared.oauth2.providers import FLOWS, MECHANISMS, PROVIDERS

SECRET_ENV = "DESKMAIL_OAUTH_CLIENT_SECRET"
REFRESH_ENV = "DESKMAIL_OAUTH_REFRESH_TOKEN"
REDIRECT_ENV = "DESKMAIL_OAUTH_REDIRECT_URI"
DEFAULT_REDIRECT = "http://localhost/oauth2/callback"

OPTIONS = {
    # option: (grant setting, choices, help)
    "oauth-provider": ("provider", PROVIDERS, "microsoft, google or generic (endpoints and scopes filled in)"),
    "oauth-flow": ("flow", FLOWS, "how the mailbox gets tokens: authorization_code (Connect, default),"
                   " client_credentials (Microsoft app-only) or refresh_token (pasted)"),
    "oauth-tenant": ("tenant", None, "Microsoft directory (tenant) id or domain"),
    "oauth-client-id": ("client_id", None, "the application (client) id"),
    "oauth-token-url": ("token_url", None, "token endpoint (generic; overrides a preset)"),
    "oauth-authorize-url": ("authorize_url", None, "authorization endpoint (generic; overrides a preset)"),
    "oauth-scopes": ("scopes", None, "space-separated scopes (default: the provider's mail scopes)"),
    "oauth-mechanism": ("mechanism", MECHANISMS, "auto (default: what the server offers), xoauth2 or oauthbearer"),
}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--auth", choices=("password", "oauth2"), help="how to sign in (default password)")
    for opt, (_, choices, help_) in OPTIONS.items():
        parser.add_argument(f"--{opt}", choices=choices, help=help_)
    parser.add_argument("--oauth-client-secret-stdin", action="store_true",
                        help=f"read the client secret from standard input (else ${SECRET_ENV})")
    parser.add_argument("--refresh-token-stdin", action="store_true",
                        help=f"read a refresh token from standard input (else ${REFRESH_ENV})")


def wants_oauth(args: argparse.Namespace) -> bool:
    return args.auth == "oauth2"


def read_secrets(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(client secret, refresh token) from standard input or the environment; call before any other stdin read."""
    secret = sys.stdin.readline().strip() if args.oauth_client_secret_stdin else os.environ.get(SECRET_ENV) or None
    refresh = sys.stdin.readline().strip() if args.refresh_token_stdin else os.environ.get(REFRESH_ENV) or None
    return secret or None, refresh or None


def apply(conn: Any, keys: Keys, args: argparse.Namespace, table: str, owner_id: int,
          secrets: tuple[str | None, str | None]) -> str | None:
    """Save the OAuth2 options given for a mailbox or SMTP setting; a note for the administrator, or None.

    The checks and the messages are shared.oauth2.owners', as in the admin web and the API.
    """
    values = {setting: getattr(args, opt.replace("-", "_")) for opt, (setting, _, _) in OPTIONS.items()}
    secret, refresh = secrets
    given = owners.Given(args.auth, {k: v for k, v in values.items() if v is not None}, secret, refresh)
    return owners.apply(conn, keys, table, owner_id, given)


# ---- deskmail mailbox connect ------------------------------------------------------

def register_connect(msub: argparse._SubParsersAction) -> None:
    a = msub.add_parser("connect", help="sign in at the OAuth2 provider for a mailbox (authorization code + PKCE)")
    a.add_argument("id", type=int)
    a.add_argument("--redirect-uri", help=f"the redirect URI registered with the provider"
                   f" (else ${REDIRECT_ENV}, else {DEFAULT_REDIRECT})")
    a.add_argument("--no-wait", action="store_true",
                   help="only print the address; the admin web's callback completes the sign-in")
    a.set_defaults(func=cmd_connect)


def cmd_connect(args: argparse.Namespace) -> int:
    app = App.from_env()
    redirect_uri = args.redirect_uri or os.environ.get(REDIRECT_ENV) or DEFAULT_REDIRECT
    try:
        with transaction(app.pool) as conn:
            row = conn.execute("SELECT * FROM mailboxes WHERE id = %s AND removed_at IS NULL",
                               (args.id,)).fetchone()
            if row is None:
                raise authorize.AuthorizationError(f"no mailbox {args.id}")
            if row["auth_method"] != "oauth2" or row["oauth_grant_id"] is None:
                raise authorize.AuthorizationError(f"mailbox {args.id} signs in with a password;"
                                                   f" set it up first: deskmail mailbox edit {args.id} --auth oauth2 ...")
            url = authorize.start(conn, app.keys, row["oauth_grant_id"], redirect_uri, row["username"])
    except authorize.AuthorizationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("Open this address in a browser and sign in as the mailbox's user:\n")
    print(url + "\n")
    if args.no_wait:
        print("The admin web's callback completes the sign-in.")
        return 0
    print(f"The provider then sends the browser to {redirect_uri}?code=...; the page may not load.",
          file=sys.stderr)
    print("Paste that whole address here and press Enter:", file=sys.stderr)
    pasted = sys.stdin.readline()
    answer = authorize.parse_redirect(pasted)
    try:
        authorize.finish(app.pool, app.keys, answer.get("state"), answer.get("code"), answer.get("error"),
                         answer.get("error_description"))
    except authorize.AuthorizationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"mailbox {args.id} connected")
    return 0


def show(conn: Any, table: str, owner_id: int) -> dict[str, Any] | None:
    """The grant of a mailbox or SMTP setting as `show` prints it (no secrets)."""
    return grants.describe(grants.for_owner(conn, table, owner_id))
