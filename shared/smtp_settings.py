"""SMTP settings: the system default and the custom ones a mailbox may choose.

A mailbox's "SMTP setting to use" is `mailboxes.smtp_id`: NULL means the
system default (the one row with `is_system`), otherwise that custom row. The
CLI (and later the admin web) create, edit and remove settings only through
these functions, so every caller accepts the same values and reports the same
errors in the same words. Passwords are encrypted with shared.crypto.Keys
before they reach the database and are never returned by `list_all`/`describe`.

A setting is named on the command line by its name, its id, or `system`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from shared.crypto import Keys
from shared.mailboxes import InvalidSetting

SECURITY_TYPES = ("none", "starttls", "tls")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
SYSTEM = "system"
EDITABLE = ("name", "host", "port", "security", "username", "allow_self_signed")
DEFAULTS: dict[str, Any] = {
    "port": None, "security": "starttls", "username": None, "allow_self_signed": False,
}


@dataclass(frozen=True)
class SmtpSettings:
    """One SMTP setting, password decrypted; hashable, so a sender can key sessions by it."""

    id: int
    name: str
    is_system: bool
    host: str
    port: int | None
    security: str
    username: str | None
    password: str | None = field(default=None, repr=False)
    allow_self_signed: bool = False
    auth_method: str = "password"  # or "oauth2": signs in with `oauth` (shared/oauth2)
    oauth: Any = field(default=None, compare=False, repr=False)  # its TokenSource, if attached

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]

    @classmethod
    def from_row(cls, row: dict[str, Any], keys: Keys) -> SmtpSettings:
        return cls(
            id=row["id"], name=row["name"], is_system=row["is_system"], host=row["host"],
            port=row["port"], security=row["security"], username=row["username"],
            password=keys.decrypt(row["password_enc"]), allow_self_signed=row["allow_self_signed"],
            auth_method=row.get("auth_method") or "password",
        )


def validate(values: dict[str, Any], *, is_system: bool) -> dict[str, str]:
    """Field -> message for every invalid value in a complete set of values."""
    errors: dict[str, str] = {}
    name = str(values.get("name") or "").strip()
    if not is_system:
        if not name:
            errors["name"] = "must not be empty"
        elif name.lower() == SYSTEM:
            errors["name"] = "'system' is the system default's name; use set-system to change it"
        elif name.isdigit():
            errors["name"] = "must not be a number (numbers name settings by id)"
    host = str(values.get("host") or "")
    if not host.strip():
        errors["host"] = "must not be empty"
    elif any(c.isspace() or c in "/@:" for c in host):
        errors["host"] = f"must be a host name or IP address like smtp.example.com, not {host!r}"
    port = values.get("port")
    if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
        errors["port"] = f"must be between 1 and 65535, not {port!r}"
    security = values.get("security")
    if security not in SECURITY_TYPES:
        errors["security"] = f"must be one of {', '.join(SECURITY_TYPES)}, not {security!r}"
    username = values.get("username")
    if username is not None and not str(username).strip():
        errors["username"] = "must not be blank (leave it out to send without logging in)"
    return errors


def find(conn: psycopg.Connection, ref: str | int) -> dict[str, Any] | None:
    """The row named by `ref`: 'system', an id, or a name."""
    text = str(ref).strip()
    if text.lower() == SYSTEM:
        return conn.execute("SELECT * FROM smtp_settings WHERE is_system").fetchone()
    if text.isdigit():
        return conn.execute("SELECT * FROM smtp_settings WHERE id = %s", (int(text),)).fetchone()
    return conn.execute("SELECT * FROM smtp_settings WHERE name = %s", (text,)).fetchone()


def _row(conn: psycopg.Connection, ref: str | int) -> dict[str, Any]:
    row = find(conn, ref)
    if row is None:
        if str(ref).lower() == SYSTEM:
            raise LookupError("no system SMTP settings yet (deskmail smtp set-system)")
        raise LookupError(f"no SMTP settings {ref!r} (deskmail smtp list shows them)")
    return row


def _insert(conn: psycopg.Connection, keys: Keys, full: dict[str, Any], password: str | None,
            is_system: bool) -> int:
    cols = list(EDITABLE)
    try:
        row = conn.execute(
            f"INSERT INTO smtp_settings ({', '.join(cols)}, is_system, password_enc)"
            f" VALUES ({', '.join(['%s'] * len(cols))}, %s, %s) RETURNING id",
            [full.get(c) for c in cols] + [is_system, keys.encrypt(password)],
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise InvalidSetting({"name": f"SMTP settings named {full['name']!r} exist already"}) from None
    assert row is not None
    return int(row["id"])


def create(conn: psycopg.Connection, keys: Keys, values: dict[str, Any],
           password: str | None) -> int:
    """Add custom settings; returns the id."""
    full = {**DEFAULTS, **values}
    errors = validate(full, is_system=False)
    if errors:
        raise InvalidSetting(errors)
    full["name"] = str(full["name"]).strip()
    with conn.transaction():  # a savepoint: a duplicate name leaves the caller's transaction usable
        return _insert(conn, keys, full, password, is_system=False)


def set_system(conn: psycopg.Connection, keys: Keys, values: dict[str, Any],
               password: str | None, *, clear_password: bool = False) -> int:
    """Create or change the system default; unchanged fields (and password) are kept."""
    current = find(conn, SYSTEM)
    if current is None:
        full = {**DEFAULTS, **values, "name": SYSTEM}
        errors = validate(full, is_system=True)
        if errors:
            raise InvalidSetting(errors)
        return _insert(conn, keys, full, password, is_system=True)
    _update(conn, keys, current, {**values, "name": SYSTEM}, password, clear_password)
    return int(current["id"])


def update(conn: psycopg.Connection, keys: Keys, ref: str | int, changes: dict[str, Any],
           password: str | None = None, *, clear_password: bool = False) -> int:
    """Change custom settings (or the system default when `ref` is 'system'); returns the id."""
    current = _row(conn, ref)
    if current["is_system"]:
        changes = {**changes, "name": SYSTEM}
    _update(conn, keys, current, changes, password, clear_password)
    return int(current["id"])


def _update(conn: psycopg.Connection, keys: Keys, current: dict[str, Any],
            changes: dict[str, Any], password: str | None, clear_password: bool) -> None:
    full = {**{k: current[k] for k in EDITABLE}, **changes}
    errors = validate(full, is_system=current["is_system"])
    if errors:
        raise InvalidSetting(errors)
    cols = [k for k in EDITABLE if k in changes]
    sets = [f"{c} = %s" for c in cols] + ["updated_at = now()"]
    params: list[Any] = [str(changes[c]).strip() if c == "name" else changes[c] for c in cols]
    if password is not None or clear_password:
        sets.append("password_enc = %s")
        params.append(None if clear_password else keys.encrypt(password))
    try:
        with conn.transaction():
            conn.execute(f"UPDATE smtp_settings SET {', '.join(sets)} WHERE id = %s",
                         [*params, current["id"]])
    except psycopg.errors.UniqueViolation:
        raise InvalidSetting({"name": f"SMTP settings named {changes['name']!r} exist already"}) from None


def get(conn: psycopg.Connection, keys: Keys, ref: str | int) -> SmtpSettings:
    """Settings named by `ref`, password decrypted (LookupError when there are none)."""
    return SmtpSettings.from_row(_row(conn, ref), keys)


def for_mailbox(conn: psycopg.Connection, keys: Keys, smtp_id: int | None) -> SmtpSettings | None:
    """What a mailbox sends with: its custom settings, else the system default; None if neither."""
    if smtp_id is not None:
        row = conn.execute("SELECT * FROM smtp_settings WHERE id = %s", (smtp_id,)).fetchone()
    else:
        row = conn.execute("SELECT * FROM smtp_settings WHERE is_system").fetchone()
    return None if row is None else SmtpSettings.from_row(row, keys)


_LIST_SQL = """
SELECT s.id, s.name, s.is_system, s.host, s.port, s.security, s.username, s.allow_self_signed,
       s.password_enc IS NOT NULL AS has_password, s.updated_at,
       (SELECT count(*) FROM mailboxes m WHERE m.removed_at IS NULL
         AND (m.smtp_id = s.id OR (s.is_system AND m.smtp_id IS NULL))) AS mailboxes
FROM smtp_settings s
"""


def describe(row: dict[str, Any]) -> dict[str, Any]:
    """A row as an administrator may see it: the password only as set or not."""
    out = {k: v for k, v in row.items() if k not in ("password_enc", "has_password")}
    has = row.get("has_password", row.get("password_enc") is not None)
    out["password"] = "(set, not shown)" if has else "(none)"
    out["effective_port"] = row["port"] or DEFAULT_PORTS.get(row["security"], 0)
    return out


def list_all(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every setting, the system default first, with how many mailboxes use it."""
    rows = conn.execute(_LIST_SQL + " ORDER BY s.is_system DESC, s.name").fetchall()
    return [describe(r) for r in rows]


def show(conn: psycopg.Connection, ref: str | int) -> dict[str, Any]:
    row = _row(conn, ref)
    full = conn.execute(_LIST_SQL + " WHERE s.id = %s", (row["id"],)).fetchone()
    assert full is not None
    return describe(full)


def remove(conn: psycopg.Connection, ref: str | int) -> int:
    """Delete settings no active mailbox uses; removed mailboxes fall back to the system default."""
    row = _row(conn, ref)
    if row["is_system"]:
        users = conn.execute(
            "SELECT id, address FROM mailboxes WHERE removed_at IS NULL AND smtp_id IS NULL ORDER BY id"
        ).fetchall()
    else:
        users = conn.execute(
            "SELECT id, address FROM mailboxes WHERE removed_at IS NULL AND smtp_id = %s ORDER BY id",
            (row["id"],),
        ).fetchall()
    if users:
        names = ", ".join(f"{u['id']} ({u['address']})" for u in users)
        raise InvalidSetting({"smtp": f"still used by mailbox(es) {names}; point them at other"
                              " SMTP settings first (deskmail mailbox edit ID --smtp NAME)"})
    conn.execute("UPDATE mailboxes SET smtp_id = NULL WHERE smtp_id = %s", (row["id"],))
    conn.execute("DELETE FROM smtp_settings WHERE id = %s", (row["id"],))
    return int(row["id"])
