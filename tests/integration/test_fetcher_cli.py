"""`deskmail mailbox ...` against the real database and Dovecot."""

from __future__ import annotations

import pytest

from services.cli import main
from tests.conftest import stage_env
from tests.integration.fetcher_helpers import status

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(settings, monkeypatch, capsys, dovecot):
    for key, value in stage_env(settings, DESKMAIL_CA_FILE=str(dovecot.ca_file),
                                DESKMAIL_MAILBOX_PASSWORD=dovecot.password).items():
        monkeypatch.setenv(key, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_mailbox_administration(cli, app, dovecot):
    user = dovecot.new_user("cli")
    dovecot.append(user, [b"Subject: hi\r\n\r\nhello\r\n"])
    base = ["--from-name", "Support", "--address", f"{user}@example.test", "--host", "127.0.0.1",
            "--username", user]

    code, out, _ = cli("mailbox", "add", *base, "--type", "imap", "--security", "starttls", "--port", "10143")
    assert code == 0, out
    mailbox_id = int(out.split()[1])

    code, out, _ = cli("mailbox", "test", str(mailbox_id))
    assert code == 0, out
    assert "ok   login" in out and "holds 1 message" in out and "deskmail_archive" in out

    code, out, _ = cli("mailbox", "show", str(mailbox_id))
    assert "(set, not shown)" in out and dovecot.password not in out
    with app.pool.connection() as conn:
        stored = conn.execute("SELECT password_enc FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
    assert dovecot.password.encode() not in bytes(stored["password_enc"]), "encrypted at rest"

    code, out, _ = cli("mailbox", "edit", str(mailbox_id), "--folder", "Nowhere")
    assert code == 0
    code, out, _ = cli("mailbox", "test", str(mailbox_id))
    assert code == 1 and "FAIL folder" in out and "Nowhere" in out

    code, out, _ = cli("mailbox", "list")
    assert f"{user}@example.test" in out and "never" in out

    assert cli("mailbox", "disable", str(mailbox_id))[0] == 0
    assert status(app, mailbox_id)["enabled"] is False
    assert cli("mailbox", "enable", str(mailbox_id))[0] == 0
    assert cli("mailbox", "remove", str(mailbox_id))[0] == 0
    assert f"{user}@example.test" not in cli("mailbox", "list")[1]


@pytest.mark.parametrize(("extra", "field"), [
    (["--type", "exchange"], "account_type"),
    (["--type", "imap", "--port", "70000"], "port"),
    (["--type", "pop3", "--archive"], "archive"),
    (["--type", "imap", "--security", "ssl"], "security"),
])
def test_bad_values_are_refused_naming_the_field(cli, extra, field):
    code, _, err = cli("mailbox", "add", "--from-name", "S", "--address", "s@example.test",
                       "--host", "127.0.0.1", "--username", "s", *extra)
    assert code == 2 and f"error: {field}:" in err, err


def test_wrong_password_is_said_plainly(cli, dovecot, monkeypatch):
    user = dovecot.new_user("cli-wrong")
    monkeypatch.setenv("DESKMAIL_MAILBOX_PASSWORD", "not-the-password")
    code, out, _ = cli("mailbox", "add", "--from-name", "S", "--address", f"{user}@example.test",
                       "--host", "127.0.0.1", "--username", user, "--type", "pop3", "--security", "tls",
                       "--port", "10995")
    assert code == 0, out
    code, out, _ = cli("mailbox", "test", out.split()[1])
    assert code == 1 and "FAIL login" in out and "refused the user name or password" in out
