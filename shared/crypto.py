"""Secrets at rest (invariant 8) and the key for signing outgoing Message-IDs.

Both keys derive from DESKMAIL_SECRET_KEY with HKDF, so one secret serves
both purposes without reusing key material. The embedded mode creates a
random secret under its data folder on first start; production refuses to
start without one rather than storing passwords under a guessable key.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from functools import cached_property

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.settings import Settings


class SecretError(ValueError):
    """A stored secret cannot be decrypted with this DESKMAIL_SECRET_KEY."""


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"deskmail", info=purpose).derive(
        secret.encode()
    )


def load_secret(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    if not settings.embedded:
        raise SystemExit("DESKMAIL_SECRET_KEY must be set (it encrypts mailbox passwords at rest)")
    path = settings.data_dir / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class Keys:
    secret: str

    @cached_property
    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(_derive(self.secret, b"passwords")))

    @cached_property
    def message_id_key(self) -> bytes:
        return _derive(self.secret, b"message-ids")

    def encrypt(self, plaintext: str | None) -> bytes | None:
        return None if plaintext is None else self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes | None) -> str | None:
        if token is None:
            return None
        try:
            return self._fernet.decrypt(bytes(token)).decode()
        except InvalidToken:
            raise SecretError(
                "stored password cannot be decrypted: was DESKMAIL_SECRET_KEY changed?"
            ) from None
