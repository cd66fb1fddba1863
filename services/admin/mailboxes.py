"""Managing mailboxes for the CLI, the JSON API and the admin pages alike.

shared.mailboxes validates a complete set of typed values; this module sits
in front of it for the three front ends, so that each accepts the same input
and reports the same errors in the same words:

- `coerce` turns what a front end received (form strings, JSON values,
  command-line text) into typed values. It converts only what is clearly
  meant ("143" -> 143, "on" -> True) and leaves anything else as it came, so
  that `shared.mailboxes.validate` words the error, once, for everybody.
- `save` adds the checks that need the database or the templates: the From
  name's placeholders, the category and SMTP settings exist, the address is
  not already another mailbox's (Conflict, HTTP 409).
- `probe` and `folders` test values that are not saved yet (the form's
  "Test connection" and "List folders"); a blank password means "the one
  already saved".

The password is write-only: `view` reports only whether one is set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from services.admin import form_values
from services.admin.errors import Conflict, NotFound
from shared import mailboxes
from shared.crypto import Keys
from shared.mailboxes import DEFAULT_PORTS, EDITABLE, KEEP_POLLS, InvalidSetting, Mailbox
from shared.oauth2 import owners

INT_FIELDS = ("port", "poll_interval", "max_per_poll", "max_message_bytes", "category_id", "smtp_id")
NULLABLE = ("port", "category_id", "smtp_id")
BOOL_FIELDS = ("archive", "allow_self_signed", "auto_reply", "enabled")
LOWERED = ("account_type", "security")
REQUIRED = ("from_name", "address", "host", "username", "account_type")


def coerce(raw: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(typed values, password) from a front end's input; password None keeps the saved one."""
    return form_values.coerce(raw, accepted=EDITABLE, ints=INT_FIELDS, nullable=NULLABLE,
                              bools=BOOL_FIELDS, lowered=LOWERED)


def _check_references(conn: psycopg.Connection, values: dict[str, Any]) -> dict[str, str]:
    from shared.templates import validate_from_name  # the replier's sandbox rules

    errors: dict[str, str] = {}
    for name in ("category_id", "smtp_id"):
        if name in values and values[name] is not None and not isinstance(values[name], int):
            errors[name] = f"must be an id (a whole number) or empty, not {values[name]!r}"
    category = values.get("category_id")
    if isinstance(category, int) and not conn.execute(
            "SELECT 1 FROM categories WHERE id = %s", (category,)).fetchone():
        errors["category_id"] = f"no category with id {category}"
    smtp = values.get("smtp_id")
    if isinstance(smtp, int) and not conn.execute(
            "SELECT 1 FROM smtp_settings WHERE id = %s AND NOT is_system", (smtp,)).fetchone():
        errors["smtp_id"] = f"no custom SMTP settings with id {smtp}"
    from_name = values.get("from_name")
    if isinstance(from_name, str) and from_name.strip():
        problems = validate_from_name(from_name)
        if problems:
            errors["from_name"] = str(problems[0])
    return errors


def _check_address(conn: psycopg.Connection, address: Any, mailbox_id: int | None) -> None:
    if not isinstance(address, str):
        return
    row = conn.execute(
        "SELECT id FROM mailboxes WHERE lower(address) = lower(%s) AND removed_at IS NULL"
        " AND id IS DISTINCT FROM %s", (address, mailbox_id)).fetchone()
    if row is not None:
        raise Conflict(f"mailbox {row['id']} already uses the address {address}", field="address")


def save(conn: psycopg.Connection, keys: Keys, raw: Mapping[str, Any],
         mailbox_id: int | None = None) -> int:
    """Create (mailbox_id None) or update a mailbox from a front end's input; its id."""
    raw, oauth, errors = owners.split(raw)
    try:
        values, password = coerce(raw)
    except InvalidSetting as exc:  # go on without those fields, so one answer lists every problem
        errors.update(exc.errors)
        values, password = coerce({k: v for k, v in raw.items() if k not in exc.errors})
    if mailbox_id is None:
        errors.update({n: "is required" for n in REQUIRED if n not in values and n not in errors})
    else:
        _existing(conn, mailbox_id)
    errors.update(_check_references(conn, values))
    # Validate the whole record first so that one answer lists every problem.
    current = {} if mailbox_id is None else _row(conn, mailbox_id)
    full = {**mailboxes.DEFAULTS, **{k: current[k] for k in EDITABLE if k in current}, **values}
    if mailbox_id is None and full.get("account_type") == "pop3" and "archive" not in values:
        full["archive"] = False
    errors = {**mailboxes.validate(full), **errors}
    errors = {**owners.check(conn, "mailboxes", mailbox_id, oauth, full.get("username")), **errors}
    if errors:
        raise InvalidSetting(errors)
    _check_address(conn, values.get("address"), mailbox_id)
    try:
        with conn.transaction():
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
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"another mailbox already uses the address {values.get('address')}",
                       field="address") from None


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


def _row(conn: psycopg.Connection, mailbox_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM mailboxes WHERE id = %s AND removed_at IS NULL",
                       (mailbox_id,)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return row


def _existing(conn: psycopg.Connection, mailbox_id: int) -> None:
    _row(conn, mailbox_id)


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
ORDER BY m.id
""".replace("{oauth_columns}", owners.COLUMNS)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A mailbox as front ends show it: settings, status, never the password."""
    out = {k: row[k] for k in ("id", *EDITABLE, *STATUS, "category", "mail_24h", "created_at")}
    out["has_password"] = row["password_enc"] is not None
    out["auth_method"] = row.get("auth_method", "password")
    out["needs_reconnect"] = bool(row.get("needs_reconnect"))  # OAuth2: Connect again
    out.update(owners.public(row))  # the OAuth2 settings, never the client secret or a token
    out["effective_port"] = row["port"] or DEFAULT_PORTS.get((row["account_type"], row["security"]))
    out["health"] = health(row)
    return out


def health(row: Mapping[str, Any]) -> str:
    """ok, failing, disabled or new: what the list's colour says."""
    if not row["enabled"]:
        return "disabled"
    if row["failures_in_row"]:
        return "failing"
    return "ok" if row["last_success_at"] else "new"


def list_all(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [_public(r) for r in conn.execute(_LIST, {"id": None})]


def view(conn: psycopg.Connection, mailbox_id: int) -> dict[str, Any]:
    row = conn.execute(_LIST, {"id": mailbox_id}).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return _public(row)


def set_enabled(conn: psycopg.Connection, mailbox_id: int, enabled: bool) -> None:
    row = conn.execute("UPDATE mailboxes SET enabled = %s WHERE id = %s AND removed_at IS NULL"
                       " RETURNING id", (enabled, mailbox_id)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")


def remove(conn: psycopg.Connection, mailbox_id: int) -> None:
    """Stop polling and hide the mailbox; its mail and requests stay."""
    row = conn.execute("UPDATE mailboxes SET enabled = false, removed_at = now()"
                       " WHERE id = %s AND removed_at IS NULL RETURNING id", (mailbox_id,)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")


POLL_COLUMNS = ("started_at", "finished_at", "outcome", "fetched", "removed", "step", "error")


def recent_polls(conn: psycopg.Connection, mailbox_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The mailbox's recent polls from the fetcher's poll log, newest first (NotFound: no such mailbox).

    Each: started_at, finished_at, outcome (ok, partial or failed), fetched,
    removed, step (where a failed poll stopped) and error.
    """
    _existing(conn, mailbox_id)
    limit = max(1, min(int(limit), KEEP_POLLS))
    return conn.execute(
        f"SELECT {', '.join(POLL_COLUMNS)} FROM mailbox_polls WHERE mailbox_id = %s"
        " ORDER BY finished_at DESC, id DESC LIMIT %s", (mailbox_id, limit)).fetchall()


# ---- testing values that may not be saved -----------------------------------


@dataclass(frozen=True)
class Step:
    step: str  # dns, tcp, tls, starttls, login, folder, archive_folder, smtp_login, ...
    ok: bool
    detail: str


def unsaved(conn: psycopg.Connection, keys: Keys, raw: Mapping[str, Any],
            mailbox_id: int | None = None) -> Mailbox:
    """A Mailbox from the values on the screen (over the saved ones when editing).

    Its OAuth2 sign-in, if any, is attached by `attach_oauth` (it needs the pool).
    """
    raw, oauth, _ = owners.split(raw)
    values, password = coerce(raw)
    base: dict[str, Any] = dict(mailboxes.DEFAULTS)
    saved_password = None
    if mailbox_id is not None:
        row = _row(conn, mailbox_id)
        base.update({k: row[k] for k in EDITABLE})
        saved_password = keys.decrypt(row["password_enc"])
    full = {**base, **values}
    errors = {n: "is required" for n in REQUIRED if not full.get(n)}
    errors = {**errors, **mailboxes.validate(full)}
    # Only what a connection needs must be valid to test it (and the SMTP choice, for its login).
    errors = {k: v for k, v in errors.items()
              if k in ("account_type", "security", "port", "host", "username", "folder", "archive_folder")}
    smtp = full.get("smtp_id")
    if smtp is not None and (not isinstance(smtp, int) or isinstance(smtp, bool)):
        errors["smtp_id"] = f"must be an id (a whole number) or empty, not {smtp!r}"
    if errors:
        raise InvalidSetting(errors)
    mailbox = Mailbox(id=mailbox_id or 0, **{k: full[k] for k in EDITABLE})
    mailbox.password = password if password is not None else saved_password
    mailbox.auth_method = oauth.method or (row["auth_method"] if mailbox_id is not None else "password")
    return mailbox


NOT_SAVED_YET = ("these OAuth2 settings are not saved yet: save them (and Connect) first;"
                 " a test signs in with the saved OAuth2 settings")


def attach_oauth(pool: Any, keys: Keys, mailbox: Mailbox, raw: Mapping[str, Any], mailbox_id: int | None) -> None:
    """Give a mailbox that signs in with OAuth2 its TokenSource, so a test signs in as a poll does.

    Tokens come only from the saved grant: a test never spends a pasted
    refresh token or a sign-in that the form has not saved.
    """
    from shared.oauth2 import login as oauth_login

    if mailbox.auth_method != "oauth2":
        return
    _, given, _ = owners.split(raw)
    with pool.connection() as conn:
        if mailbox_id is None or not owners.same_as_saved(conn, "mailboxes", mailbox_id, given):
            raise InvalidSetting({"auth_method": NOT_SAVED_YET})
        row = _row(conn, mailbox_id)
    mailbox.oauth = oauth_login.source_for(pool, keys, {**row, "auth_method": "oauth2", "username": mailbox.username},
                                           f"mailbox connect {mailbox_id}")


def probe(mailbox: Mailbox, smtp: Any | None = None) -> Iterator[Step]:
    """Connect, log in, open the folder, check the archive folder; then the SMTP login if given.

    Stops at the first failing step, which names what failed. SMTP steps are
    prefixed "smtp_" (smtp_dns, smtp_tcp, smtp_tls, smtp_starttls, smtp_login).
    """
    from shared.mailserver.probe import check_mailbox

    for step, ok, detail in check_mailbox(mailbox):
        yield Step(step, ok, detail)
        if not ok:
            return
    if smtp is not None:
        yield from smtp_steps(smtp)


def smtp_steps(smtp: Any) -> list[Step]:
    """Open an SMTP session with the settings and log in, step by step; nothing is sent."""
    from shared.mailserver.smtp import check

    return [Step(f"smtp_{step}", ok, detail) for step, ok, detail in check(smtp)]


def folders(mailbox: Mailbox) -> dict[str, Any]:
    """{"ok", "folders", "step", "detail"}: the folders of an IMAP account, or the step that failed.

    POP3 has only its inbox.
    """
    from shared.mailserver.connect import open_remote
    from shared.mailserver.remote import RemoteError

    if mailbox.account_type != "imap":
        return {"ok": True, "folders": [mailbox.folder], "step": None, "detail": None}
    try:
        remote = open_remote(mailbox)
    except RemoteError as exc:
        return {"ok": False, "folders": [], "step": exc.step, "detail": str(exc).split(": ", 1)[-1]}
    try:
        return {"ok": True, "folders": sorted(remote.list_folders()),  # type: ignore[attr-defined]
                "step": None, "detail": None}
    except RemoteError as exc:
        return {"ok": False, "folders": [], "step": exc.step, "detail": str(exc).split(": ", 1)[-1]}
    finally:
        remote.close()


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


# ---- the mailbox form's own SMTP fields ---------------------------------------

SMTP_FIELDS = ("host", "port", "security", "username", "allow_self_signed")


def _smtp_values(smtp_raw: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    return form_values.coerce(smtp_raw, accepted=SMTP_FIELDS, ints=("port",), nullable=("port", "username"),
                              bools=("allow_self_signed",), lowered=("security",))


def _prefixed(errors: Mapping[str, str]) -> dict[str, str]:
    return {f"smtp_{k}": v for k, v in errors.items()}


def _custom_smtp(conn: psycopg.Connection, keys: Keys, smtp_raw: Mapping[str, Any],
                 current_id: int | None, address: str) -> int:
    from shared import smtp_settings

    smtp_raw, oauth, errors = owners.split(smtp_raw)
    if errors:
        raise InvalidSetting(errors)
    values, password = _smtp_values(smtp_raw)
    if current_id is not None:
        smtp_id = smtp_settings.update(conn, keys, current_id, values, password)
    else:
        name, n = f"{address} (mailbox)", 1
        while smtp_settings.find(conn, name) is not None:
            n += 1
            name = f"{address} (mailbox {n})"
        smtp_id = smtp_settings.create(conn, keys, {**values, "name": name}, password)
    owners.apply(conn, keys, "smtp_settings", smtp_id, oauth)  # the same checks as `deskmail smtp edit`
    return smtp_id


def save_with_smtp(conn: psycopg.Connection, keys: Keys, raw: Mapping[str, Any],
                   smtp_raw: Mapping[str, Any] | None, mailbox_id: int | None = None) -> int:
    """`save`, plus the form's "custom SMTP settings" fields (None: what raw's smtp_id says).

    The custom settings are the mailbox's own row in smtp_settings, created
    on first save and changed afterwards. Errors of both come back together,
    the SMTP ones as smtp_<field>.
    """
    if smtp_raw is None:
        return save(conn, keys, raw, mailbox_id)
    current = _row(conn, mailbox_id) if mailbox_id is not None else None
    address = str(raw.get("address") or (current or {}).get("address") or "mailbox")
    errors: dict[str, str] = {}
    with conn.transaction():  # a savepoint: nothing of a refused form stays
        smtp_id = None
        try:
            smtp_id = _custom_smtp(conn, keys, smtp_raw, current["smtp_id"] if current else None, address)
        except InvalidSetting as exc:
            errors.update(_prefixed(exc.errors))
        except LookupError:
            smtp_id = _custom_smtp(conn, keys, smtp_raw, None, address)
        saved = None
        try:
            saved = save(conn, keys, {**raw, "smtp_id": smtp_id if smtp_id is not None else ""}, mailbox_id)
        except InvalidSetting as exc:
            errors = {**exc.errors, **errors}
        if errors or saved is None:
            raise InvalidSetting(errors)
        return saved


def send_test_mail_from(pool: Any, keys: Keys, raw: Mapping[str, Any], smtp_raw: Mapping[str, Any] | None,
                        mailbox_id: int | None, to: str) -> dict[str, Any]:
    """Send a short test mail with the values on the screen; the SMTP steps and the send as steps."""
    import dataclasses
    from email.message import EmailMessage
    from email.utils import formataddr, make_msgid

    from shared import smtp_settings, templates
    from shared.mailserver.smtp import open_session
    from shared.oauth2 import login as oauth_login

    with pool.connection() as conn:
        mailbox = unsaved(conn, keys, raw, mailbox_id)
        values, _ = coerce(raw)
        from_name = values.get("from_name") or (view(conn, mailbox_id)["from_name"] if mailbox_id else "")
        address = values.get("address") or (view(conn, mailbox_id)["address"] if mailbox_id else "")
        if smtp_raw is not None:
            smtp_raw, oauth, _ = owners.split(smtp_raw)
            smtp_values, password = _smtp_values(smtp_raw)
            saved = smtp_settings.find(conn, mailbox.smtp_id) if mailbox.smtp_id else None
            base = {k: saved[k] for k in SMTP_FIELDS} if saved else dict(smtp_settings.DEFAULTS)
            full = {**base, **smtp_values}
            problems = smtp_settings.validate({**full, "name": "x"}, is_system=False)
            if problems:
                raise InvalidSetting(_prefixed(problems))
            smtp = smtp_settings.SmtpSettings(
                id=0, name="test", is_system=False, host=full["host"], port=full["port"],
                security=full["security"], username=full["username"],
                password=password if password is not None else (keys.decrypt(saved["password_enc"]) if saved else None),
                allow_self_signed=bool(full["allow_self_signed"]),
                auth_method=oauth.method or (saved["auth_method"] if saved else "password"))
            if smtp.auth_method == "oauth2":  # only the saved sign-in: a test never spends a pasted token
                if saved is None or not owners.same_as_saved(conn, "smtp_settings", saved["id"], oauth):
                    raise InvalidSetting({"smtp_auth_method": NOT_SAVED_YET})
                smtp = dataclasses.replace(smtp, id=saved["id"], name=saved["name"])
        else:
            smtp = smtp_settings.for_mailbox(conn, keys, mailbox.smtp_id)
        smtp = oauth_login.attach_smtp(pool, keys, conn, smtp)
    to = (to or address).strip()
    if smtp is None:
        raise InvalidSetting({"smtp_id": "no SMTP settings: set the system default first (Settings, SMTP)"})
    if to.count("@") != 1:
        raise InvalidSetting({"test_to": f"must be an email address, not {to!r}"})
    errors = {} if not from_name else {p.part: str(p) for p in templates.validate_from_name(from_name)}
    if errors:
        raise InvalidSetting(errors)
    shown = templates.render_from_name(from_name, templates.sample_context("staff_reply")) if from_name else ""
    message = EmailMessage()
    message["From"] = formataddr((shown, address))
    message["To"] = to
    message["Subject"] = "Deskmail test mail"
    message["Message-ID"] = make_msgid(domain=address.rsplit("@", 1)[-1] or None)
    message["Auto-Submitted"] = "auto-generated"  # never answered automatically (RFC 3834)
    message.set_content("This is a test mail from Deskmail's mailbox settings. Nothing to do.\n")
    steps = smtp_steps(smtp)
    if all(s.ok for s in steps):
        try:
            session = open_session(smtp)
            try:
                session.send_message(message, from_addr=address, to_addrs=[to])
            finally:
                session.quit()
            steps.append(Step("smtp_send", True, f"test mail sent to {to}"))
        except Exception as exc:  # noqa: BLE001 - the server's answer is what to show
            steps.append(Step("smtp_send", False, f"sending to {to} failed: {exc}"))
    return {"ok": all(s.ok for s in steps), "steps": [s.__dict__ for s in steps]}
