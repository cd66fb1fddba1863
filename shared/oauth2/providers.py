"""Provider presets and the validation of a mailbox's OAuth2 settings.

A preset fills in what an administrator would otherwise look up: the
authorization and token endpoints and the scopes that IMAP, POP3 and SMTP
need. "generic" takes them from the administrator. Anything set explicitly
overrides the preset, so a national cloud or a custom Google scope still fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PROVIDERS = ("microsoft", "google", "generic")
FLOWS = ("authorization_code", "client_credentials", "refresh_token")
MECHANISMS = ("auto", "xoauth2", "oauthbearer")

_MS = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
MICROSOFT_DELEGATED_SCOPES = (
    "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/POP.AccessAsUser.All"
    " https://outlook.office.com/SMTP.Send offline_access"
)
# App-only access (client credentials): the app's granted permissions, as a whole.
MICROSOFT_APP_SCOPES = "https://outlook.office365.com/.default"
GOOGLE_SCOPES = "https://mail.google.com/"


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str | None
    token_url: str
    scopes: str
    extra_authorize_params: tuple[tuple[str, str], ...] = ()


def endpoints(values: dict[str, Any]) -> Endpoints:
    """Effective endpoints and scopes of settings that passed `validate`."""
    provider = values["provider"]
    flow = values.get("flow") or "authorization_code"
    scopes = (values.get("scopes") or "").strip()
    if provider == "microsoft":
        tenant = (values.get("tenant") or "organizations").strip()
        base = _MS.format(tenant=tenant)
        default_scopes = MICROSOFT_APP_SCOPES if flow == "client_credentials" else MICROSOFT_DELEGATED_SCOPES
        return Endpoints(values.get("authorize_url") or f"{base}/authorize",
                         values.get("token_url") or f"{base}/token", scopes or default_scopes)
    if provider == "google":
        # access_type=offline and prompt=consent: without them Google issues
        # no refresh token on a second sign-in.
        return Endpoints(values.get("authorize_url") or "https://accounts.google.com/o/oauth2/v2/auth",
                         values.get("token_url") or "https://oauth2.googleapis.com/token",
                         scopes or GOOGLE_SCOPES, (("access_type", "offline"), ("prompt", "consent")))
    return Endpoints(values.get("authorize_url") or None, values["token_url"], scopes)


def _url_error(url: Any) -> str | None:
    if not isinstance(url, str) or not url.strip():
        return "must not be empty"
    parts = urlsplit(url.strip())
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"):
        return None  # a token server on this machine (development, tests)
    return f"must be an https:// URL (http:// only for localhost), not {url!r}"


def validate(values: dict[str, Any]) -> dict[str, str]:
    """Field -> message for every invalid OAuth2 setting (fields prefixed oauth_ by callers)."""
    errors: dict[str, str] = {}
    provider = values.get("provider")
    flow = values.get("flow") or "authorization_code"
    if provider not in PROVIDERS:
        errors["provider"] = f"must be one of {', '.join(PROVIDERS)}, not {provider!r}"
    if flow not in FLOWS:
        errors["flow"] = f"must be one of {', '.join(FLOWS)}, not {flow!r}"
    if values.get("mechanism", "auto") not in MECHANISMS:
        errors["mechanism"] = f"must be one of {', '.join(MECHANISMS)}, not {values.get('mechanism')!r}"
    if not str(values.get("client_id") or "").strip():
        errors["client_id"] = "must not be empty (the application id the provider gave you)"
    for name in ("token_url", "authorize_url"):
        if values.get(name):
            problem = _url_error(values[name])
            if problem:
                errors[name] = problem
    if provider == "generic":
        if not values.get("token_url"):
            errors["token_url"] = "must not be empty for a generic provider"
        if flow == "authorization_code" and not values.get("authorize_url"):
            errors["authorize_url"] = "must not be empty for a generic provider's authorization-code flow"
    tenant = str(values.get("tenant") or "").strip()
    if provider == "microsoft" and flow == "client_credentials" and tenant.lower() in ("", "common", "organizations", "consumers"):
        errors["tenant"] = ("client credentials need your directory (tenant) id or domain,"
                            " e.g. contoso.onmicrosoft.com")
    if provider == "google" and flow == "client_credentials":
        errors["flow"] = "Google offers no client-credentials sign-in for Gmail; use authorization_code or refresh_token"
    if flow == "client_credentials" and not values.get("client_secret") and not values.get("has_client_secret"):
        errors["client_secret"] = "is required for client credentials"
    if tenant and any(c.isspace() or c in "/?#" for c in tenant):
        errors["tenant"] = f"must be a directory id or domain, not {tenant!r}"
    return errors
