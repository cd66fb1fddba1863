"""`deskmail smtp`, `deskmail template`, `deskmail requests reply`, and the staff-reply sweep.

The commands run in this process (services.cli.main) against the test's
database and RabbitMQ, configured through the environment like a real shell.
"""

from __future__ import annotations

import io
import logging
import time

import pytest

from services.cli import main
from services.replier.outbox import Sweeper
from shared.db import transaction
from shared.events import decode
from shared.staff_replies import queue_staff_reply
from tests.conftest import stage_env
from tests.integration.replier_helpers import add_mailbox, ingest, mail, outgoing, replier

pytestmark = pytest.mark.integration

SUPPORT = "support@acme.example"


@pytest.fixture
def cli(settings, monkeypatch, capsys):
    for key, value in stage_env(settings).items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    handlers = list(root.handlers)

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    # App.from_env() logs to this test's captured stderr; later tests must not.
    root.handlers[:] = handlers


def test_smtp_commands_and_a_test_that_says_what_is_wrong(cli, app, smtp_sink_factory):
    sink = smtp_sink_factory(tls="starttls", auth=("desk", "right"))
    code, out, err = cli("smtp", "set-system", "--host", sink.host, "--port", str(sink.port),
                         "--username", "desk", "--allow-self-signed", "--password-stdin",
                         stdin="wrong\n")
    assert code == 0, err
    code, out, _ = cli("smtp", "test", "system")
    assert code == 1
    assert "ok   starttls" in out and "FAIL login" in out and "535" in out
    assert "check the username and the password" in out

    code, _, err = cli("smtp", "edit", "system", "--password-stdin", stdin="right\n")
    assert code == 0, err
    code, out, _ = cli("smtp", "test", "system")
    assert code == 0 and "ok   login     logged in as desk" in out

    code, out, err = cli("smtp", "add", "relay", "--host", sink.host, "--port", "1",
                         "--security", "none")
    assert code == 0, err
    code, out, _ = cli("smtp", "test", "relay", "--timeout", "2")
    assert code == 1 and "connection refused" in out and "check the host and the port" in out
    code, out, err = cli("smtp", "add", "relay", "--host", "x.example")
    assert code == 1 and "SMTP settings named 'relay' exist already" in err  # a Conflict, as in the API
    code, out, err = cli("smtp", "add", "bad", "--host", "smtp example", "--port", "70000")
    assert code == 2 and "host:" in err and "port:" in err

    code, out, _ = cli("smtp", "list")
    assert "relay" in out and "system *" in out and "right" not in out and "wrong" not in out
    code, out, _ = cli("smtp", "show", "system", "--json")
    assert '"(set, not shown)"' in out and "right" not in out
    with app.pool.connection() as conn:
        stored = conn.execute("SELECT password_enc FROM smtp_settings WHERE is_system").fetchone()
    assert b"right" not in bytes(stored["password_enc"])  # encrypted at rest

    mailbox = add_mailbox(app, SUPPORT)
    with transaction(app.pool) as conn:
        conn.execute("UPDATE mailboxes SET smtp_id = (SELECT id FROM smtp_settings"
                     " WHERE name = 'relay') WHERE id = %s", (mailbox,))
    code, _, err = cli("smtp", "remove", "relay")
    assert code == 1 and f"mailbox(es) {mailbox}" in err  # still in use: a Conflict
    assert cli("smtp", "test", "nope")[0] == 1


def test_template_set_show_preview_and_refusal(cli, app, tmp_path):
    mailbox = add_mailbox(app, SUPPORT)
    html = tmp_path / "reply.html"
    html.write_text("<p>{{ reply.body_text|nl2br }}</p>")
    code, out, err = cli("template", "set", "staff_reply", "--mailbox", str(mailbox),
                         "--subject", "Re: {{ request.subject }}", "--html-file", str(html))
    assert code == 0, err
    code, out, _ = cli("template", "show", "staff_reply", "--mailbox", str(mailbox))
    assert "the mailbox's own override" in out and "nl2br" in out
    assert "{{ reply.body_text }}" in out  # the text part kept from the shipped template
    code, out, _ = cli("template", "preview", "staff_reply", "--mailbox", str(mailbox))
    assert code == 0 and "Subject: Re: Printer on the 3rd floor" in out and "<br>" in out
    code, out, _ = cli("template", "list")
    assert f"{mailbox} ({SUPPORT})" in out

    code, _, err = cli("template", "set", "auto_reply", "--text",
                       "Hello {{ customer.nmae }}\n{{ request.__class__ }}")
    assert code == 2
    assert "error: body_text: line 1: unknown field 'nmae'" in err and "did you mean 'name'" in err
    assert "; line 2: access to '__class__' is not allowed" in err  # every problem of the part, by line
    code, _, err = cli("template", "set", "auto_reply", "--subject", "{% if %}")
    assert code == 2 and "error: subject: line 1" in err

    assert cli("template", "reset", "staff_reply", "--mailbox", str(mailbox))[0] == 0
    code, out, _ = cli("template", "show", "staff_reply", "--mailbox", str(mailbox))
    assert "shipped with Deskmail" in out


def test_mailbox_account_name_is_checked_when_saved(cli):
    code, _, err = cli("mailbox", "add", "--from-name", "{{ agent.name }} at ACME", "--address",
                       SUPPORT, "--host", "h", "--username", "u", "--type", "imap",
                       "--password-stdin", stdin="pw\n")
    assert code == 2 and "from_name" in err and "auto-reply" in err


def test_requests_reply_queues_announces_and_the_replier_sends(cli, app, smtp_sink):
    from tests.integration.replier_helpers import sink_settings

    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT, auto_reply=False)
    [event] = ingest(app, mailbox, mail("Ada <ada@customer.example>", SUPPORT))
    request_id = event["request_id"]
    code, out, err = cli("requests", "reply", str(request_id), "--agent", "Grace",
                         stdin="Fixed.\n")
    assert code == 0, err
    assert cli("requests", "reply", "999", "--agent", "G", "--body", "x")[0] == 1
    assert "empty" in cli("requests", "reply", str(request_id), "--agent", "G", "--body", " ")[2]

    with app.broker() as conn:  # the announcement is on the reply queue
        message = conn.SimpleQueue(app.topology.queue("reply"))
        got = message.get(timeout=5)
        event = decode(got.body)
        got.ack()
        message.close()
    assert event.type == "reply.queued" and event["request_id"] == request_id
    replier(app).handle([event])
    [sent] = smtp_sink.wait_for(1)
    assert sent.message["From"] == f"ACME Support <{SUPPORT}>"  # no agent placeholder here
    assert "Fixed." in sent.message.get_body(("plain",)).get_content()


def test_sweep_announces_a_staff_reply_whose_event_was_lost(app, smtp_sink):
    from tests.integration.replier_helpers import sink_settings

    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT, auto_reply=False)
    [event] = ingest(app, mailbox, mail("ada@customer.example", SUPPORT))
    with transaction(app.pool) as conn:  # committed, then the process died: no event
        oid = queue_staff_reply(conn, event["request_id"], "Grace", "Hello")
    sweeper = Sweeper(app.settings, app.pool, app.topology, grace=0.5)
    assert sweeper.sweep_once() == 0  # within the grace period the event may still come
    time.sleep(0.6)
    assert sweeper.sweep_once() == 1
    assert sweeper.sweep_once() == 0  # touched: it waits another grace period
    with app.broker() as conn:
        queue = conn.SimpleQueue(app.topology.queue("reply"))
        got = queue.get(timeout=5)
        announced = decode(got.body)
        got.ack()
        queue.close()
    assert announced["outgoing_id"] == oid
    replier(app).handle([announced])
    smtp_sink.wait_for(1)
    assert outgoing(app)[0]["state"] == "sent"
