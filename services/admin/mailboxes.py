"""Mailboxes: the seed page's settings, for the CLI, the JSON API and the admin pages alike.

shared.mailboxes validates a complete set of typed values; this module sits
in front of it for the three front ends:

- `coerce` turns what a front end received (form strings, JSON values,
  command-line text) into typed values. It converts only what is clearly
  meant ("143" -> 143, "on" -> True) and leaves anything else as it came, so
  that `shared.mailboxes.validate` words the error, once, for everybody.
- `save` adds the checks that need the database or the templates: the From
  name's placeholders, the category exists (a name is found or created), the
  address is not already another mailbox's (Conflict), the OAuth2 settings
  (shared/oauth2/owners.py), and the SMTP section (services/admin/mailbox_smtp.py).
- `view` and `list_all` show a mailbox with its status: never the password,
  only whether one is set.

Testing values that are not saved yet (Test connection, List folders, Send
test mail) is services/admin/probes.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from services.admin import categories, form_values, mailbox_smtp
from services.admin.errors import Conflict, InvalidSetting, NotFound
from shared import mailboxes
from shared.crypto import Keys
from shared.mailboxes import DEFAULT_PORTS, EDITABLE, KEEP_POLLS
from shared.oauth2 import owners

__all__ = ["DEFAULT_PORTS", "KEEP_POLLS", "OAUTH_FIELDS", "coerce", "list_all", "recent_polls", "remove", "save",
           "set_enabled", "view"]

INT_FIELDS = ("port", "poll_interval", "max_per_poll", "max_message_bytes", "category_id")
NULLABLE = ("port", "category_id")
BOOL_FIELDS = ("archive", "allow_self_signed", "auto_reply", "enabled")
LOWERED = ("account_type", "security")
REQUIRED = ("from_name", "address", "host", "username", "account_type")
SETTINGS = tuple(k for k in EDITABLE if k != "smtp_id")  # the SMTP choice is the section's
# The sign-in fields (shared/oauth2/owners.py), the same for a mailbox and its SMTP section (smtp_ prefixed).
OAUTH_FIELDS = (owners.METHOD, *owners.FIELDS, owners.SECRET, owners.REFRESH)
WRITE_ONLY = ("password", owners.SECRET, owners.REFRESH)


def coerce(raw: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(typed values, password) from a front end's input; password None keeps the saved one."""
    return form_values.coerce(raw, accepted=SETTINGS, ints=INT_FIELDS, nullable=NULLABLE,
                              bools=BOOL_FIELDS, lowered=LOWERED)


def _category(conn: psycopg.Connection, values: dict[str, Any]) -> dict[str, str]:
    """The category by id, or by name (found or created: the CLI's --category NAME)."""
    value = values.get("category_id")
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        if isinstance(value, int) and not conn.execute("SELECT 1 FROM categories WHERE id = %s",
                                                       (value,)).fetchone():
            return {"category_id": f"no category with id {value}"}
        return {}
    if isinstance(value, str) and value.strip():
        try:
            values["category_id"] = categories.ensure(conn, value)
        except InvalidSetting as exc:
            return {"category_id": exc.errors["name"]}
        return {}
    return {"category_id": f"must be a category's id or name, or empty, not {value!r}"}


def _check_address(conn: psycopg.Connection, address: Any, mailbox_id: int | None) -> None:
    if not isinstance(address, str):
        return
    row = conn.execute(
        "SELECT id FROM mailboxes WHERE lower(address) = lower(%s) AND removed_at IS NULL"
        " AND id IS DISTINCT FROM %s", (address, mailbox_id)).fetchone()
    if row is not None:
        raise Conflict(f"mailbox {row['id']} already uses the address {address}", field="address")


def save(conn: psycopg.Connection, keys: Keys, raw: Mapping[str, Any], mailbox_id: int | None = None) -> int:
    """Create (mailbox_id None) or update a mailbox from a front end's input; its id.

    Every problem (the settings, their OAuth2 sign-in, the SMTP section as
    smtp_<field>) comes back in one InvalidSetting; nothing is saved then.
    """
    current = {} if mailbox_id is None else row(conn, mailbox_id)
    raw, section = mailbox_smtp.split(raw)
    raw, oauth, errors = owners.split(raw)
    try:
        values, password = coerce(raw)
    except InvalidSetting as exc:  # go on without those fields, so one answer lists every problem
        errors.update(exc.errors)
        values, password = coerce({k: v for k, v in raw.items() if k not in exc.errors})
    if mailbox_id is None:
        errors.update({n: "is required" for n in REQUIRED if n not in values and n not in errors})
    errors.update(_category(conn, values))
    full = {**mailboxes.DEFAULTS, **{k: current[k] for k in EDITABLE if k in current}, **values}
    if mailbox_id is None and full.get("account_type") == "pop3" and "archive" not in values:
        full["archive"] = values["archive"] = False
    errors = {**mailboxes.validate(full), **errors}
    errors = {**owners.check(conn, "mailboxes", mailbox_id, oauth, full.get("username")), **errors}
    address = str(full.get("address") or "mailbox")
    with conn.transaction():  # a savepoint: nothing of a refused form stays
        own = False
        if section is not None:
            try:
                values["smtp_id"], own = mailbox_smtp.apply(conn, keys, mailbox_id, address, section)
            except InvalidSetting as exc:
                errors.update(exc.errors)
        if errors:
            raise InvalidSetting(errors)
        _check_address(conn, values.get("address"), mailbox_id)
        try:
            with conn.transaction():
                saved_id = _write(conn, keys, values, password, oauth, mailbox_id, current)
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"another mailbox already uses the address {values.get('address')}",
                           field="address") from None
        if own and values.get("smtp_id") is not None:
            mailbox_smtp.claim(conn, values["smtp_id"], saved_id)
        return saved_id


def _write(conn: psycopg.Connection, keys: Keys, values: dict[str, Any], password: str | None,
           oauth: owners.Given, mailbox_id: int | None, current: Mapping[str, Any]) -> int:
    if mailbox_id is None:
        new_id = mailboxes.create(conn, keys, values, password)
        owners.apply(conn, keys, "mailboxes", new_id, oauth)
        return new_id
    mailboxes.update(conn, keys, mailbox_id, values, password)
    signs_in_anew = not oauth.empty and not owners.same_as_saved(conn, "mailboxes", mailbox_id, oauth)
    owners.apply(conn, keys, "mailboxes", mailbox_id, oauth)
    if (password is not None or signs_in_anew
            or any(values.get(k) != current.get(k) for k in CONNECTION if k in values)):
        _let_go(conn, mailbox_id)
    return mailbox_id


CONNECTION = ("host", "port", "security", "username", "account_type", "folder", "archive", "archive_folder",
              "allow_self_signed")
# How long a fetcher that holds the mailbox may take to notice that its lease
# was taken back: it renews at least once per poll interval (capped at a
# third of the 120 s lease) and within each poll.
LET_GO_GRACE = 5


def _let_go(conn: psycopg.Connection, mailbox_id: int) -> None:
    """Make a fetcher still connected with the old settings let go (it may idle for minutes).

    Its next lease renewal fails, so it closes the connection; no other fetcher
    takes the mailbox before the grace period is over (invariant 5: one
    connection at a time). The next poll connects with the new settings.
    """
    conn.execute(
        "UPDATE mailboxes SET lease_owner = 'settings-changed',"
        " lease_until = now() + make_interval(secs => least(poll_interval, 40) + %s)"
        " WHERE id = %s AND lease_owner IS NOT NULL AND lease_until > now()",
        (LET_GO_GRACE, mailbox_id))


def row(conn: psycopg.Connection, mailbox_id: int) -> dict[str, Any]:
    """The saved row of a mailbox that is not removed (NotFound otherwise); for this layer only."""
    found = conn.execute("SELECT * FROM mailboxes WHERE id = %s AND removed_at IS NULL",
                         (mailbox_id,)).fetchone()
    if found is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return found


STATUS = ("last_poll_at", "last_success_at", "last_error", "last_error_at", "failures_in_row")

_LIST = """
SELECT m.*, c.name AS category,
       coalesce(g.needs_reconnect, false) AND m.auth_method = 'oauth2' AS needs_reconnect,
       (SELECT count(*) FROM raw_messages r
         WHERE r.mailbox_id = m.id AND r.received_at > now() - interval '24 hours') AS mail_24h,
{oauth_columns}
FROM mailboxes m LEFT JOIN categories c ON c.id = m.category_id
     LEFT JOIN oauth_grants g ON g.id = m.oauth_grant_id
WHERE m.removed_at IS NULL AND (%(id)s::bigint IS NULL OR m.id = %(id)s)
  AND (%(address)s::text IS NULL OR lower(m.address) = lower(%(address)s))
ORDER BY m.id
""".replace("{oauth_columns}", owners.COLUMNS)


def _public(found: dict[str, Any]) -> dict[str, Any]:
    """A mailbox as front ends show it: settings, status, never the password."""
    out = {k: found[k] for k in ("id", *EDITABLE, *STATUS, "category", "mail_24h", "created_at")}
    out["has_password"] = found["password_enc"] is not None
    out["auth_method"] = found.get("auth_method", "password")
    out["needs_reconnect"] = bool(found.get("needs_reconnect"))  # OAuth2: Connect again
    out.update(owners.public(found))  # the OAuth2 settings, never the client secret or a token
    out["effective_port"] = found["port"] or DEFAULT_PORTS.get((found["account_type"], found["security"]))
    out["health"] = health(found)
    return out


def health(found: Mapping[str, Any]) -> str:
    """ok, failing, disabled or new: what the list's colour says."""
    if not found["enabled"]:
        return "disabled"
    if found["failures_in_row"]:
        return "failing"
    return "ok" if found["last_success_at"] else "new"


def list_all(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [_public(r) for r in conn.execute(_LIST, {"id": None, "address": None})]


def view(conn: psycopg.Connection, mailbox_id: int) -> dict[str, Any]:
    """One mailbox with its status and how it sends (`smtp`: services/admin/mailbox_smtp.view)."""
    found = conn.execute(_LIST, {"id": mailbox_id, "address": None}).fetchone()
    if found is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    out = _public(found)
    out["smtp"] = mailbox_smtp.view(conn, mailbox_id, found["smtp_id"])
    return out


def find_by_address(conn: psycopg.Connection, address: str) -> dict[str, Any] | None:
    found = conn.execute(_LIST, {"id": None, "address": address}).fetchone()
    return None if found is None else _public(found)


def set_enabled(conn: psycopg.Connection, mailbox_id: int, enabled: bool) -> None:
    """Start or stop polling; a removed mailbox stays removed (NotFound)."""
    done = conn.execute("UPDATE mailboxes SET enabled = %s WHERE id = %s AND removed_at IS NULL"
                        " RETURNING id", (enabled, mailbox_id)).fetchone()
    if done is None:
        raise NotFound(f"no mailbox {mailbox_id}")


def remove(conn: psycopg.Connection, mailbox_id: int) -> str:
    """Stop polling and hide the mailbox; its mail and requests stay. Its address."""
    done = conn.execute("UPDATE mailboxes SET enabled = false, removed_at = now()"
                        " WHERE id = %s AND removed_at IS NULL RETURNING address", (mailbox_id,)).fetchone()
    if done is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return str(done["address"])


POLL_COLUMNS = ("started_at", "finished_at", "outcome", "fetched", "removed", "step", "error")


def recent_polls(conn: psycopg.Connection, mailbox_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The mailbox's recent polls from the fetcher's poll log, newest first (NotFound: no such mailbox).

    Each: started_at, finished_at, outcome (ok, partial or failed), fetched,
    removed, step (where a failed poll stopped) and error.
    """
    row(conn, mailbox_id)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= KEEP_POLLS:
        raise InvalidSetting({"limit": f"must be between 1 and {KEEP_POLLS}, not {limit!r}"})
    return conn.execute(
        f"SELECT {', '.join(POLL_COLUMNS)} FROM mailbox_polls WHERE mailbox_id = %s"
        " ORDER BY finished_at DESC, id DESC LIMIT %s", (mailbox_id, limit)).fetchall()


def preview_from_name(from_name: Any) -> dict[str, Any]:
    """The account name as a staff reply and as an auto-reply would show it, or why it cannot be."""
    from shared import templates

    if not isinstance(from_name, str) or not from_name.strip():
        return {"staff_reply": None, "auto_reply": None, "error": "must not be empty"}
    problems = templates.validate_from_name(from_name)
    if problems:
        return {"staff_reply": None, "auto_reply": None, "error": str(problems[0])}
    return {kind: templates.render_from_name(from_name, templates.sample_context(kind))
            for kind in ("staff_reply", "auto_reply")} | {"error": None}
