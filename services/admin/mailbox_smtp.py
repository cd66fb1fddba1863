"""A mailbox's SMTP section: which settings it sends with, and changing them from the mailbox.

The same fields in the form, the API's mailbox object and `deskmail mailbox add/edit`:

    smtp_id       "system" (or null, ""): the system default
                  "custom": the mailbox's own settings (a row the mailbox owns, made on first save)
                  an id, or a name: named settings, which any number of mailboxes may share
    smtp_<field>  host, port, security, username, password, allow_self_signed, auth_method, oauth_*:
                  the settings as the section shows them (a blank password keeps the saved one)
    smtp_edit     only when the fields change named settings: "shared" changes them for every
                  mailbox that uses them (the form lists those), "copy" makes this mailbox its own
                  settings from them with the changes (the password comes along).

Changing named settings from a mailbox without saying which is refused
(InvalidSetting on smtp_edit, naming the mailboxes that share them): one
mailbox's form never rewrites what other mailboxes send with unasked. Errors
of the fields come back as smtp_<field>, in the words of services/admin/smtp.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from services.admin import smtp as smtp_admin
from services.admin.errors import InvalidSetting
from shared import smtp_settings
from shared.crypto import Keys
from shared.oauth2 import owners

SYSTEM, CUSTOM = "system", "custom"
EDITS = ("shared", "copy")
SETTING_FIELDS = ("host", "port", "security", "username", "allow_self_signed")


@dataclass
class Section:
    """What a front end sent about the SMTP section (choice None: keep the mailbox's current one)."""

    choice: Any = None
    fields: dict[str, Any] = field(default_factory=dict)  # without the smtp_ prefix
    edit: Any = None


def split(raw: Mapping[str, Any]) -> tuple[dict[str, Any], Section | None]:
    """(raw without the SMTP section, the section; None when nothing of it was sent)."""
    rest = {k: v for k, v in raw.items() if not k.startswith("smtp_")}
    if len(rest) == len(raw):
        return rest, None
    section = Section(choice=raw.get("smtp_id"), edit=raw.get("smtp_edit"))
    section.fields = {k[5:]: v for k, v in raw.items()
                      if k.startswith("smtp_") and k not in ("smtp_id", "smtp_edit")}
    if "smtp_id" not in raw:
        section.choice = None
    return rest, section


def prefixed(errors: Mapping[str, str]) -> dict[str, str]:
    return {f"smtp_{k}": v for k, v in errors.items()}


def _own(conn: psycopg.Connection, mailbox_id: int | None) -> dict[str, Any] | None:
    if mailbox_id is None:
        return None
    return conn.execute("SELECT * FROM smtp_settings WHERE owner_mailbox_id = %s", (mailbox_id,)).fetchone()


def users_of(conn: psycopg.Connection, smtp_id: int) -> list[dict[str, Any]]:
    """The mailboxes (id, address) that send with these settings."""
    return conn.execute("SELECT id, address FROM mailboxes WHERE smtp_id = %s AND removed_at IS NULL"
                        " ORDER BY id", (smtp_id,)).fetchall()


def resolve(conn: psycopg.Connection, choice: Any, mailbox_id: int | None) -> str | int:
    """SYSTEM, CUSTOM or the id of named settings, from what a front end sent (None: the current one)."""
    if choice is None:
        if mailbox_id is None:
            return SYSTEM
        row = conn.execute("SELECT smtp_id FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
        smtp_id = row["smtp_id"] if row else None
        own = _own(conn, mailbox_id)
        return SYSTEM if smtp_id is None else CUSTOM if own and own["id"] == smtp_id else int(smtp_id)
    if isinstance(choice, bool) or not isinstance(choice, (int, str)):
        raise InvalidSetting({"smtp_id": f"must be 'system', 'custom' or the id or name of SMTP settings,"
                                         f" not {choice!r}"})
    text = str(choice).strip()
    if text.lower() in ("", SYSTEM):
        return SYSTEM
    if text.lower() == CUSTOM:
        return CUSTOM
    row = smtp_settings.find(conn, text)
    if row is None or row["is_system"]:
        raise InvalidSetting({"smtp_id": f"no SMTP settings with id {text}" if text.isdigit()
                              else f"no SMTP settings named {text!r} (deskmail smtp list shows them)"})
    if row["owner_mailbox_id"] is not None and row["owner_mailbox_id"] != mailbox_id:
        owner = conn.execute("SELECT address FROM mailboxes WHERE id = %s", (row["owner_mailbox_id"],)).fetchone()
        raise InvalidSetting({"smtp_id": f"SMTP settings {row['name']!r} belong to mailbox"
                              f" {row['owner_mailbox_id']} ({owner['address'] if owner else '?'});"
                              " choose named settings, or custom settings of this mailbox"})
    if row["owner_mailbox_id"] is not None:
        return CUSTOM
    return int(row["id"])


def _typed(fields: Mapping[str, Any]) -> tuple[dict[str, Any], str | None, owners.Given]:
    rest, oauth, errors = owners.split(fields)
    try:
        values, password = smtp_admin.coerce(rest)
    except InvalidSetting as exc:
        raise InvalidSetting(prefixed({**exc.errors, **errors})) from None
    if "name" in values:
        raise InvalidSetting({"smtp_name": "is not a setting here: named settings are managed on their own"})
    if errors:
        raise InvalidSetting(prefixed(errors))
    return values, password, oauth


def _changes(conn: psycopg.Connection, keys: Keys, row: Mapping[str, Any], values: Mapping[str, Any],
             password: str | None, oauth: owners.Given) -> bool:
    """Whether the section's values differ from the saved settings `row`."""
    if any(values[k] != row[k] for k in SETTING_FIELDS if k in values):
        return True
    if password is not None and password != keys.decrypt(row["password_enc"]):
        return True
    method = oauth.method or row["auth_method"]
    if method != row["auth_method"]:
        return True
    # With a password sign-in the (hidden) OAuth2 fields of a form change nothing.
    return method == "oauth2" and not oauth.empty and not owners.same_as_saved(
        conn, "smtp_settings", row["id"], oauth)


def _check_edit(edit: Any) -> str | None:
    if edit in (None, ""):
        return None
    if edit not in EDITS:
        raise InvalidSetting({"smtp_edit": f"must be one of {', '.join(EDITS)}, not {edit!r}"})
    return str(edit)


def _own_name(conn: psycopg.Connection, address: str) -> str:
    name, n = f"{address} (mailbox)", 1
    while smtp_settings.find(conn, name) is not None:
        n += 1
        name = f"{address} (mailbox {n})"
    return name


def _create_own(conn: psycopg.Connection, keys: Keys, address: str, values: dict[str, Any],
                password: str | None, oauth: owners.Given) -> int:
    try:
        smtp_id = smtp_admin.save(conn, keys, {**values, "name": _own_name(conn, address), "password": password,
                                               **_oauth_raw(oauth)}, None)
    except InvalidSetting as exc:
        raise InvalidSetting(prefixed(exc.errors)) from None
    return smtp_id


_FIELD_OF = {setting: name for name, setting in owners.FIELDS.items()}  # provider -> oauth_provider


def _oauth_raw(oauth: owners.Given) -> dict[str, Any]:
    """The OAuth2 fields as a front end names them, to hand on to services/admin/smtp.py."""
    raw: dict[str, Any] = {_FIELD_OF[k]: v for k, v in oauth.values.items()}
    if oauth.method is not None:
        raw[owners.METHOD] = oauth.method
    if oauth.secret is not None:
        raw[owners.SECRET] = oauth.secret
    if oauth.refresh is not None:
        raw[owners.REFRESH] = oauth.refresh
    return raw


def apply(conn: psycopg.Connection, keys: Keys, mailbox_id: int | None, address: str,
          section: Section) -> tuple[int | None, bool]:
    """Save the section in the caller's transaction: (the smtp_id for the mailbox, whether it is its own).

    For a new mailbox (mailbox_id None) own settings are created here and
    given their owner by `claim` once the mailbox has its id.
    """
    choice = resolve(conn, section.choice, mailbox_id)
    edit = _check_edit(section.edit)
    if not section.fields and edit is None:
        if choice == SYSTEM:
            return None, False
        if choice != CUSTOM:
            return int(choice), False
        own = _own(conn, mailbox_id)
        if own is None:
            raise InvalidSetting({"smtp_host": "must not be empty (custom settings for this mailbox)"})
        return int(own["id"]), True
    if choice == SYSTEM:
        if not section.fields:
            raise InvalidSetting({"smtp_edit": "is only for changing shared SMTP settings from a mailbox"})
        first = next(iter(section.fields))
        raise InvalidSetting({f"smtp_{first}": "the system default is changed on its own (Settings › SMTP,"
                                               " deskmail smtp set-system); choose custom settings for this"
                                               " mailbox to give it its own"})
    values, password, oauth = _typed(section.fields)
    if choice == CUSTOM:
        own = _own(conn, mailbox_id)
        if own is None:
            return _create_own(conn, keys, address, values, password, oauth), True
        try:
            smtp_admin.save(conn, keys, {**values, "password": password, **_oauth_raw(oauth)}, own["id"])
        except InvalidSetting as exc:
            raise InvalidSetting(prefixed(exc.errors)) from None
        return int(own["id"]), True
    shared = smtp_settings.find(conn, choice)
    assert shared is not None
    if edit is None and _changes(conn, keys, shared, values, password, oauth):
        users = [u for u in users_of(conn, shared["id"]) if u["id"] != mailbox_id]
        who = ", ".join(f"{u['id']} ({u['address']})" for u in users) or "no other mailbox yet"
        raise InvalidSetting({"smtp_edit": f"SMTP settings {shared['name']!r} are shared (other mailboxes: {who});"
                                           " choose to change them for every mailbox that uses them (shared)"
                                           " or to make a copy for this mailbox (copy)"})
    if edit == "shared":
        try:
            smtp_admin.save(conn, keys, {**values, "password": password, **_oauth_raw(oauth)}, shared["id"])
        except InvalidSetting as exc:
            raise InvalidSetting(prefixed(exc.errors)) from None
        return int(shared["id"]), False
    if edit == "copy":
        if shared["auth_method"] == "oauth2" or oauth.method == "oauth2":
            raise InvalidSetting({"smtp_edit": "settings that sign in with OAuth2 cannot be copied (their sign-in"
                                               " is theirs): choose custom settings and sign them in anew"})
        base = {k: shared[k] for k in SETTING_FIELDS}
        saved_password = keys.decrypt(shared["password_enc"])
        return _create_own(conn, keys, address, {**base, **values},
                           password if password is not None else saved_password, owners.Given()), True
    return int(shared["id"]), False


def claim(conn: psycopg.Connection, smtp_id: int, mailbox_id: int) -> None:
    """Give own settings made for a new mailbox their owner."""
    conn.execute("UPDATE smtp_settings SET owner_mailbox_id = %s WHERE id = %s", (mailbox_id, smtp_id))


def for_test(conn: psycopg.Connection, keys: Keys, mailbox_id: int | None,
             section: Section | None) -> smtp_settings.SmtpSettings | None:
    """The settings a test of the section's values logs in with (None: none are set), nothing saved.

    Fields given over named or own settings change what is tested, as they
    would change what is saved; OAuth2 signs in only with saved settings.
    """
    choice = resolve(conn, section.choice if section else None, mailbox_id)
    if choice == SYSTEM:
        return smtp_settings.for_mailbox(conn, keys, None)
    saved = _own(conn, mailbox_id) if choice == CUSTOM else smtp_settings.find(conn, choice)
    values, password, oauth = _typed(section.fields) if section else ({}, None, owners.Given())
    if section and section.fields and not values.get("host") and saved is None:
        raise InvalidSetting({"smtp_host": "must not be empty (custom settings for this mailbox)"})
    base = {k: saved[k] for k in SETTING_FIELDS} if saved else dict(smtp_settings.DEFAULTS)
    full = {**base, **values}
    problems = smtp_settings.validate({**full, "name": "x"}, is_system=False)
    if problems:
        raise InvalidSetting(prefixed(problems))
    method = oauth.method or (saved["auth_method"] if saved else "password")
    if method == "oauth2" and (saved is None or not owners.same_as_saved(conn, "smtp_settings", saved["id"], oauth)):
        raise InvalidSetting({"smtp_auth_method": NOT_SAVED_YET})
    return smtp_settings.SmtpSettings(
        id=saved["id"] if saved else 0, name=saved["name"] if saved else "test", is_system=False,
        host=full["host"], port=full["port"], security=full["security"], username=full["username"],
        password=password if password is not None else (keys.decrypt(saved["password_enc"]) if saved else None),
        allow_self_signed=bool(full["allow_self_signed"]), auth_method=method)


NOT_SAVED_YET = ("these OAuth2 settings are not saved yet: save them (and Connect) first;"
                 " a test signs in with the saved OAuth2 settings")


def view(conn: psycopg.Connection, mailbox_id: int, smtp_id: int | None) -> dict[str, Any]:
    """How the mailbox sends, as front ends show it.

    use          system | custom (its own settings) | named (settings it shares)
    settings     the settings' values (smtp/view), None for the system default
    shared_with  the other mailboxes (id, address) that send with named settings
    """
    if smtp_id is None:
        return {"use": SYSTEM, "id": None, "name": None, "settings": None, "shared_with": []}
    settings = smtp_admin.view(conn, smtp_id)
    own = settings["owner_mailbox_id"] == mailbox_id
    return {"use": CUSTOM if own else "named", "id": smtp_id, "name": settings["name"], "settings": settings,
            "shared_with": [] if own else [u for u in users_of(conn, smtp_id) if u["id"] != mailbox_id]}


def named(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Named settings a mailbox may choose (not the system default, not another mailbox's own)."""
    return [r for r in smtp_admin.list_all(conn) if not r["is_system"] and r["owner_mailbox_id"] is None]
