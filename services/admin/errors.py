"""Errors of the admin service layer that every front end (CLI, API, pages) maps the same way.

    InvalidSetting  field -> message   CLI exit 2, "error: field: message"; API 422 {"errors": {...}};
                                       a form is shown again with each message beside its field
    NotFound        message            CLI exit 1; API 404; page 404
    Conflict        message (field)    a duplicate, or something still in use: CLI exit 1; API 409
    Unavailable     message            the broker or the database does not answer: CLI exit 2; API 503

InvalidSetting is defined in shared.mailboxes (the shared validators raise it
too) and exported here, so a front end imports every error from this module.
"""

from __future__ import annotations

from shared.mailboxes import InvalidSetting

__all__ = ["Conflict", "InvalidSetting", "NotFound", "Unavailable"]


class NotFound(LookupError):
    """The thing asked for does not exist (or was removed)."""


class Conflict(Exception):
    """The change clashes with what exists: a duplicate, or something still in use."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unavailable(Exception):
    """The broker or the database does not answer right now: try again later."""
