"""Errors classified once: transient (retry) or permanent (dead-letter).

The worker base decides ack, retry or dead-letter from this classification
alone; handlers raise `Permanent` for input no retry can fix and let
everything else propagate.
"""

from __future__ import annotations

import smtplib
import socket
import ssl

import psycopg
from kombu.exceptions import OperationalError as KombuOperationalError


class Permanent(Exception):
    """Retrying cannot help (bad input, a missing row that should exist): dead-letter."""


class Transient(Exception):
    """Worth retrying later (a server that is down, a 4xx answer)."""


TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    Transient,
    psycopg.OperationalError,  # connection lost, server restarting
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    KombuOperationalError,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    socket.gaierror,
    ssl.SSLEOFError,
    smtplib.SMTPServerDisconnected,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, Permanent):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, psycopg.errors.UniqueViolation):
        # Two workers raced for the same key; a retry finds the winner's row.
        return True
    return isinstance(exc, TRANSIENT_TYPES)
