"""Mailboxes: the seed page's settings, validated in one place.

The CLI (and later the admin web and API) create and edit mailboxes only
through these functions, so every caller accepts the same values and reports
the same errors in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import psycopg

from shared.crypto import Keys

ACCOUNT_TYPES = ("imap", "pop3", "maildir")
SECURITY_TYPES = ("none", "starttls", "tls")
# The poll log (mailbox_polls): the fetcher keeps this many rows per mailbox,
# and the admin layer shows at most that many.
KEEP_POLLS = 100
DEFAULT_PORTS = {("imap", "tls"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143,
                 ("pop3", "tls"): 995, ("pop3", "starttls"): 110, ("pop3", "none"): 110}


class InvalidSetting(ValueError):
    """One or more fields are invalid; `errors` maps field name to a message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class Mailbox:
    id: int
    from_name: str
    address: str
    folder: str
    archive: bool
    archive_folder: str
    host: str
    username: str
    account_type: str
    port: int | None
    security: str
    allow_self_signed: bool
    category_id: int | None
    auto_reply: bool
    smtp_id: int | None
    enabled: bool
    poll_interval: int
    max_per_poll: int
    max_message_bytes: int
    password: str | None = None  # decrypted only when a connection needs it
    auth_method: str = "password"  # or "oauth2": signs in with `oauth` (shared/oauth2)
    oauth: Any = field(default=None, repr=False, compare=False)  # its TokenSource, set by shared.oauth2.login

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS.get((self.account_type, self.security), 0)

    @property
    def archives(self) -> bool:
        """Archive applies to IMAP (and the local Maildir source); POP3 always deletes."""
        return self.archive and self.account_type != "pop3"

    @classmethod
    def from_row(cls, row: dict[str, Any], keys: Keys | None = None) -> Mailbox:
        names = {f.name for f in fields(cls)} - {"password", "auth_method", "oauth"}
        mailbox = cls(**{k: row[k] for k in names}, auth_method=row.get("auth_method") or "password")
        if keys is not None:
            mailbox.password = keys.decrypt(row.get("password_enc"))
        return mailbox


EDITABLE = (
    "from_name", "address", "folder", "archive", "archive_folder", "host", "username",
    "account_type", "port", "security", "allow_self_signed", "category_id", "auto_reply",
    "smtp_id", "enabled", "poll_interval", "max_per_poll", "max_message_bytes",
)


def validate(values: dict[str, Any]) -> dict[str, str]:
    """Field -> message for every invalid value in a complete set of values."""
    errors: dict[str, str] = {}
    kind = values.get("account_type")
    if kind not in ACCOUNT_TYPES:
        errors["account_type"] = f"must be one of {', '.join(ACCOUNT_TYPES)}, not {kind!r}"
    if values.get("security") not in SECURITY_TYPES:
        errors["security"] = f"must be one of {', '.join(SECURITY_TYPES)}, not {values.get('security')!r}"
    port = values.get("port")
    if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
        errors["port"] = f"must be between 1 and 65535, not {port!r}"
    address = str(values.get("address") or "")
    if address.count("@") != 1 or any(c.isspace() or c in "<>,;\"" for c in address):
        errors["address"] = f"must be an email address like support@example.com, not {address!r}"
    for name in ("host", "username", "folder", "from_name"):
        if not str(values.get(name) or "").strip():
            errors[name] = "must not be empty"
    if "from_name" not in errors:
        # The account name is a template (placeholders such as the agent's name).
        from shared.templates import validate_from_name

        problems = validate_from_name(str(values["from_name"]))
        if problems:
            errors["from_name"] = "; ".join(str(p) for p in problems)
    if values.get("archive") and kind == "pop3":
        errors["archive"] = "archiving works with IMAP only; POP3 mailboxes delete imported mail"
    archive_folder = str(values.get("archive_folder") or "").strip()
    if values.get("archive") and not archive_folder:
        errors["archive_folder"] = "must not be empty when archive is on"
    elif values.get("archive") and archive_folder.upper() == str(values.get("folder") or "").strip().upper():
        # Moving mail into the folder it is imported from would import it again, forever.
        errors["archive_folder"] = "must differ from the folder mail is imported from"
    if kind == "pop3" and str(values.get("folder") or "").strip().upper() != "INBOX":
        errors["folder"] = "POP3 has no folders; leave it at INBOX (use IMAP to import from another folder)"
    for name in ("poll_interval", "max_per_poll", "max_message_bytes"):
        value = values.get(name)
        if not isinstance(value, int) or value <= 0:
            errors[name] = f"must be a positive whole number, not {value!r}"
    return errors


DEFAULTS: dict[str, Any] = {
    "folder": "INBOX", "archive": True, "archive_folder": "deskmail_archive", "port": None,
    "security": "tls", "allow_self_signed": False, "category_id": None, "auto_reply": False,
    "smtp_id": None, "enabled": True, "poll_interval": 60, "max_per_poll": 500,
    "max_message_bytes": 25 * 1024 * 1024,
}


def create(conn: psycopg.Connection, keys: Keys, values: dict[str, Any], password: str | None) -> int:
    full = {**DEFAULTS, **values}
    if full.get("account_type") == "pop3" and "archive" not in values:
        full["archive"] = False
    errors = validate(full)
    if errors:
        raise InvalidSetting(errors)
    cols = [k for k in EDITABLE if k in full]
    row = conn.execute(
        f"INSERT INTO mailboxes ({', '.join(cols)}, password_enc) "
        f"VALUES ({', '.join(['%s'] * len(cols))}, %s) RETURNING id",
        [full[c] for c in cols] + [keys.encrypt(password)],
    ).fetchone()
    assert row is not None
    return int(row["id"])


def update(conn: psycopg.Connection, keys: Keys, mailbox_id: int, changes: dict[str, Any],
           password: str | None = None) -> None:
    current = conn.execute("SELECT * FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
    if current is None:
        raise LookupError(f"no mailbox {mailbox_id}")
    full = {**{k: current[k] for k in EDITABLE}, **changes}
    errors = validate(full)
    if errors:
        raise InvalidSetting(errors)
    cols = [k for k in EDITABLE if k in changes]
    sets = [f"{c} = %s" for c in cols]
    params: list[Any] = [changes[c] for c in cols]
    if password is not None:
        sets.append("password_enc = %s")
        params.append(keys.encrypt(password))
    if sets:
        conn.execute(f"UPDATE mailboxes SET {', '.join(sets)} WHERE id = %s", [*params, mailbox_id])


def get(conn: psycopg.Connection, mailbox_id: int, keys: Keys | None = None) -> Mailbox:
    row = conn.execute("SELECT * FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
    if row is None:
        raise LookupError(f"no mailbox {mailbox_id}")
    return Mailbox.from_row(row, keys)


def own_addresses(conn: psycopg.Connection) -> frozenset[str]:
    return frozenset(r["a"] for r in conn.execute("SELECT lower(address) AS a FROM mailboxes"))
