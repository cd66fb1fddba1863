"""Trying settings against the real servers before (or without) saving them.

    test_mailbox    connect, TLS, log in, open the folder, check the archive folder; then log in to
                    the SMTP server the SMTP section names (steps smtp_connect, smtp_login, ...)
    list_folders    the folders of an IMAP account
    test_smtp       log in to the system default or named SMTP settings, changed by the given values
    send_test_mail  log in to the section's SMTP server and send a short mail

Each takes the values on the screen (`raw`, as services/admin/mailboxes.save
takes them, SMTP section included) over the saved ones when an id is given;
a blank password means the saved one, and OAuth2 signs in only with saved
settings (a test never spends a pasted token). Only what a connection needs
must be valid: no account name, no address. Nothing is saved.

This is the one module of the admin layer that talks to mail servers,
through shared/mailserver (the same connection code the fetcher and the
replier use).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any

import psycopg

from services.admin import mailbox_smtp, mailboxes
from services.admin import smtp as smtp_admin
from services.admin.errors import InvalidSetting
from shared import mailboxes as mailbox_rules
from shared import smtp_settings
from shared.crypto import Keys
from shared.mailboxes import EDITABLE, Mailbox
from shared.oauth2 import owners

CONNECTION_FIELDS = ("account_type", "security", "port", "host", "username", "folder", "archive_folder")
NEEDED = ("host", "username", "account_type")
NOT_SAVED_YET = mailbox_smtp.NOT_SAVED_YET


@dataclass(frozen=True)
class Step:
    step: str  # dns, tcp, tls, starttls, connect, login, folder, archive_folder, smtp_login, smtp_send, ...
    ok: bool
    detail: str


def result(steps: list[Step]) -> dict[str, Any]:
    return {"ok": all(s.ok for s in steps), "steps": [dataclasses.asdict(s) for s in steps]}


def unsaved_mailbox(conn: psycopg.Connection, keys: Keys, raw: Mapping[str, Any],
                    mailbox_id: int | None = None) -> Mailbox:
    """A Mailbox from the values on the screen over the saved ones (its OAuth2 sign-in: `_sign_in`)."""
    raw, _ = mailbox_smtp.split(raw)
    raw, oauth, _ = owners.split(raw)
    values, password = mailboxes.coerce(raw)
    base: dict[str, Any] = {**mailbox_rules.DEFAULTS, "from_name": "", "address": ""}
    saved_password = None
    saved = None
    if mailbox_id is not None:
        saved = mailboxes.row(conn, mailbox_id)
        base.update({k: saved[k] for k in EDITABLE})
        saved_password = keys.decrypt(saved["password_enc"])
    full = {**base, **values}
    errors = {n: "is required" for n in NEEDED if not full.get(n)}
    errors = {**{k: v for k, v in mailbox_rules.validate(full).items() if k in CONNECTION_FIELDS}, **errors}
    if errors:
        raise InvalidSetting(errors)
    mailbox = Mailbox(id=mailbox_id or 0, **{k: full.get(k) for k in EDITABLE})
    mailbox.password = password if password is not None else saved_password
    mailbox.auth_method = oauth.method or (saved["auth_method"] if saved else "password")
    return mailbox


def _sign_in(pool: Any, keys: Keys, mailbox: Mailbox, raw: Mapping[str, Any], mailbox_id: int | None) -> None:
    """Give a mailbox that signs in with OAuth2 its TokenSource, so a test signs in as a poll does."""
    from shared.oauth2 import login as oauth_login

    if mailbox.auth_method != "oauth2":
        return
    _, given, _ = owners.split(raw)
    with pool.connection() as conn:
        if mailbox_id is None or not owners.same_as_saved(conn, "mailboxes", mailbox_id, given):
            raise InvalidSetting({"auth_method": NOT_SAVED_YET})
        saved = mailboxes.row(conn, mailbox_id)
    mailbox.oauth = oauth_login.source_for(pool, keys, {**saved, "auth_method": "oauth2",
                                                        "username": mailbox.username},
                                           f"mailbox connect {mailbox_id}")


def _smtp(pool: Any, keys: Keys, conn: psycopg.Connection, raw: Mapping[str, Any],
          mailbox_id: int | None) -> smtp_settings.SmtpSettings | None:
    from shared.oauth2 import login as oauth_login

    _, section = mailbox_smtp.split(raw)
    found = mailbox_smtp.for_test(conn, keys, mailbox_id, section)
    return None if found is None else oauth_login.attach_smtp(pool, keys, conn, found)


def _mailbox_steps(mailbox: Mailbox) -> Iterator[Step]:
    from shared.mailserver.probe import check_mailbox

    for step, ok, detail in check_mailbox(mailbox):
        yield Step(step, ok, detail)


def smtp_steps(smtp: smtp_settings.SmtpSettings, timeout: float = 10.0) -> list[Step]:
    """Open an SMTP session with the settings and log in, step by step; nothing is sent."""
    from shared.mailserver.smtp import check

    return [Step(f"smtp_{step}", ok, detail) for step, ok, detail in check(smtp, timeout=timeout)]


def test_mailbox(pool: Any, keys: Keys, raw: Mapping[str, Any], mailbox_id: int | None = None) -> dict[str, Any]:
    """Connect with the values (over the saved ones); then log in to the SMTP section's server.

    Stops at the first failing step, which names what failed. SMTP steps are
    prefixed "smtp_". {"ok", "steps": [{"step", "ok", "detail"}]}.
    """
    with pool.connection() as conn:
        mailbox = unsaved_mailbox(conn, keys, raw, mailbox_id)
        smtp = _smtp(pool, keys, conn, raw, mailbox_id)
    _sign_in(pool, keys, mailbox, raw, mailbox_id)
    steps: list[Step] = []
    for step in _mailbox_steps(mailbox):
        steps.append(step)
        if not step.ok:
            return result(steps)
    if smtp is not None:
        steps += smtp_steps(smtp)
    return result(steps)


def list_folders(pool: Any, keys: Keys, raw: Mapping[str, Any], mailbox_id: int | None = None) -> dict[str, Any]:
    """{"ok", "folders", "step", "detail"}: the folders of an IMAP account, or the step that failed.

    POP3 and Maildir have only their inbox.
    """
    from shared.mailserver.connect import open_remote
    from shared.mailserver.remote import RemoteError

    with pool.connection() as conn:
        mailbox = unsaved_mailbox(conn, keys, raw, mailbox_id)
    _sign_in(pool, keys, mailbox, raw, mailbox_id)
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


def test_smtp(pool: Any, keys: Keys, ref: str | int, raw: Mapping[str, Any], timeout: float = 10.0
              ) -> dict[str, Any]:
    """Log in with saved settings (ref: 'system', an id or a name), changed by `raw`; nothing is saved or sent."""
    from shared.oauth2 import login as oauth_login

    raw, oauth, _ = owners.split(raw)
    values, password = smtp_admin.coerce(raw)
    with pool.connection() as conn:
        saved = smtp_settings.find(conn, ref)
        if saved is None and str(ref).lower() != smtp_admin.SYSTEM:
            smtp_admin.find(conn, ref)  # NotFound, in its words
        method = oauth.method or (saved["auth_method"] if saved else "password")
        if method == "oauth2" and (saved is None or not owners.same_as_saved(conn, "smtp_settings", saved["id"],
                                                                               oauth)):
            raise InvalidSetting({"auth_method": NOT_SAVED_YET})
        base: dict[str, Any] = {**smtp_settings.DEFAULTS, "name": "system"}
        if saved is not None:
            base.update({k: saved[k] for k in smtp_admin.FIELDS})
        full = {**base, **values}
        errors = smtp_settings.validate(full, is_system=True)
        if errors:
            raise InvalidSetting(errors)
        settings = smtp_settings.SmtpSettings(
            id=saved["id"] if saved else 0, name=str(full["name"]), is_system=False, host=full["host"],
            port=full["port"], security=full["security"], username=full["username"],
            password=password if password is not None else (keys.decrypt(saved["password_enc"]) if saved else None),
            allow_self_signed=bool(full["allow_self_signed"]), auth_method=method)
        if method == "oauth2":  # signs in with the saved grant, as the replier does
            settings = oauth_login.attach_smtp(pool, keys, conn, settings)
    return result(smtp_steps(settings, timeout))


TEST_SUBJECT = "Deskmail test mail"


def send_test_mail(pool: Any, keys: Keys, raw: Mapping[str, Any], mailbox_id: int | None, to: Any
                   ) -> dict[str, Any]:
    """Send a short test mail through the section's SMTP server, From the mailbox (the values on screen).

    `to` defaults to the mailbox's own address. The SMTP steps and the send
    are the steps of the answer.
    """
    from shared import templates
    from shared.mailserver.smtp import open_session

    rest, _ = mailbox_smtp.split(raw)
    rest, _, _ = owners.split(rest)
    values, _ = mailboxes.coerce(rest)
    with pool.connection() as conn:
        saved = mailboxes.row(conn, mailbox_id) if mailbox_id is not None else {}
        smtp = _smtp(pool, keys, conn, raw, mailbox_id)
    from_name = values.get("from_name") if "from_name" in values else saved.get("from_name", "")
    address = values.get("address") or saved.get("address") or ""
    to = (to or address or "").strip() if isinstance(to, str) or to is None else to
    errors: dict[str, str] = {}
    if not isinstance(to, str) or to.count("@") != 1 or any(c.isspace() or c in "<>,;\"" for c in to):
        errors["test_to"] = f"must be an email address, not {to!r}"
    problems = mailbox_rules.validate({**mailbox_rules.DEFAULTS, "from_name": from_name or "x", "address": address,
                                       "host": "x", "username": "x", "account_type": "imap"})
    errors.update({k: v for k, v in problems.items() if k in ("address", "from_name")})
    if smtp is None:
        errors["smtp_id"] = "no SMTP settings: set the system default first (Settings › SMTP, deskmail smtp set-system)"
    if errors:
        raise InvalidSetting(errors)
    assert smtp is not None
    shown = templates.render_from_name(from_name, templates.sample_context("staff_reply")) if from_name else ""
    message = EmailMessage()
    message["From"] = formataddr((shown, address))
    message["To"] = to
    message["Subject"] = TEST_SUBJECT
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
    return result(steps)
