"""SMTP settings: the system default and the named settings that mailboxes may share.

    ref     'system', an id, or a name (the CLI's NAME argument; the API's path id)
    values  name, host, port, security, username, allow_self_signed, password (write-only: blank keeps
            the saved one), auth_method and the oauth_ fields (shared/oauth2/owners.py)

`save` creates, changes or (ref 'system') sets the system default; a username
set to nothing also clears the password (the server is used without a login).
`remove` refuses (Conflict) while a mailbox sends with the settings. A
mailbox's own settings ("custom settings for this mailbox") are the business
of services/admin/mailbox_smtp.py; they are listed here with their owner.
Logging in with values that are not saved is services/admin/probes.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from services.admin import form_values
from services.admin.errors import Conflict, InvalidSetting, NotFound
from shared import smtp_settings
from shared.crypto import Keys
from shared.oauth2 import owners

SYSTEM = smtp_settings.SYSTEM
FIELDS = ("name", "host", "port", "security", "username", "allow_self_signed")
PASSWORD_NEEDS_USER = "is needed to log in with a password (or send without logging in: no username)"


def coerce(raw: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(typed values, password) from a front end's input; password None keeps the saved one."""
    return form_values.coerce(raw, accepted=FIELDS, ints=("port",), nullable=("port", "username"),
                              bools=("allow_self_signed",), lowered=("security",))


_OWNERS = """
SELECT s.id, m.id AS owner_id, m.address AS owner_address
FROM smtp_settings s JOIN mailboxes m ON m.id = s.owner_mailbox_id
"""


def _described(conn: psycopg.Connection, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as smtp_settings.describe shows it, with has_password, the owner and the OAuth2 settings."""
    out = dict(row)
    out["has_password"] = out.pop("password") != "(none)"
    owner = conn.execute(_OWNERS + " WHERE s.id = %s", (row["id"],)).fetchone()
    out["owner_mailbox_id"] = owner["owner_id"] if owner else None
    out["owner_address"] = owner["owner_address"] if owner else None
    out.update(owners.view(conn, "smtp_settings", row["id"]))  # never the client secret or a token
    return out


def list_all(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every setting, the system default first, with how many mailboxes use it and its owner if any."""
    return [view(conn, r["id"]) for r in smtp_settings.list_all(conn)]


def find(conn: psycopg.Connection, ref: str | int) -> dict[str, Any]:
    """The saved row named by `ref` (NotFound when there is none)."""
    row = smtp_settings.find(conn, ref)
    if row is None:
        if str(ref).strip().lower() == SYSTEM:
            raise NotFound("no system SMTP settings yet (deskmail smtp set-system, or Settings › SMTP)")
        raise NotFound(f"no SMTP settings {ref!r} (deskmail smtp list shows them)")
    return row


def view(conn: psycopg.Connection, ref: str | int) -> dict[str, Any]:
    """One setting as an administrator sees it: the password only as set or not."""
    return _described(conn, smtp_settings.show(conn, find(conn, ref)["id"]))


def view_custom(conn: psycopg.Connection, smtp_id: int) -> dict[str, Any]:
    """Settings other than the system default, by id (the API's /smtp/{id})."""
    row = smtp_settings.find(conn, smtp_id)
    if row is None or row["is_system"]:
        raise NotFound(f"no custom SMTP settings {smtp_id}")
    return view(conn, smtp_id)


def system_form(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The system default as its form shows it, or None before it is set."""
    row = smtp_settings.find(conn, SYSTEM)
    return None if row is None else view(conn, row["id"])


def save(conn: psycopg.Connection, keys: Keys, raw: Mapping[str, Any], ref: str | int | None) -> int:
    """Create (ref None), change (ref), or set the system default (ref 'system'); the id.

    Every problem of the values and of their OAuth2 settings comes back in one InvalidSetting.
    """
    raw, oauth, errors = owners.split(raw)
    try:
        values, password = coerce(raw)
    except InvalidSetting as exc:
        raise InvalidSetting({**exc.errors, **errors}) from None
    current = smtp_settings.find(conn, ref) if ref is not None else None
    if ref is not None and current is None and ref != SYSTEM:
        raise NotFound(f"no SMTP settings {ref!r} (deskmail smtp list shows them)")
    username = values["username"] if "username" in values else (current or {}).get("username")
    if password and not username:
        errors["username"] = PASSWORD_NEEDS_USER
    clear_password = "username" in values and values["username"] is None
    with conn.transaction():  # a savepoint: nothing of a refused form stays
        try:
            if ref == SYSTEM:
                smtp_id = smtp_settings.set_system(conn, keys, {k: v for k, v in values.items() if k != "name"},
                                                   password, clear_password=clear_password)
            elif current is None:
                if values.get("name") and smtp_settings.find(conn, str(values["name"])):
                    raise Conflict(f"SMTP settings named {values['name']!r} exist already", field="name")
                smtp_id = smtp_settings.create(conn, keys, values, password)
            else:
                smtp_id = smtp_settings.update(conn, keys, current["id"], values, password,
                                               clear_password=clear_password)
        except InvalidSetting as exc:
            raise InvalidSetting({**exc.errors, **errors}) from None
        if errors:
            raise InvalidSetting(errors)
        owners.apply(conn, keys, "smtp_settings", smtp_id, oauth)
        return smtp_id


def remove(conn: psycopg.Connection, ref: str | int) -> None:
    """Delete settings no mailbox sends with (Conflict otherwise, naming the mailboxes)."""
    row = find(conn, ref)
    try:
        smtp_settings.remove(conn, row["id"])
    except InvalidSetting as exc:  # still in use: a conflict, not a bad value
        raise Conflict("; ".join(exc.errors.values())) from None


def remove_custom(conn: psycopg.Connection, smtp_id: int) -> None:
    view_custom(conn, smtp_id)
    remove(conn, smtp_id)
