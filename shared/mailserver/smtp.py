"""Sending over SMTP, keeping sessions open, and telling apart what is safe to retry.

`Sender.send` raises one of three errors, which the stage turns into states:

    Refused     5xx, a refused login, no STARTTLS, an untrusted certificate:
                the server will not take it as configured (mark the mail failed)
    Transient   4xx, refused connection, timeout, lost connection before DATA:
                nothing was accepted, retry later
    Ambiguous   the connection broke during DATA: the server may have the mail

Sessions are kept per SMTP setting: a new session (TCP, TLS, EHLO, AUTH)
costs several times the mail itself. A session idle for a few seconds gets a
NOOP before reuse; one used just now is trusted, and if the server closed it
anyway the failure comes before DATA, so one fresh session is tried at once.

`check` is `deskmail smtp test`: each step of a session with a plain verdict.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from functools import cache

from shared import settings
from shared.errors import Permanent, Transient
from shared.mailserver.tls import client_context
from shared.smtp_settings import SmtpSettings

TIMEOUT = 30.0
FRESH = 5.0  # a session used within this many seconds is reused without a NOOP
IDLE_CLOSE = 60.0  # a session idle longer than this is closed, not probed


class Refused(Permanent):
    """The SMTP server will not take the mail as configured (5xx, login, TLS)."""


class Ambiguous(Exception):
    """The server may or may not have accepted the mail."""


class _Problem(Exception):
    """One failed step of opening a session, in words for an administrator."""

    def __init__(self, step: str, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.step = step
        self.permanent = permanent


def _text(resp: bytes | str) -> str:
    return (resp.decode(errors="replace") if isinstance(resp, bytes) else str(resp)).strip()


def _where(s: SmtpSettings) -> str:
    return f"{s.host}:{s.effective_port}"


def _connect_problem(s: SmtpSettings, exc: BaseException) -> _Problem:
    where = _where(s)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _Problem("tls", f"the certificate of {s.host} is not trusted ({exc.verify_message});"
                        " install a trusted certificate, or allow a self-signed one for these"
                        " settings (--allow-self-signed) if you accept the risk", True)
    if isinstance(exc, ssl.SSLError):
        hint = ("port 465 usually wants SSL/TLS (--security tls), 587 and 25 STARTTLS"
                " (--security starttls)")
        return _Problem("tls", f"TLS with {where} failed ({exc.reason or exc}); is the security"
                        f" type right? {hint}", False)
    if isinstance(exc, ConnectionRefusedError):
        return _Problem("connect", f"nothing accepts connections on {where} (connection refused);"
                        " check the host and the port", False)
    if isinstance(exc, socket.gaierror):
        return _Problem("connect", f"the host name {s.host!r} cannot be resolved; check the"
                        " spelling and the DNS", False)
    if isinstance(exc, TimeoutError | socket.timeout):
        return _Problem("connect", f"no answer from {where}; check the host, the port and any"
                        " firewall in between", False)
    if isinstance(exc, smtplib.SMTPConnectError):
        return _Problem("connect", f"{where} refused the session: {exc.smtp_code}"
                        f" {_text(exc.smtp_error)}", exc.smtp_code >= 500)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return _Problem("connect", f"{where} closed the connection ({exc}); if it expects TLS"
                        " from the first byte, use --security tls", False)
    return _Problem("connect", f"cannot talk to {where}: {exc}", False)


@cache
def _tls_context(allow_self_signed: bool, ca_file: str | None) -> ssl.SSLContext:
    # Loading the system's CA certificates costs ~10 ms; contexts are reusable.
    return client_context(allow_self_signed)


@cache
def _local_hostname() -> str:
    # smtplib would look up our FQDN (DNS) on every new session.
    return socket.getfqdn()


def _steps(s: SmtpSettings, timeout: float, report: list[tuple[str, bool, str]] | None
           ) -> smtplib.SMTP:
    """Open an authenticated session; raise _Problem at the first step that fails."""
    def ok(step: str, detail: str) -> None:
        if report is not None:
            report.append((step, True, detail))

    try:
        if s.security == "tls":
            context = _tls_context(s.allow_self_signed, settings.ca_file())
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.effective_port, local_hostname=_local_hostname(), timeout=timeout,
                context=context)
            ok("connect", f"connected to {_where(s)} over SSL/TLS")
        else:
            client = smtplib.SMTP(s.host, s.effective_port, local_hostname=_local_hostname(),
                                  timeout=timeout)
            ok("connect", f"connected to {_where(s)}")
        code, resp = client.ehlo()
        if code != 250:
            code, resp = client.helo()
            if code != 250:
                client.close()
                raise _Problem("connect", f"{s.host} answered EHLO/HELO with {code} {_text(resp)}",
                               code >= 500)
    except _Problem:
        raise
    except (OSError, smtplib.SMTPException) as exc:
        raise _connect_problem(s, exc) from exc
    try:
        if s.security == "starttls":
            if not client.has_extn("starttls"):
                raise _Problem("starttls", f"{s.host} does not offer STARTTLS; Deskmail never"
                               " falls back to plain text (use --security none only on a trusted"
                               " network)", True)
            context = _tls_context(s.allow_self_signed, settings.ca_file())
            code, resp = client.starttls(context=context)
            client.ehlo()
            ok("starttls", "STARTTLS done, certificate "
               + ("not checked (self-signed allowed)" if s.allow_self_signed else "verified"))
        if s.auth_method == "oauth2":
            _oauth_login(client, s, report)
        elif s.username:
            if not client.has_extn("auth"):
                raise _Problem("login", f"{s.host} does not offer login (AUTH)"
                               + (" over plain text; use STARTTLS or SSL/TLS"
                                  if s.security == "none" else ""), True)
            try:
                client.login(s.username, s.password or "")
            except smtplib.SMTPAuthenticationError as exc:
                raise _Problem("login", f"{s.host} refused the login of {s.username!r}:"
                               f" {exc.smtp_code} {_text(exc.smtp_error)}; check the username and"
                               " the password", exc.smtp_code >= 500) from exc
            except smtplib.SMTPException as exc:
                raise _Problem("login", f"login to {s.host} failed: {exc}", True) from exc
            ok("login", f"logged in as {s.username}")
        elif report is not None:
            report.append(("login", True, "no username set: sending without logging in"))
    except _Problem:
        client.close()
        raise
    except (OSError, smtplib.SMTPException) as exc:
        client.close()
        raise _connect_problem(s, exc) from exc
    return client


def _oauth_login(client: smtplib.SMTP, s: SmtpSettings, report: list[tuple[str, bool, str]] | None) -> None:
    """XOAUTH2 or OAUTHBEARER with a token, refreshed once if refused; _Problem otherwise."""
    from shared.oauth2 import login as oauth_login

    if s.oauth is None:
        raise _Problem("login", f"the SMTP settings {s.name!r} sign in with OAuth2 but have no OAuth2 settings", True)
    first = len(s.oauth.steps)  # the steps of this sign-in, not of earlier sessions
    try:
        oauth_login.smtp_sign_in(client, s.oauth, s.host, s.effective_port)
    except oauth_login.SignInError as exc:
        if report is not None:
            report.extend(step for step in s.oauth.steps[first:] if step[1])
        # A grant that needs reconnecting keeps the mail waiting (retried, then
        # dead-lettered for replay) rather than failing it for good.
        raise _Problem(exc.step, exc.message, not (exc.transient or exc.needs_reconnect)) from None
    if report is not None:
        report.extend(s.oauth.steps[first:])


def open_session(s: SmtpSettings, timeout: float = TIMEOUT) -> smtplib.SMTP:
    try:
        return _steps(s, timeout, None)
    except _Problem as p:
        raise (Refused if p.permanent else Transient)(str(p)) from p


def check(s: SmtpSettings, timeout: float = 10.0) -> list[tuple[str, bool, str]]:
    """(step, passed, detail) for each step of a session, stopping at the first failure."""
    report: list[tuple[str, bool, str]] = []
    try:
        client = _steps(s, timeout, report)
    except _Problem as p:
        report.append((p.step, False, str(p)))
        return report
    try:
        code, resp = client.noop()
        report.append(("ready", code == 250, f"{s.host} is ready to take mail" if code == 250
                       else f"{s.host} answered NOOP with {code} {_text(resp)}"))
        client.quit()
    except (OSError, smtplib.SMTPException) as exc:
        report.append(("ready", False, f"connection lost after login: {exc}"))
    return report


class Sender:
    """Keeps one open session per SMTP setting and sends through it. One per thread."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._sessions: dict[SmtpSettings, tuple[smtplib.SMTP, float]] = {}

    def send(self, s: SmtpSettings, sender: str, recipients: list[str], data: bytes) -> None:
        client, reused = self._session(s)
        try:
            self._envelope(s, client, sender, recipients)
        except _Lost as lost:
            if not reused:
                raise Transient(str(lost)) from lost
            # The kept session was closed by the server meanwhile: nothing was
            # sent, so one fresh session right away is safe.
            client = self._open(s)
            try:
                self._envelope(s, client, sender, recipients)
            except _Lost as again:
                raise Transient(str(again)) from again
        try:
            code, resp = client.data(data)
        except smtplib.SMTPDataError as exc:
            # Answered DATA (before the body) or the end of data with an error.
            self._answer(s, client, exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop(s)
            raise Ambiguous(f"connection to {_where(s)} lost while sending the mail: {exc}") from exc
        if code != 250:  # smtplib returns, not raises, the answer to the end of data
            self._answer(s, client, code, resp)
        self._sessions[s] = (client, time.monotonic())

    def _envelope(self, s: SmtpSettings, client: smtplib.SMTP, sender: str,
                  recipients: list[str]) -> None:
        try:
            code, resp = client.mail(sender)
            if code != 250:
                self._answer(s, client, code, resp)
            for rcpt in recipients:
                code, resp = client.rcpt(rcpt)
                if code not in (250, 251):
                    self._answer(s, client, code, resp)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop(s)
            raise _Lost(f"connection to {_where(s)} lost: {exc}") from exc

    def _answer(self, s: SmtpSettings, client: smtplib.SMTP, code: int, resp: bytes | str) -> None:
        try:
            client.rset()  # the session stays usable for the next mail
        except (OSError, smtplib.SMTPException):
            self._drop(s)
        message = f"{s.host} answered {code} {_text(resp)}"
        if 400 <= code < 500 or code < 0:
            raise Transient(message)
        raise Refused(message)

    def _session(self, s: SmtpSettings) -> tuple[smtplib.SMTP, bool]:
        cached = self._sessions.get(s)
        if cached is not None:
            client, used = cached
            idle = time.monotonic() - used
            if idle < FRESH:
                return client, True
            if idle < IDLE_CLOSE:
                try:
                    if client.noop()[0] == 250:
                        return client, True
                except (OSError, smtplib.SMTPException):
                    pass
            self._drop(s)
        return self._open(s), False

    def _open(self, s: SmtpSettings) -> smtplib.SMTP:
        self._drop(s)
        client = open_session(s, self.timeout)
        self._sessions[s] = (client, time.monotonic())
        return client

    def _drop(self, s: SmtpSettings) -> None:
        cached = self._sessions.pop(s, None)
        if cached is not None:
            try:
                cached[0].close()
            except (OSError, smtplib.SMTPException):
                pass

    def close(self) -> None:
        for s in list(self._sessions):
            client = self._sessions[s][0]
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._drop(s)


class _Lost(Exception):
    """The connection broke before DATA: nothing was sent."""
