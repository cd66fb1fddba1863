"""PKCE (RFC 7636) and the state parameter of the authorization-code flow."""

from __future__ import annotations

import base64
import hashlib
import secrets


def verifier() -> str:
    """A code verifier: 43-128 characters of [A-Za-z0-9-._~]; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def challenge(code_verifier: str) -> str:
    """S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def state() -> str:
    """Names one pending authorization in the callback; unguessable, so it also stops CSRF."""
    return secrets.token_urlsafe(32)
