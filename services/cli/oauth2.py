"""OAuth2 options of `deskmail mailbox add/edit` and `deskmail smtp ...`, and `deskmail mailbox connect`.

    deskmail mailbox add ... --auth oauth2 --oauth-provider microsoft --oauth-tenant contoso.com \\
        --oauth-client-id APP-ID --oauth-client-secret-stdin < secret.txt
    deskmail mailbox connect 3          prints the provider's sign-in address; paste
                                        back the address the browser lands on
    deskmail mailbox edit 3 --oauth-flow refresh_token --refresh-token-stdin < token.txt

The options are the admin layer's OAuth2 fields (shared/oauth2/owners.py
names: auth_method, oauth_provider, ...), saved with the mailbox or SMTP
settings in one go, so a wrong value gets the same message as in the API.
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

from services.admin import oauth_connect
from services.app import App
from shared.db import transaction
from shared.oauth2.providers import FLOWS, MECHANISMS, PROVIDERS

SECRET_ENV = "DESKMAIL_OAUTH_CLIENT_SECRET"
REFRESH_ENV = "DESKMAIL_OAUTH_REFRESH_TOKEN"
REDIRECT_ENV = "DESKMAIL_OAUTH_REDIRECT_URI"
DEFAULT_REDIRECT = "http://localhost/oauth2/callback"

OPTIONS = {
    # option: (field, choices, help)
    "oauth-provider": ("oauth_provider", PROVIDERS, "microsoft, google or generic (endpoints and scopes filled in)"),
    "oauth-flow": ("oauth_flow", FLOWS, "how the mailbox gets tokens: authorization_code (Connect, default),"
                   " client_credentials (Microsoft app-only) or refresh_token (pasted)"),
    "oauth-tenant": ("oauth_tenant", None, "Microsoft directory (tenant) id or domain"),
    "oauth-client-id": ("oauth_client_id", None, "the application (client) id"),
    "oauth-token-url": ("oauth_token_url", None, "token endpoint (generic; overrides a preset)"),
    "oauth-authorize-url": ("oauth_authorize_url", None, "authorization endpoint (generic; overrides a preset)"),
    "oauth-scopes": ("oauth_scopes", None, "space-separated scopes (default: the provider's mail scopes)"),
    "oauth-mechanism": ("oauth_mechanism", MECHANISMS, "auto (default: what the server offers), xoauth2 or oauthbearer"),
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


def values_of(args: argparse.Namespace, secrets: tuple[str | None, str | None]) -> dict[str, Any]:
    """The OAuth2 fields given, as the admin layer names them."""
    values: dict[str, Any] = {field: getattr(args, opt.replace("-", "_")) for opt, (field, _, _) in OPTIONS.items()}
    values = {k: v for k, v in values.items() if v is not None}
    if args.auth is not None:
        values["auth_method"] = args.auth
    secret, refresh = secrets
    if secret is not None:
        values["oauth_client_secret"] = secret
    if refresh is not None:
        values["oauth_refresh_token"] = refresh
    return values


def note(shown: dict[str, Any], table: str, secrets: tuple[str | None, str | None]) -> str | None:
    """What the administrator should know about the sign-in just saved, from the saved view; or None."""
    if shown.get("auth_method") != "oauth2":
        return None
    if secrets[1] and shown.get("oauth_connected"):
        return "refresh token stored; the next poll signs in with it"
    if shown.get("oauth_flow") == "client_credentials":
        return "client credentials: the first poll obtains a token"
    if not shown.get("oauth_connected"):
        if table == "mailboxes":
            return (f"not connected yet: run 'deskmail mailbox connect {shown['id']}'"
                    " (or Connect in the admin web)")
        return "not connected yet: paste a refresh token (--refresh-token-stdin)"
    return None


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
    with transaction(app.pool) as conn:
        url = oauth_connect.start(conn, app.keys, args.id, redirect_uri)
    print("Open this address in a browser and sign in as the mailbox's user:\n")
    print(url + "\n")
    if args.no_wait:
        print("The admin web's callback completes the sign-in.")
        return 0
    print(f"The provider then sends the browser to {redirect_uri}?code=...; the page may not load.",
          file=sys.stderr)
    print("Paste that whole address here and press Enter:", file=sys.stderr)
    oauth_connect.finish(app.pool, app.keys, oauth_connect.parse_redirect(sys.stdin.readline()))
    print(f"mailbox {args.id} connected")
    return 0
