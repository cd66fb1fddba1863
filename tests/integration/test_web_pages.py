# ruff: noqa: F811 - fixtures are imported from web_support by name
"""The mailbox form's own SMTP fields: field errors as smtp_<field>, saved as the mailbox's custom
settings, shown again on the form, and "Send test mail" through them."""

import pytest

from tests.integration.web_support import admin, browser_client, web_app  # noqa: F401

pytestmark = pytest.mark.integration

def test_custom_smtp_fields_save_and_send_a_test_mail(browser_client, app, smtp_sink):
    c = browser_client
    form = {"from_name": "ACME", "address": "a@x.test", "account_type": "imap", "security": "tls", "host": "h",
            "username": "u", "folder": "INBOX", "archive": "on", "archive_folder": "arch", "enabled": "on",
            "poll_interval": "60", "max_per_poll": "5", "max_message_bytes": "1000", "smtp_id": "custom",
            "smtp_host": "127.0.0.1", "smtp_port": "abc", "smtp_security": "none", "csrf_token": c.csrf, "action": "save"}
    r = c.post("/mailboxes/new", data=form)
    assert r.status_code == 422 and 'id="smtp_port-error"' in r.text, r.text[:2000]
    form["smtp_port"] = str(smtp_sink.port)
    r = c.post("/mailboxes/new", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text[:3000]
    mid = r.headers["location"].split("/")[2].split("?")[0]
    page = c.get(f"/mailboxes/{mid}").text
    assert 'value="custom" selected' in page and f'value="{smtp_sink.port}"' in page
    form.update(action="send_test", test_to="ada@example.com")
    r = c.post(f"/mailboxes/{mid}", data=form)
    assert "All steps passed" in r.text and "test mail sent to ada@example.com" in r.text
    sent = smtp_sink.messages
    assert len(sent) == 1 and b"Auto-Submitted: auto-generated" in sent[0].data
    assert b"From: ACME <a@x.test>" in sent[0].data


def test_a_maildir_mailbox_page_has_no_empty_port_hint(browser_client, tmp_path):
    saved = browser_client.post("/mailboxes/new", data={
        "csrf_token": browser_client.csrf, "action": "save", "from_name": "Local", "address": "local@acme.test",
        "account_type": "maildir", "host": str(tmp_path), "username": "local", "security": "none",
        "folder": "INBOX", "enabled": "on", "poll_interval": "60", "max_per_poll": "500",
        "max_message_bytes": "1000", "smtp_id": "system"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text[:2000]
    page = browser_client.get(saved.headers["location"].split("?")[0]).text
    assert "usual port ()" not in page and "Maildir: no port" in page


def test_a_new_mailbox_form_opens_without_errors_or_empty_results(browser_client):
    # Found walking the pages: an empty "Folders:" heading on every form, and the
    # From-name preview's "must not be empty" in red before anything was typed.
    page = browser_client.get("/mailboxes/new").text
    assert "Folders:" not in page and "field-error" not in page
    form = {"csrf_token": browser_client.csrf, "action": "folders", "account_type": "pop3", "host": "h",
            "username": "u", "security": "none", "folder": "INBOX", "smtp_id": "system"}
    listed = browser_client.post("/mailboxes/new", data=form)
    assert "Folders:" in listed.text and "<code>INBOX</code>" in listed.text
