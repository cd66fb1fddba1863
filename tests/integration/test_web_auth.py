# ruff: noqa: F811 - fixtures are imported from web_support by name
"""Who gets in: login, throttling, CSRF refusal, bearer tokens, cookies and security headers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.admin import users
from shared.db import transaction
from tests.integration.web_support import ADMIN, admin, browser_client, csrf_of, log_in, web_app  # noqa: F401

pytestmark = pytest.mark.integration


def test_pages_and_api_need_a_login_but_probes_and_login_do_not(web_app, admin):
    with TestClient(web_app) as client:
        page = client.get("/mailboxes", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/mailboxes"
        assert client.get("/api/v1/mailboxes").status_code == 401
        assert client.get("/api/v1/openapi.json").status_code == 401
        assert client.get("/healthz").status_code == 200
        login = client.get("/login")
        assert login.status_code == 200
        csp = login.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert "<script>" not in login.text  # no inline script anywhere: the CSP would refuse it


def test_login_sets_an_id_only_cookie_and_logout_ends_the_session(web_app, admin, app):
    with TestClient(web_app) as client:
        assert log_in(client, ADMIN[0], "wrong password!").status_code == 401
        answer = log_in(client)
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        value = client.cookies["deskmail_session"]
        assert ADMIN[0] not in value and len(value) >= 40
        with app.pool.connection() as conn:  # the database holds only a digest of it
            assert conn.execute("SELECT count(*) AS n FROM web_sessions WHERE id_hash = %s",
                                (value,)).fetchone()["n"] == 0
        page = client.get("/mailboxes")
        assert page.status_code == 200
        client.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert client.get("/mailboxes", follow_redirects=False).status_code == 303


def test_login_is_throttled_after_repeated_failures(web_app, admin):
    with TestClient(web_app) as client:
        for _ in range(users.MAX_FAILURES):
            assert log_in(client, ADMIN[0], "not the password").status_code == 401
        refused = log_in(client)  # even the right password waits now
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "Too many failed logins" in refused.text


def test_login_form_without_its_token_is_refused(web_app, admin):
    with TestClient(web_app) as client:
        answer = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]},
                             follow_redirects=False)
        assert answer.status_code == 403


def test_state_changes_with_the_cookie_need_the_csrf_token(browser_client):
    c = browser_client
    new = {"from_name": "A", "address": "a@x.test", "account_type": "imap", "host": "h", "username": "u"}
    assert c.post("/api/v1/mailboxes", json=new).status_code == 403
    assert c.post("/api/v1/mailboxes", json=new, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert c.post("/categories", data={"name": "Sales"}).status_code == 403
    assert c.get("/api/v1/mailboxes").json() == []  # nothing was created
    assert c.post("/api/v1/mailboxes", json=new, headers={"X-CSRF-Token": c.csrf}).status_code == 201
    assert c.post("/categories", data={"name": "Sales", "csrf_token": c.csrf},
                  follow_redirects=False).status_code == 303


def test_bearer_tokens(web_app, admin, app):
    with TestClient(web_app) as client:
        assert client.get("/api/v1/mailboxes", headers={"Authorization": "Bearer dmk_wrong"}).status_code == 401
        ok = client.post("/api/v1/categories", json={"name": "Ops"}, headers={"Authorization": f"Bearer {admin}"})
        assert ok.status_code == 201  # no CSRF token needed: no cookie is involved
        with transaction(app.pool) as conn:
            conn.execute("UPDATE api_tokens SET revoked_at = now()")
        assert client.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {admin}"}).status_code == 401


def test_no_secret_in_pages_api_or_openapi(browser_client, caplog):
    c = browser_client
    secret = "pw-Zq8-never-shown"
    saved = c.post("/api/v1/mailboxes", headers={"X-CSRF-Token": c.csrf}, json={
        "from_name": "A", "address": "a@x.test", "account_type": "imap", "host": "h", "username": "u",
        "password": secret}).json()
    for path in ("/api/v1/mailboxes", f"/api/v1/mailboxes/{saved['id']}", f"/mailboxes/{saved['id']}",
                 "/mailboxes", "/api/v1/openapi.json"):
        assert secret not in c.get(path).text
    assert secret not in caplog.text
