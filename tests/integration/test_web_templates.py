# ruff: noqa: F811 - fixtures are imported from web_support and cli_support by name
"""Templates through the admin layer: what is saved is what is sent."""

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
from tests.integration.web_support import admin, api, web_app  # noqa: F401

pytestmark = pytest.mark.integration


def test_a_template_saved_without_html_sends_one_text_part(api, app, cli, smtp_sink):
    sink_settings(app, smtp_sink)
    saved = api.put("/api/v1/templates/staff_reply",
                    json={"body_text": "Our answer:\n{{ reply.body_text }}", "body_html": None})
    assert saved.status_code == 200, saved.text
    assert saved.json()["body_html"] == ""
    mailbox = add_mailbox(app, "support@acme.test", auto_reply=False)
    [event] = ingest(app, mailbox, mail("Ada <ada@customer.example>", "support@acme.test"))
    code, _, err = cli("requests", "reply", str(event["request_id"]), "--agent", "Grace", "--body", "Fixed it.")
    assert code == 0, err
    [row] = outgoing(app)
    replier(app).handle([Event(REPLY_QUEUED, {"request_id": event["request_id"], "outgoing_id": row["id"]})])
    [sent] = smtp_sink.wait_for(1)
    assert sent.message.get_content_type() == "text/plain"  # no HTML part saying something else
    assert "Our answer:\nFixed it." in sent.message.get_content().replace("\r\n", "\n")
