"""The walking skeleton, end to end, both ways Deskmail runs.

A mail placed in a Dovecot INBOX becomes a request with its history entry,
the customer receives the auto-reply at an SMTP server, and the mail ends in
the archive folder. Once as four stage processes over the real RabbitMQ and
PostgreSQL, once as `deskmail run` on the embedded default (memory:// and an
embedded PostgreSQL), configured only through the `deskmail` command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import stage_env
from tests.support.fixtures import DovecotServer
from tests.support.smtp import SmtpSink

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CUSTOMER_MAIL = (
    b"From: Ada Lovelace <ada@example.com>\r\nTo: support@acme.test\r\n"
    b"Subject: Printer prints blank pages\r\nMessage-ID: <skeleton-1@example.com>\r\n"
    b"Date: Mon, 23 Nov 2026 09:12:00 +0100\r\n\r\nHello, the printer only prints blank pages.\r\n"
)


def deskmail(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, input=stdin,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"deskmail {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@contextmanager
def processes(env: dict[str, str], commands: list[str], log_dir: Path) -> Iterator[None]:
    procs = []
    for name in commands:
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen([sys.executable, "-m", "services.cli", name], env=env,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    try:
        yield
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in procs:
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            log.close()
            assert code == 0, f"a stage did not shut down cleanly on SIGTERM (exit {code}); logs in {log_dir}"


def wait(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def configure(env: dict[str, str], dovecot: DovecotServer, user: str, sink: SmtpSink) -> None:
    deskmail(env, "smtp", "set-system", "--host", sink.host, "--port", str(sink.port), "--security", "none")
    out = deskmail(env, "mailbox", "add", "--address", "support@acme.test", "--from-name", "ACME Support",
                   "--type", "imap", "--host", dovecot.host, "--port", str(dovecot.imap_port),
                   "--security", "starttls", "--username", user, "--archive", "--archive-folder", "Archive",
                   "--auto-reply", "--category", "Printers", "--poll-interval", "1", "--password-stdin",
                   stdin=dovecot.password + "\n")
    assert "mailbox 1 added" in out


def check_outcome(env: dict[str, str], dovecot: DovecotServer, user: str, sink: SmtpSink) -> None:
    wait(lambda: len(sink.messages) >= 1, "the auto-reply at the SMTP server")
    wait(lambda: dovecot.folder_exists(user, "Archive") and dovecot.folder_count(user, "Archive") == 1
         and dovecot.folder_count(user, "INBOX") == 0, "the mail to be archived")
    [request] = json.loads(deskmail(env, "requests", "list", "--json"))
    assert request["subject"] == "Printer prints blank pages"
    assert request["customer"] == "ada@example.com"
    assert request["category"] == "Printers"
    detail = json.loads(deskmail(env, "requests", "show", str(request["id"]), "--json"))
    incoming = [h for h in detail["history"] if h["kind"] == "incoming"]
    assert [h["message_id"] for h in incoming] == ["skeleton-1@example.com"]
    assert "blank pages" in incoming[0]["body_text"]
    reply = sink.messages[0]
    assert reply.rcpt_tos == ["ada@example.com"]
    message = reply.message
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<skeleton-1@example.com>"
    assert f"[#{request['id']}]" in message["Subject"]
    assert "ACME Support" in message["From"] and "support@acme.test" in message["From"]
    time.sleep(1.5)  # a few more polls: still exactly one of each
    assert len(sink.messages) == 1
    assert len(json.loads(deskmail(env, "requests", "list", "--json"))) == 1


def test_four_stage_processes_over_rabbitmq_and_postgresql(settings, dovecot, smtp_sink, tmp_path):
    user = dovecot.new_user("skeleton")
    env = stage_env(settings, DESKMAIL_CA_FILE=str(dovecot.ca_file))
    configure(env, dovecot, user, smtp_sink)
    dovecot.append(user, [CUSTOMER_MAIL])
    with processes(env, ["fetcher", "parser", "ticketer", "replier"], tmp_path):
        check_outcome(env, dovecot, user, smtp_sink)


def test_embedded_default_in_one_process(dovecot, smtp_sink, tmp_path):
    user = dovecot.new_user("embedded")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "AMQP_URL") and not k.startswith("DESKMAIL_")}
    env.update(DESKMAIL_DATA_DIR=str(tmp_path / "var"), DESKMAIL_HTTP_PORT="0",
               DESKMAIL_CA_FILE=str(dovecot.ca_file))
    configure(env, dovecot, user, smtp_sink)
    dovecot.append(user, [CUSTOMER_MAIL])
    with processes(env, ["run"], tmp_path):
        check_outcome(env, dovecot, user, smtp_sink)
    assert (tmp_path / "var" / "pgdata").is_dir()  # the embedded PostgreSQL was used
