# ruff: noqa: F811 - fixtures are imported from web_support by name
"""The pages as a person uses them, in a real Chromium (issue 19 item 5).

An agent answers a request from its page (preview first) and the reply
reaches the SMTP server with its Cc; an administrator walks a mailbox's SMTP
section (test connection, save over shared settings, send a test mail). The
replier runs in this process on the real RabbitMQ and PostgreSQL, the web
on a loopback port, SMTP is aiosmtpd. Each step leaves a screenshot under
test-artifacts/web-pages/.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import runner
from services.web.server import serve_in_thread
from tests.integration.replier_helpers import add_mailbox, ingest, mail, sink_settings
from tests.integration.web_support import ADMIN, admin, chromium_page  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-pages"


@pytest.fixture
def page(app, admin) -> Iterator:
    """A logged-in Chromium tab on the web, with the replier running beside it."""
    replier = runner.build(app, "replier")
    thread = threading.Thread(target=replier.run, name="replier", daemon=True)
    thread.start()
    web, web_thread = serve_in_thread(app)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with chromium_page(f"http://127.0.0.1:{web.bound_port()}") as tab:
            tab.goto("/login")
            tab.fill("input[name=username]", ADMIN[0])
            tab.fill("input[name=password]", ADMIN[1])
            tab.click("button[type=submit]")
            tab.wait_for_url(re.compile(r"/$"))
            yield tab
    finally:
        web.stop()
        replier.stop()
        for t in (thread, web_thread):
            t.join(timeout=20)


def shot(tab, step: str) -> None:
    tab.screenshot(path=str(ARTIFACTS / f"{step}.png"), full_page=True)


def _luminance(rgb: str) -> float:
    channels = [int(x) / 255 for x in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(tab, selector: str) -> float:
    """WCAG contrast ratio of an element's text against the background it is drawn on."""
    colour, background = tab.eval_on_selector(selector, """el => {
        const fg = getComputedStyle(el).color;
        let node = el, bg = 'rgba(0, 0, 0, 0)';
        while (node && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
            bg = getComputedStyle(node).backgroundColor; node = node.parentElement;
        }
        return [fg, bg === 'rgba(0, 0, 0, 0)' ? 'rgb(255, 255, 255)' : bg];
    }""")
    light, dark = sorted((_luminance(colour), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_an_agent_answers_a_request_from_its_page_and_the_cc_gets_it(page, app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, "support@acme.test", auto_reply=False)
    raw = mail("Ada <ada@customer.example>", "support@acme.test",
               headers="Cc: Bob <bob@customer.example>\r\n", subject="Printer on fire")
    [event] = ingest(app, mailbox, raw)
    request_id = event["request_id"]

    page.goto(f"/requests/{request_id}")
    shot(page, "01-request")
    assert contrast(page, "article.entry header a") >= 4.5  # the "original" link can be read
    assert page.input_value("#reply-cc") == "bob@customer.example"
    page.fill("#reply-body", "We put the fire out.\nThe printer works again.")
    page.click("button[value=preview]")
    preview = page.locator("#reply-preview")
    preview.wait_for()
    shot(page, "02-reply-preview")
    assert "Cc: bob@customer.example" in preview.inner_text()
    assert f"[#{request_id}]" in preview.inner_text() and "We put the fire out." in preview.inner_text()
    page.click("button[value=send]")
    page.wait_for_url(re.compile(rf"/requests/{request_id}\?done="))
    shot(page, "03-reply-queued")
    [sent] = smtp_sink.wait_for(1, timeout=30)
    assert sent.rcpt_tos == ["ada@customer.example", "bob@customer.example"]
    assert sent.message["Cc"] == "bob@customer.example"
    assert "We put the fire out." in sent.message.get_body(("plain",)).get_content()
    deadline = time.monotonic() + 30
    while "sent" not in page.locator("#outgoing").inner_text():
        assert time.monotonic() < deadline, "the request's page never showed the reply as sent"
        time.sleep(0.5)
        page.reload()
    shot(page, "04-reply-sent")


def test_the_smtp_section_of_a_mailbox_walked_through(page, app, smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory(auth=("desk", "pw"), auth_require_tls=False)
    relay = sink_settings(app, sink, name="relay", auth=("desk", "pw"))
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    first = add_mailbox(app, "first@acme.test", smtp_id=relay, auto_reply=False)
    add_mailbox(app, "second@acme.test", smtp_id=relay, auto_reply=False)
    with app.pool.connection() as conn, conn.transaction():
        conn.execute("UPDATE mailboxes SET account_type = 'maildir', host = %s, archive = false WHERE id = %s",
                     (str(maildir), first))

    page.goto(f"/mailboxes/{first}")
    assert page.locator("#smtp_id").input_value() == str(relay)
    assert "second@acme.test" in page.inner_text("#smtp-shared")
    shot(page, "10-smtp-shared")

    # Test connection: the mailbox, then a login at the shared settings' server.
    page.click("#test-button")
    page.wait_for_selector("#test-result")
    shot(page, "11-smtp-tested")
    result = page.inner_text("#test-result")
    assert "All steps passed" in result and f"{sink.port}" in result and "logged in as desk" in result

    # Saving a change to the shared settings asks first; a copy leaves them as they were.
    page.fill("input[name=smtp_username]", "someone-else")
    page.fill("input[name=smtp_password]", "pw2")
    page.click("button[value=save]")
    page.wait_for_selector("#smtp_edit-error")
    shot(page, "12-smtp-asks")
    assert "second@acme.test" in page.inner_text("#smtp_edit-error")
    page.check("input[name=smtp_edit][value=copy]")
    page.fill("input[name=smtp_password]", "pw2")
    page.click("button[value=save]")
    page.wait_for_url(re.compile(rf"/mailboxes/{first}\?done="))
    shot(page, "13-smtp-copied")
    assert page.locator("#smtp_id").input_value() == "custom"
    with app.pool.connection() as conn:
        shared = conn.execute("SELECT username FROM smtp_settings WHERE id = %s", (relay,)).fetchone()
    assert shared["username"] == "desk"

    # Back to the shared settings, then a test mail through them.
    page.select_option("#smtp_id", str(relay))
    assert page.locator("#smtp-custom").is_hidden()  # their fields are not on this page any more
    page.click("button[value=save]")
    page.wait_for_url(re.compile(rf"/mailboxes/{first}\?done="))
    page.fill("input[name=test_to]", "ada@customer.example")
    page.click("button[value=send_test]")
    page.wait_for_selector("#test-result")
    shot(page, "14-smtp-test-mail")
    assert "test mail sent to ada@customer.example" in page.inner_text("#test-result")
    [sent] = sink.wait_for(1)
    assert sent.login == "desk" and sent.rcpt_tos == ["ada@customer.example"]


def test_a_maildir_mailbox_has_no_port_to_guess(page, tmp_path):
    page.goto("/mailboxes/new")
    page.select_option("#account_type", "maildir")
    hint = page.inner_text("#port-hint")
    shot(page, "20-maildir-hint")
    assert "()" not in hint and "Maildir" in hint
    page.select_option("#account_type", "pop3")
    assert "995" in page.inner_text("#port-hint")
