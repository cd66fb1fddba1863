"""Errors of the admin service layer that every front end (CLI, API, pages) maps the same way.

    InvalidSetting (shared.mailboxes)  field -> message; CLI exit 2, API 422, form shown again
    NotFound                           CLI exit 1, API 404, page 404
    Conflict                           a duplicate or a thing still in use; CLI exit 1, API 409
"""

from __future__ import annotations


class NotFound(LookupError):
    """The thing asked for does not exist (or was removed)."""


class Conflict(Exception):
    """The change clashes with what exists: a duplicate, or something still in use."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
