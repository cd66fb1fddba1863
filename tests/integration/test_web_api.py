# ruff: noqa: F811 - fixtures are imported from web_support by name
"""The JSON API: mailboxes CRUD with field errors, 404 and 409; categories, templates, requests."""

from __future__ import annotations

import pytest

from shared.db import transaction
from tests.integration.web_support import admin, api, web_app  # noqa: F401
from tests.support.mailstore import store_mail

pytestmark = pytest.mark.integration

NEW = {"from_name": "ACME Support", "address": "support@acme.test", "account_type": "imap",
       "security": "tls", "host": "imap.acme.test", "username": "support", "password": "s3cret-pw"}


def test_mailbox_crud(api):
    created = api.post("/api/v1/mailboxes", json=NEW)
    assert created.status_code == 201, created.text
    box = created.json()
    assert box["address"] == "support@acme.test" and box["effective_port"] == 993
    assert box["has_password"] is True and "s3cret-pw" not in created.text
    assert "password" not in box

    changed = api.patch(f"/api/v1/mailboxes/{box['id']}", json={"port": 10993, "auto_reply": True,
                                                                "password": ""})
    assert changed.status_code == 200, changed.text
    assert changed.json()["port"] == 10993 and changed.json()["auto_reply"] is True
    assert changed.json()["has_password"] is True  # blank keeps the saved password

    assert [m["id"] for m in api.get("/api/v1/mailboxes").json()] == [box["id"]]
    assert api.post(f"/api/v1/mailboxes/{box['id']}/disable").json()["enabled"] is False
    assert api.post(f"/api/v1/mailboxes/{box['id']}/enable").json()["enabled"] is True
    assert api.delete(f"/api/v1/mailboxes/{box['id']}").status_code == 204
    assert api.get(f"/api/v1/mailboxes/{box['id']}").status_code == 404
    # The address is free again once the mailbox is removed.
    assert api.post("/api/v1/mailboxes", json=NEW).status_code == 201


def test_mailbox_field_errors_name_every_field(api):
    answer = api.post("/api/v1/mailboxes", json={**NEW, "port": "abc", "account_type": "imap4",
                                                 "address": "not-an-address", "archive": "maybe"})
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert errors["archive"] == "must be true or false, not 'maybe'"
    assert errors["port"] == "must be between 1 and 65535, not 'abc'"
    assert errors["account_type"] == "must be one of imap, pop3, maildir, not 'imap4'"
    assert errors["address"].startswith("must be an email address")
    answer = api.post("/api/v1/mailboxes", json={"address": "x@y.test"})
    assert answer.status_code == 422
    assert answer.json()["errors"]["host"] == "is required"
    answer = api.post("/api/v1/mailboxes", json={**NEW, "from_name": "{{ agent.nmae }}"})
    assert "from_name" in answer.json()["errors"]
    assert api.post("/api/v1/mailboxes", json=[1, 2]).status_code == 422


def test_mailbox_404_and_409(api):
    assert api.get("/api/v1/mailboxes/999").json() == {"error": "no mailbox 999"}
    assert api.patch("/api/v1/mailboxes/999", json={"port": 1}).status_code == 404
    assert api.delete("/api/v1/mailboxes/999").status_code == 404
    assert api.get("/api/v1/mailboxes/abc").status_code == 422
    assert api.post("/api/v1/mailboxes", json=NEW).status_code == 201
    duplicate = api.post("/api/v1/mailboxes", json={**NEW, "address": "SUPPORT@acme.test"})
    assert duplicate.status_code == 409
    assert "already uses the address" in duplicate.json()["errors"]["address"]


def test_categories_in_use_cannot_be_deleted(api):
    cat = api.post("/api/v1/categories", json={"name": "Billing"}).json()
    assert api.post("/api/v1/categories", json={"name": "billing"}).status_code == 409
    assert api.post("/api/v1/categories", json={"name": " "}).json() == {"errors": {"name": "must not be empty"}}
    box = api.post("/api/v1/mailboxes", json={**NEW, "category_id": cat["id"]}).json()
    refused = api.delete(f"/api/v1/categories/{cat['id']}")
    assert refused.status_code == 409 and "in use by 1 mailbox" in refused.json()["error"]
    api.patch(f"/api/v1/mailboxes/{box['id']}", json={"category_id": None})
    assert api.delete(f"/api/v1/categories/{cat['id']}").status_code == 204


def test_templates_syntax_error_names_the_line_and_overrides_revert(api):
    bad = api.put("/api/v1/templates/auto_reply", json={"body_text": "Hello\n{{ customer.name }\n"})
    assert bad.status_code == 422
    assert bad.json()["errors"]["body_text"].startswith("line 2:")
    box = api.post("/api/v1/mailboxes", json=NEW).json()
    path = f"/api/v1/mailboxes/{box['id']}/templates/auto_reply"
    own = api.put(path, json={"subject": "We got it {{ request.tag }}"})
    assert own.status_code == 200 and own.json()["source"] == "mailbox"
    assert api.get("/api/v1/templates/auto_reply").json()["source"] == "shipped"
    preview = api.post(f"{path}/preview", json={"body_html": "<p>{{ customer.name }}</p>"}).json()
    assert preview["subject"] == "We got it [#12345]" and "Ada Lovelace" in preview["body_html"]
    assert api.delete(path).json()["source"] == "shipped"
    assert api.get("/api/v1/templates/nope").status_code == 404


def _seed_requests(app, n: int) -> int:
    with transaction(app.pool) as conn:
        box = conn.execute("INSERT INTO mailboxes (from_name, address, host, username, account_type)"
                           " VALUES ('S', 's@x.test', 'h', 'u', 'imap') RETURNING id").fetchone()["id"]
        for i in range(n):
            raw_id = store_mail(conn, box, f"Subject: mail {i}\r\n\r\nbody".encode())
            req = conn.execute("INSERT INTO requests (mailbox_id, subject, unparsed) VALUES (%s, %s, %s)"
                               " RETURNING id", (box, f"mail {i}", i % 2 == 0)).fetchone()
            conn.execute("INSERT INTO history (request_id, kind, raw_id, body_text) VALUES (%s, 'incoming', %s, 'x')",
                         (req["id"], raw_id))
    return box


def test_requests_are_paged_by_cursor_and_filtered(api, app):
    box = _seed_requests(app, 5)
    first = api.get("/api/v1/requests", params={"limit": 2}).json()
    assert [r["subject"] for r in first["items"]] == ["mail 4", "mail 3"]
    second = api.get("/api/v1/requests", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["subject"] for r in second["items"]] == ["mail 2", "mail 1"]
    unparsed = api.get("/api/v1/requests", params={"unparsed": "true", "mailbox_id": box}).json()
    assert [r["subject"] for r in unparsed["items"]] == ["mail 4", "mail 2", "mail 0"]
    assert unparsed["next_cursor"] is None
    assert api.get("/api/v1/requests", params={"status": "gone"}).json() == {
        "errors": {"status": "must be one of open, closed, not 'gone'"}}
    detail = api.get(f"/api/v1/requests/{first['items'][0]['id']}").json()
    assert detail["history"][0]["kind"] == "incoming" and detail["outgoing"] == []
    raw = api.get(f"/api/v1/requests/{detail['id']}/raw")
    assert raw.content.startswith(b"Subject: mail 4") and "attachment" in raw.headers["content-disposition"]
    assert api.get("/api/v1/requests/424242").status_code == 404


def test_unsaved_values_are_tested_without_a_from_name(api, tmp_path):
    # Only what a connection needs must be given to test it: no account name, no address.
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    values = {"account_type": "maildir", "host": str(maildir), "username": "local", "security": "none",
              "archive": False}
    tested = api.post("/api/v1/mailboxes/test", json=values)
    assert tested.status_code == 200, tested.text
    assert tested.json()["ok"] is True and tested.json()["steps"][0]["step"] == "connect"
    listed = api.post("/api/v1/mailboxes/folders", json=values)
    assert listed.status_code == 200, listed.text
    answer = api.post("/api/v1/mailboxes/test", json={"account_type": "maildir", "security": "none"})
    assert answer.status_code == 422 and answer.json()["errors"]["host"] == "is required"
