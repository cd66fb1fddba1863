# ruff: noqa: F811 - fixtures are imported from web_support by name
"""The admin web in a real Chromium (Debian's /usr/bin/chromium driven by Playwright).

One walk through what an administrator does: log in; add a mailbox on the
real test Dovecot, test it green, save it; a mail sent to it becomes a
request that the requests page shows; break the password and watch the
mailbox turn red with the reason. The whole pipeline runs in this process on
the real PostgreSQL and RabbitMQ, the web on a loopback port. Any request to
a host other than the loopback is aborted, and every step leaves a
screenshot under test-artifacts/.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import runner
from services.web.server import serve_in_thread
from tests.integration.web_support import ADMIN, admin, chromium_page  # noqa: F401
from tests.support import dovecot as dv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-browser"
STAGES = ("fetcher", "parser", "ticketer", "replier")


@pytest.fixture
def running(app, admin, monkeypatch) -> Iterator[str]:
    """The four stages and the web, in threads of this process; yields the web's base URL."""
    dv.ensure_dovecot()
    monkeypatch.setenv("DESKMAIL_CA_FILE", str(dv.CA_FILE))  # the test Dovecot's certificate is trusted
    stages = [runner.build(app, name) for name in STAGES]
    threads = [threading.Thread(target=s.run, name=n, daemon=True) for n, s in zip(STAGES, stages, strict=True)]
    for t in threads:
        t.start()
    web, web_thread = serve_in_thread(app)
    yield f"http://127.0.0.1:{web.bound_port()}"
    web.stop()
    for s in stages:
        s.stop()
    for t in (*threads, web_thread):
        t.join(timeout=20)


@pytest.fixture
def page(running):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page(running) as tab:
        yield tab


def shot(page, step: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{step}.png"), full_page=True)


def wait_for(page, url: str, predicate, timeout: float = 60.0, step: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if predicate(page):
            return
        if time.monotonic() > deadline:
            shot(page, f"timeout-{step}")
            raise AssertionError(f"{step}: not seen on {url} within {timeout:.0f} s")
        time.sleep(1)


def test_admin_adds_a_mailbox_sees_requests_and_a_broken_password(page):
    # 1. Log in.
    page.goto("/mailboxes")
    assert "/login" in page.url
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", ADMIN[1])
    shot(page, "01-login")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/mailboxes$"))
    shot(page, "02-logged-in")

    # 2. A new mailbox on the test Dovecot: the port placeholder follows type and security.
    user = dv.new_user("web")
    address = f"{user}@example.test"
    page.goto("/mailboxes/new")
    page.select_option("#account_type", "pop3")
    assert page.get_attribute("#port", "placeholder") == "995"
    assert page.locator("#archive-options").is_hidden()  # archiving is IMAP only
    page.select_option("#account_type", "imap")
    assert page.get_attribute("#port", "placeholder") == "993"
    page.fill("#from_name", "{{ agent.name if agent else mailbox.name }} at ACME")
    # The live preview (app.js asks the server): the CSP forbids eval, so wait on the text.
    page.locator("#from-preview", has_text="Grace Hopper at ACME").wait_for(timeout=5000)
    page.fill("input[name=address]", address)
    page.fill("input[name=host]", dv.HOST)
    page.fill("#port", str(dv.IMAPS_PORT))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", dv.PASSWORD)
    page.fill("input[name=poll_interval]", "1")
    assert page.is_checked("input[name=verify_tls]")  # TLS verification is on by default
    page.click("button[value=test]")
    page.wait_for_selector("#test-result")
    shot(page, "03-tested")
    assert "All steps passed" in page.inner_text("#test-result"), page.inner_text("#test-result")

    # The test saved nothing; the password is not echoed back into the page.
    assert page.input_value("input[name=password]") == ""
    page.fill("input[name=password]", dv.PASSWORD)
    page.click("button[value=save]")
    page.wait_for_url(re.compile(r"/mailboxes/\d+"))
    shot(page, "04-saved")
    assert "Saved." in page.content()

    # 3. A mail to it becomes a request on the requests page.
    subject = f"Printer on fire {uuid.uuid4().hex[:6]}"
    dv.append(user, [(f"From: Ada <ada@example.com>\r\nTo: {address}\r\nSubject: {subject}\r\n"
                      f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\n\r\nIt is on fire.\r\n").encode()])
    wait_for(page, "/requests", lambda p: subject in p.content(), step="request")
    shot(page, "05-request-listed")
    page.click(f"text={subject}")
    assert "It is on fire." in page.content()
    shot(page, "06-request-detail")

    # 4. Break the password: the mailbox turns red with the reason.
    page.goto("/mailboxes")
    page.click(f"text={address}")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[value=save]")
    page.wait_for_url(re.compile(r"/mailboxes/\d+"))
    wait_for(page, "/mailboxes", lambda p: p.locator("tr.health-failing").count() == 1, step="failing")
    row = page.locator("tr.health-failing")
    assert address in row.inner_text() and "login" in row.locator(".last-error").inner_text().lower()
    shot(page, "07-mailbox-failing")


def test_template_preview_is_sandboxed(page):
    page.goto("/login")
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", ADMIN[1])
    page.click("button[type=submit]")
    page.goto("/templates/auto_reply")
    page.fill("textarea[name=body_html]", "<p>Hi {{ customer.name }}</p><script>parent.document.title='pwned'</script>")
    page.click("button[value=preview]")
    frame = page.frame_locator("iframe.mail-preview")
    assert frame.locator("p").inner_text() == "Hi Ada Lovelace"
    assert page.title() != "pwned"  # the sandbox runs no script
    shot(page, "08-template-preview")
