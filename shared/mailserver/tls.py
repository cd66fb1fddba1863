"""TLS contexts for mail connections: verified unless a mailbox explicitly allows otherwise."""

from __future__ import annotations

import ssl

from shared import settings


def client_context(allow_self_signed: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file())
    if allow_self_signed:
        # The administrator chose this for the mailbox (invariant 8); the
        # connection is still encrypted, only the certificate is not checked.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
