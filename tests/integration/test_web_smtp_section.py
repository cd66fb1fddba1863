# ruff: noqa: F811 - fixtures are imported from web_support by name
"""The mailbox form's SMTP section as a browser submits it: test connection, shared settings, test mail.

Each test takes the form's fields from the page itself (what a browser would
send), changes what a person would change, and posts it back.
"""

from __future__ import annotations

import pytest

from tests.integration.web_support import admin, browser_client, form_fields, web_app  # noqa: F401

pytestmark = pytest.mark.integration


def _new_mailbox_form(client, **changes: str) -> dict[str, str]:
    form = form_fields(client.get("/mailboxes/new").text, "/mailboxes/new")
    form.update({"from_name": "ACME Support", "address": "help@acme.test", "host": "imap.acme.test",
                 "username": "help", "password": "pw", **changes})
    return form


def test_send_test_mail_works_with_the_fields_the_page_posts(browser_client, smtp_sink):
    form = _new_mailbox_form(browser_client, smtp_id="custom", smtp_host=smtp_sink.host,
                             smtp_port=str(smtp_sink.port), smtp_security="none",
                             test_to="ada@example.com", action="send_test")
    assert form["auth_method"] == "password" and form["smtp_auth_method"] == "password"  # as the page posts them
    answer = browser_client.post("/mailboxes/new", data=form)
    assert answer.status_code == 200, answer.text[:3000]
    assert "All steps passed" in answer.text and "test mail sent to ada@example.com" in answer.text
    [sent] = smtp_sink.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.com"] and sent.message["From"] == "ACME Support <help@acme.test>"


def _maildir(tmp_path) -> str:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    return str(tmp_path / "Maildir")


def test_test_connection_logs_in_to_the_smtp_server_the_form_names(browser_client, app, smtp_sink, tmp_path):
    from tests.support.smtp import _free_port

    # The system default points at a port where nothing listens; the form says "custom" (the sink).
    with app.pool.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO smtp_settings (name, is_system, host, port, security)"
                     " VALUES ('system', true, '127.0.0.1', %s, 'none')", (_free_port("127.0.0.1"),))
    form = _new_mailbox_form(browser_client, account_type="maildir", host=_maildir(tmp_path), security="none",
                             smtp_id="custom", smtp_host=smtp_sink.host, smtp_port=str(smtp_sink.port),
                             smtp_security="none", action="test")
    form.pop("archive", None)
    answer = browser_client.post("/mailboxes/new", data=form)
    assert answer.status_code == 200, answer.text[:3000]
    assert "All steps passed" in answer.text, answer.text[answer.text.find("test-result"):][:1500]
    assert f"{smtp_sink.host}:{smtp_sink.port}" in answer.text  # the SMTP steps went to the form's server


def test_a_shared_smtp_setting_is_shown_as_shared_and_never_rewritten_unasked(browser_client, app, smtp_sink):
    from tests.integration.replier_helpers import add_mailbox, sink_settings

    relay = sink_settings(app, smtp_sink, name="relay", auth=("desk", "pw"))
    first = add_mailbox(app, "first@acme.test", smtp_id=relay)
    add_mailbox(app, "second@acme.test", smtp_id=relay)

    def relay_row() -> dict:
        with app.pool.connection() as conn:
            return conn.execute("SELECT * FROM smtp_settings WHERE id = %s", (relay,)).fetchone()

    def smtp_of(mailbox_id: int) -> int:
        with app.pool.connection() as conn:
            return conn.execute("SELECT smtp_id FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()["smtp_id"]

    # The admin changes the user name in the first mailbox's SMTP section and saves, as the page offers.
    page = browser_client.get(f"/mailboxes/{first}").text
    form = form_fields(page, f"/mailboxes/{first}")
    form.update(smtp_username="someone-else", action="save")
    answer = browser_client.post(f"/mailboxes/{first}", data=form, follow_redirects=False)
    assert relay_row()["username"] == "desk", "the shared setting was rewritten for every mailbox"
    assert answer.status_code == 422
    assert "second@acme.test" in answer.text  # the form says who else sends with it

    # It is shown as the shared setting it is, with the mailboxes that share it.
    assert form["smtp_id"] == str(relay)
    assert "first@acme.test" in page and "second@acme.test" in page

    # A copy for this mailbox: the shared setting and the other mailbox stay as they were.
    form.update(smtp_edit="copy")
    answer = browser_client.post(f"/mailboxes/{first}", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:3000]
    own = smtp_of(first)
    assert own != relay and relay_row()["username"] == "desk"
    with app.pool.connection() as conn:
        copy = conn.execute("SELECT * FROM smtp_settings WHERE id = %s", (own,)).fetchone()
    assert (copy["host"], copy["port"], copy["username"]) == (smtp_sink.host, smtp_sink.port, "someone-else")
    assert app.keys.decrypt(copy["password_enc"]) == "pw"  # the password came along with the copy
    page = browser_client.get(f"/mailboxes/{first}").text
    assert form_fields(page, f"/mailboxes/{first}")["smtp_id"] == "custom"  # its own settings now

    # Changing the shared setting knowingly, from the second mailbox's form.
    second = form_fields(browser_client.get(f"/mailboxes/{first + 1}").text, f"/mailboxes/{first + 1}")
    second.update(smtp_username="team", smtp_edit="shared", action="save")
    answer = browser_client.post(f"/mailboxes/{first + 1}", data=second, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:3000]
    assert relay_row()["username"] == "team" and smtp_of(first + 1) == relay
