"""The test infrastructure itself: the private Dovecot and the SMTP sink.

If these fail, every other integration test is suspect, so they check what
the others rely on: each connection security mode, fast auth failures, the
IMAP extensions the fetcher uses, and the sink's TLS, AUTH and refusals.
"""

from __future__ import annotations

import poplib
import smtplib
import time
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient

# Importing the fixtures makes this file runnable without tests/conftest.py;
# pytest then passes them back as same-named arguments, which ruff calls a
# redefinition (F811, file-wide above). Drop both once conftest registers
# tests.support.fixtures through pytest_plugins.
from tests.support.fixtures import DovecotServer
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

TIMEOUT = 10


def _mail(subject: str) -> bytes:
    return (
        f"From: Customer <customer@example.com>\r\n"
        f"To: help@example.com\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\n"
        f"\r\n"
        f"Body of {subject}.\r\n"
    ).encode()


# --- IMAP -----------------------------------------------------------------


def test_imap_plain_login(dovecot: DovecotServer) -> None:
    with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=TIMEOUT) as client:
        assert client.login(dovecot.new_user(), dovecot.password) == b"Logged in"


def test_imap_starttls_login(dovecot: DovecotServer) -> None:
    with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=TIMEOUT) as client:
        client.starttls(dovecot.ssl_context())
        assert client.login(dovecot.new_user(), dovecot.password) == b"Logged in"


def test_imaps_login(dovecot: DovecotServer) -> None:
    with IMAPClient(
        dovecot.host,
        dovecot.imaps_port,
        ssl=True,
        ssl_context=dovecot.ssl_context(),
        timeout=TIMEOUT,
    ) as client:
        assert client.login(dovecot.new_user(), dovecot.password) == b"Logged in"


def test_certificate_is_verified_for_localhost_and_ip(dovecot: DovecotServer) -> None:
    for host in ("127.0.0.1", "localhost"):
        with IMAPClient(
            host, dovecot.imaps_port, ssl=True, ssl_context=dovecot.ssl_context(), timeout=TIMEOUT
        ) as client:
            client.noop()


@pytest.mark.parametrize("password", ["wrong", "", "secret ", "Secret"])
def test_wrong_password_is_refused_fast(dovecot: DovecotServer, password: str) -> None:
    # Repeated on purpose: anvil's penalty would slow the later attempts.
    for _ in range(3):
        started = time.monotonic()
        with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=TIMEOUT) as client:
            with pytest.raises(IMAPClient.Error, match="AUTHENTICATIONFAILED"):
                client.login(dovecot.new_user(), password)
        assert time.monotonic() - started < 1.0


def test_append_fetch_round_trip(dovecot: DovecotServer) -> None:
    user = dovecot.new_user("roundtrip")
    mails = [_mail(f"message {n}") for n in range(5)]

    uids = dovecot.append(user, mails)

    assert uids == [1, 2, 3, 4, 5]
    assert dovecot.list_uids(user) == uids
    assert dovecot.fetch_all(user) == mails
    assert dovecot.folder_count(user, "INBOX") == 5


def test_append_creates_the_folder_and_users_are_isolated(dovecot: DovecotServer) -> None:
    user, other = dovecot.new_user(), dovecot.new_user()
    assert not dovecot.folder_exists(user, "Support")

    dovecot.append(user, [_mail("in a folder")], folder="Support")

    assert dovecot.folder_count(user, "Support") == 1
    assert dovecot.folder_count(user, "INBOX") == 0
    assert not dovecot.folder_exists(other, "Support")
    dovecot.create_folder(user, "Support")  # already there: a no-op
    dovecot.create_folder(user, "Archive")
    assert dovecot.folder_count(user, "Archive") == 0


def test_move_and_idle_are_advertised(dovecot: DovecotServer) -> None:
    with dovecot.imap(dovecot.new_user()) as client:
        capabilities = client.capabilities()
    assert b"MOVE" in capabilities
    assert b"IDLE" in capabilities
    assert b"UIDPLUS" in capabilities


def test_move_to_archive(dovecot: DovecotServer) -> None:
    user = dovecot.new_user()
    [uid] = dovecot.append(user, [_mail("to archive")])
    dovecot.create_folder(user, "Archive")

    with dovecot.imap(user) as client:
        client.select_folder("INBOX")
        client.move([uid], "Archive")

    assert dovecot.list_uids(user, "INBOX") == []
    assert dovecot.fetch_all(user, "Archive") == [_mail("to archive")]


def test_uidvalidity_is_readable_and_stable(dovecot: DovecotServer) -> None:
    user = dovecot.new_user()
    dovecot.append(user, [_mail("one")])
    first = dovecot.uidvalidity(user)
    with dovecot.imap(user) as client:
        selected = client.select_folder("INBOX", readonly=True)
    assert first > 0
    assert selected[b"UIDVALIDITY"] == first
    assert dovecot.uidvalidity(user) == first


# --- POP3 -----------------------------------------------------------------


def _pop3_check(client: poplib.POP3, dovecot: DovecotServer) -> None:
    user = dovecot.new_user("pop")
    dovecot.append(user, [_mail("pop me")])
    client.user(user)
    assert client.pass_(dovecot.password).startswith(b"+OK")
    assert client.stat() == (1, len(_mail("pop me")))
    _, uidl, _ = client.uidl()
    # pop3_uidl_format = %08Xu%08Xv: UID then UIDVALIDITY, 8 hex digits each.
    assert len(uidl[0].split()[1]) == 16
    client.quit()


def test_pop3_plain_login(dovecot: DovecotServer) -> None:
    _pop3_check(poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT), dovecot)


def test_pop3_stls_login(dovecot: DovecotServer) -> None:
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
    client.stls(dovecot.ssl_context())
    _pop3_check(client, dovecot)


def test_pop3s_login(dovecot: DovecotServer) -> None:
    client = poplib.POP3_SSL(
        dovecot.host, dovecot.pop3s_port, context=dovecot.ssl_context(), timeout=TIMEOUT
    )
    _pop3_check(client, dovecot)


def test_pop3_wrong_password_is_refused_fast(dovecot: DovecotServer) -> None:
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
    client.user(dovecot.new_user())
    started = time.monotonic()
    with pytest.raises(poplib.error_proto, match="AUTH"):
        client.pass_("wrong")
    assert time.monotonic() - started < 1.0


# --- SMTP sink --------------------------------------------------------------


def _message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "help@example.com"
    message["To"] = "customer@example.com"
    message["Subject"] = subject
    message.set_content("Thanks, we are on it.\n")
    return message


def test_sink_plain(smtp_sink: SmtpSink) -> None:
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=TIMEOUT) as client:
        client.send_message(_message("plain"))

    [mail] = smtp_sink.wait_for(1)
    assert mail.mail_from == "help@example.com"
    assert mail.rcpt_tos == ["customer@example.com"]
    assert mail.message["Subject"] == "plain"
    assert b"Subject: plain\r\n" in mail.data
    assert not mail.tls
    assert mail.login is None


def test_sink_starttls_with_auth(dovecot: DovecotServer, smtp_sink_factory) -> None:
    sink = smtp_sink_factory(tls="starttls", require_starttls=True, auth=("desk", "pw"))
    with smtplib.SMTP(sink.host, sink.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert "auth" not in client.esmtp_features  # AUTH only once encrypted
        with pytest.raises(smtplib.SMTPSenderRefused):  # STARTTLS required first
            client.send_message(_message("too early"))
        # The sink presents Dovecot's certificate: one CA file for all servers.
        client.starttls(context=dovecot.ssl_context())
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("desk", "wrong")
        client.login("desk", "pw")
        client.send_message(_message("starttls"))

    [mail] = sink.wait_for(1)
    assert mail.tls
    assert mail.login == "desk"
    assert sink.ca_file == dovecot.ca_file


def test_sink_implicit_tls_with_auth(dovecot: DovecotServer, smtp_sink_factory) -> None:
    sink = smtp_sink_factory(tls="ssl", auth=("desk", "pw"))
    with smtplib.SMTP_SSL(
        sink.host, sink.port, context=dovecot.ssl_context(), timeout=TIMEOUT
    ) as client:
        client.login("desk", "pw")
        client.send_message(_message("implicit"))

    [mail] = sink.wait_for(1)
    assert mail.tls
    assert mail.login == "desk"


def test_sink_plain_auth_without_tls(smtp_sink_factory) -> None:
    sink = smtp_sink_factory(auth=("desk", "pw"))
    with smtplib.SMTP(sink.host, sink.port, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPSenderRefused):  # AUTH is required
            client.send_message(_message("anonymous"))
        client.login("desk", "pw")
        client.send_message(_message("plain auth"))
    [mail] = sink.wait_for(1)
    assert (mail.tls, mail.login) == (False, "desk")


@pytest.mark.parametrize("code", [451, 554])
def test_sink_refuses_next_messages(smtp_sink: SmtpSink, code: int) -> None:
    smtp_sink.fail_next(2, code=code, text="refused for the test")
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=TIMEOUT) as client:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as raised:
                client.send_message(_message("refused"))
            assert raised.value.smtp_code == code
        client.send_message(_message("accepted"))

    [mail] = smtp_sink.wait_for(1)
    assert mail.message["Subject"] == "accepted"
    assert smtp_sink.refused == 2


def test_sink_refuses_recipients(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1, code=550, text="5.1.1 no such user", stage="rcpt")
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.send_message(_message("nobody"))
    assert smtp_sink.messages == []


def test_stopped_sink_is_unreachable(smtp_sink: SmtpSink) -> None:
    smtp_sink.stop()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=TIMEOUT)


def test_wait_for_times_out(smtp_sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(1, timeout=0.2)
