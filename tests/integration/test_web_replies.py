# ruff: noqa: F811 - fixtures are imported from web_support and cli_support by name
"""Staff replies with Cc (issue 20 item 5) from the CLI, the API and the request's page, and their preview.

A staff reply goes to the customer with the other people of the conversation
in Cc (the request's people minus Deskmail's own mailboxes); the agent can
change the list; auto-replies go to the sender alone. The preview is what the
SMTP server then receives, field for field.
"""

from __future__ import annotations

import pytest

from shared.events import REPLY_QUEUED, Event
from tests.integration.cli_support import cli  # noqa: F401
from tests.integration.replier_helpers import (
    add_mailbox,
    ingest,
    mail,
    outgoing,
    replier,
    sink_settings,
)
from tests.integration.web_support import admin, api, browser_client, form_fields, web_app  # noqa: F401

pytestmark = pytest.mark.integration

SUPPORT = "support@acme.test"
PEOPLE = ("To: support@acme.test, Carol <carol@other.example>\r\n"
          "Cc: Bob <bob@customer.example>, sales@acme.test\r\n")


def _request(app, smtp_sink, *, auto_reply: bool = False) -> Event:
    """A request from Ada, To us and Carol, Cc Bob and sales@ (a mailbox of ours, added afterwards)."""
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT, auto_reply=auto_reply)
    raw = mail("Ada <ada@customer.example>", SUPPORT, headers=PEOPLE).replace(b"To: support@acme.test\r\n", b"", 1)
    [event] = ingest(app, mailbox, raw)
    add_mailbox(app, "sales@acme.test", auto_reply=False)  # ours now: never in Cc of a reply
    return event  # request.created, for the replier


def _send_queued(app, request_id: int) -> None:
    pending = [o for o in outgoing(app, request_id) if o["state"] == "pending" and o["kind"] == "staff_reply"]
    replier(app).handle([Event(REPLY_QUEUED, {"request_id": request_id, "outgoing_id": o["id"]}) for o in pending])


def test_a_staff_reply_copies_the_conversation_and_the_agent_can_change_it(app, cli, smtp_sink):
    request_id = _request(app, smtp_sink)["request_id"]
    code, out, err = cli("requests", "reply", str(request_id), "--agent", "Grace", "--body", "Fixed it.")
    assert code == 0, err
    _send_queued(app, request_id)
    [sent] = smtp_sink.wait_for(1)
    assert sent.rcpt_tos == ["ada@customer.example", "bob@customer.example", "carol@other.example"]
    assert sent.message["To"] == "ada@customer.example" or "ada@customer.example" in sent.message["To"]
    assert sent.message["Cc"] == "bob@customer.example, carol@other.example"
    assert outgoing(app, request_id)[-1]["cc"] == ["bob@customer.example", "carol@other.example"]

    code, _, err = cli("requests", "reply", str(request_id), "--agent", "Grace", "--body", "Only Bob.",
                       "--cc", "bob@customer.example")
    assert code == 0, err
    code, _, err = cli("requests", "reply", str(request_id), "--agent", "Grace", "--body", "Just you.", "--no-cc")
    assert code == 0, err
    _send_queued(app, request_id)
    _, only_bob, alone = smtp_sink.wait_for(3)
    assert only_bob.rcpt_tos == ["ada@customer.example", "bob@customer.example"]
    assert alone.rcpt_tos == ["ada@customer.example"] and alone.message["Cc"] is None

    code, _, err = cli("requests", "reply", str(request_id), "--agent", "Grace", "--body", "x", "--cc", "bob@")
    assert code == 2 and "error: cc: " in err
    code, _, err = cli("requests", "reply", str(request_id), "--agent", "Grace", "--body", "x",
                       "--cc", "sales@acme.test")
    assert code == 2 and "error: cc: sales@acme.test is one of Deskmail's own mailboxes" in err


def test_the_api_preview_is_what_the_smtp_server_receives(api, app, smtp_sink):
    request_id = _request(app, smtp_sink)["request_id"]
    assert api.get(f"/api/v1/requests/{request_id}").json()["reply"] == {
        "to": "ada@customer.example", "cc": ["bob@customer.example", "carol@other.example"]}
    body = {"body": "The printer is fixed.\nTry again.", "cc": ["carol@other.example"]}
    preview = api.post(f"/api/v1/requests/{request_id}/replies/preview", json=body)
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert outgoing(app, request_id) == []  # a preview queues nothing
    sent = api.post(f"/api/v1/requests/{request_id}/replies", json=body)
    assert sent.status_code == 201, sent.text
    assert sent.json()["cc"] == ["carol@other.example"]
    _send_queued(app, request_id)
    [got] = smtp_sink.wait_for(1)
    message = got.message
    assert (str(message["From"]), str(message["To"]), str(message["Cc"]), str(message["Subject"])) == (
        shown["from"], shown["to"], ", ".join(shown["cc"]), shown["subject"])
    assert shown["from"] == "ACME Support <support@acme.test>" and f"[#{request_id}]" in shown["subject"]
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.rstrip("\n") == shown["body_text"].rstrip("\n") and "The printer is fixed.\nTry again." in text
    html = message.get_body(("html",))
    assert (html.get_content().replace("\r\n", "\n").rstrip("\n") if html else "") == shown["body_html"].rstrip("\n")
    assert got.rcpt_tos == ["ada@customer.example", "carol@other.example"]
    assert api.get(f"/api/v1/requests/{request_id}").json()["outgoing"][0]["cc"] == ["carol@other.example"]

    refused = api.post(f"/api/v1/requests/{request_id}/replies", json={"body": " ", "cc": ["bob@"]})
    assert refused.status_code == 422
    assert set(refused.json()["errors"]) == {"body", "cc"}


def test_auto_replies_go_to_the_sender_alone(app, smtp_sink):
    created = _request(app, smtp_sink, auto_reply=True)
    replier(app).handle([created])
    [sent] = smtp_sink.wait_for(1)
    assert sent.rcpt_tos == ["ada@customer.example"] and sent.message["Cc"] is None
    assert sent.message["Auto-Submitted"] == "auto-replied"


def test_the_request_page_answers_with_a_preview_first(browser_client, app, smtp_sink):
    request_id = _request(app, smtp_sink)["request_id"]
    page = browser_client.get(f"/requests/{request_id}").text
    form = form_fields(page, f"/requests/{request_id}/reply")
    assert form["cc"] == "bob@customer.example, carol@other.example" and form["agent"] == "admin"
    form.update(body="Fixed it, see you.", action="preview")
    shown = browser_client.post(f"/requests/{request_id}/reply", data=form)
    assert shown.status_code == 200, shown.text[:2000]
    assert "Fixed it, see you." in shown.text and "bob@customer.example, carol@other.example" in shown.text
    assert outgoing(app, request_id) == []
    form = form_fields(shown.text, f"/requests/{request_id}/reply")
    assert form["body"] == "Fixed it, see you."  # kept for sending
    form.update(cc="bob@customer.example", action="send")
    sent = browser_client.post(f"/requests/{request_id}/reply", data=form, follow_redirects=False)
    assert sent.status_code == 303, sent.text[:2000]
    [row] = outgoing(app, request_id)
    assert (row["cc"], row["agent_name"], row["state"]) == (["bob@customer.example"], "admin", "pending")
    form.update(cc="not an address", action="send")
    refused = browser_client.post(f"/requests/{request_id}/reply", data=form)
    assert refused.status_code == 422 and 'id="cc-error"' in refused.text
