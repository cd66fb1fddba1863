# ruff: noqa: F811 - fixtures are imported from web_support and cli_support by name
"""Categories, managed fully from the CLI, the API and the pages: add, rename, move requests, delete."""

from __future__ import annotations

import json

import pytest

from tests.integration.cli_support import cli  # noqa: F401
from tests.integration.replier_helpers import add_mailbox, ingest, mail
from tests.integration.web_support import admin, api, browser_client, form_fields, web_app  # noqa: F401

pytestmark = pytest.mark.integration


def _requests(app, n: int, category: str) -> tuple[int, list[int]]:
    mailbox = add_mailbox(app, "support@acme.test", auto_reply=False)
    with app.pool.connection() as conn, conn.transaction():
        cat = conn.execute("INSERT INTO categories (name) VALUES (%s) RETURNING id", (category,)).fetchone()["id"]
        conn.execute("UPDATE mailboxes SET category_id = %s WHERE id = %s", (cat, mailbox))
    events = ingest(app, mailbox, *[mail(f"c{i}@customer.example", "support@acme.test", subject=f"Mail {i}")
                                     for i in range(n)])
    return mailbox, [e["request_id"] for e in events]


def _category_of(app, request_id: int) -> str | None:
    with app.pool.connection() as conn:
        return conn.execute("SELECT c.name FROM requests r LEFT JOIN categories c ON c.id = r.category_id"
                            " WHERE r.id = %s", (request_id,)).fetchone()["name"]


def test_categories_from_the_cli(cli, app):
    mailbox, [first, second] = _requests(app, 2, "Hardware")
    assert cli("category", "add", "Software")[0] == 0
    code, _, err = cli("category", "add", "software")
    assert code == 1 and "a category named 'software' already exists" in err
    code, out, _ = cli("category", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert (rows["Hardware"]["requests"], rows["Hardware"]["mailboxes"]) == (2, 1) and rows["Software"]["requests"] == 0

    code, out, err = cli("requests", "move", str(first), "--category", "Software")
    assert code == 0, err
    assert _category_of(app, first) == "Software" and _category_of(app, second) == "Hardware"
    code, _, err = cli("category", "remove", "Hardware")
    assert code == 1 and "in use by 1 mailbox(es) and 1 request(s)" in err and "--move-to" in err
    assert cli("category", "rename", "Hardware", "Devices")[0] == 0
    code, out, err = cli("category", "remove", "Devices", "--move-to", "Software")
    assert code == 0, err
    assert _category_of(app, second) == "Software"
    with app.pool.connection() as conn:
        assert conn.execute("SELECT c.name FROM mailboxes m JOIN categories c ON c.id = m.category_id"
                            " WHERE m.id = %s", (mailbox,)).fetchone()["name"] == "Software"
    code, out, _ = cli("category", "list")
    assert "Software" in out and "Devices" not in out
    code, _, err = cli("category", "remove", "Software", "--move-to", "Software")
    assert code == 2 and "error: move_to: must be another category" in err
    assert cli("category", "remove", "Nope")[0] == 1


def test_categories_from_the_api(api, app):
    _, [first, second] = _requests(app, 2, "Hardware")
    cats = {c["name"]: c["id"] for c in api.get("/api/v1/categories").json()}
    software = api.post("/api/v1/categories", json={"name": "Software"}).json()["id"]
    moved = api.patch(f"/api/v1/requests/{first}", json={"category_id": software})
    assert moved.status_code == 200, moved.text
    assert moved.json()["category"] == "Software"
    refused = api.delete(f"/api/v1/categories/{cats['Hardware']}")
    assert refused.status_code == 409
    bad = api.delete(f"/api/v1/categories/{cats['Hardware']}", params={"move_to": 424242})
    assert bad.status_code == 422 and bad.json()["errors"]["move_to"] == "no category with id 424242"
    assert api.delete(f"/api/v1/categories/{cats['Hardware']}", params={"move_to": software}).status_code == 204
    assert _category_of(app, second) == "Software"
    assert api.patch(f"/api/v1/requests/{first}", json={"category_id": 424242}).json() == {
        "errors": {"category_id": "no category with id 424242"}}


def test_categories_from_the_pages(browser_client, app):
    c = browser_client
    _, [first, second] = _requests(app, 2, "Hardware")
    assert c.post("/categories", data={"name": "Software", "csrf_token": c.csrf}).status_code == 200
    page = c.get(f"/requests/{first}").text
    form = form_fields(page, f"/requests/{first}/category")
    cats = {name: cid for cid, name in _options(page, "category_id")}
    form["category_id"] = cats["Software"]
    moved = c.post(f"/requests/{first}/category", data=form, follow_redirects=False)
    assert moved.status_code == 303, moved.text[:2000]
    assert _category_of(app, first) == "Software"

    page = c.get("/categories").text
    action = f"/categories/{cats['Hardware']}/delete"
    form = form_fields(page, action)
    form["move_to"] = cats["Software"]
    deleted = c.post(action, data=form, follow_redirects=False)
    assert deleted.status_code == 303, deleted.text[:2000]
    assert _category_of(app, second) == "Software"
    assert "Hardware" not in c.get("/categories").text


def _options(page: str, select: str) -> list[tuple[str, str]]:
    import re

    block = re.search(rf'<select name="{select}".*?</select>', page, re.S)
    assert block, f"no select {select}"
    return [(v, t.strip()) for v, t in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', block.group(0))
            if v]
