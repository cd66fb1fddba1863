# ruff: noqa: F811 - fixtures are imported from web_support by name
"""Parity: every field of the seed page is set and read back the same through the form, the API
and the CLI, and an invalid value gets the same message from each of the three."""

from __future__ import annotations

import html
import json
import re

import pytest

from services.admin import categories
from services.cli import main as cli
from shared import smtp_settings
from shared.db import transaction
from tests.integration.web_support import admin, api, browser_client, web_app  # noqa: F401

pytestmark = pytest.mark.integration

# The seed page's fields, as each front end spells them.
SEED = {
    "from_name": "{{ agent.name if agent else mailbox.name }} at ACME",
    "folder": "Support/Incoming",
    "archive": True,
    "archive_folder": "Done",
    "host": "imap.acme.test",
    "username": "helpdesk",
    "account_type": "imap",
    "port": 10993,
    "security": "starttls",
    "allow_self_signed": True,
    "auto_reply": True,
}


@pytest.fixture
def refs(app):
    with transaction(app.pool) as conn:
        category = categories.create(conn, "Hardware")
        smtp = smtp_settings.create(conn, app.keys, {"name": "relay", "host": "smtp.acme.test"}, None)
    return {"category_id": category, "smtp_id": smtp}


@pytest.fixture
def cli_env(monkeypatch, settings):
    import logging

    # The CLI sets up its own log handler (on the captured stderr); put pytest's back afterwards.
    saved = (list(logging.root.handlers), logging.root.level)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("AMQP_URL", settings.amqp_url)
    monkeypatch.setenv("DESKMAIL_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("DESKMAIL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DESKMAIL_MAILBOX_PASSWORD", "pw-of-the-cli")
    yield
    logging.root.handlers[:] = saved[0]
    logging.root.setLevel(saved[1])


def _via_api(api, to: str, refs: dict, **over):
    return api.post("/api/v1/mailboxes", json={**SEED, **refs, "address": to, "password": "pw", **over})



def _form(to: str, refs: dict, csrf: str, **over) -> dict:
    form = {k: str(v) for k, v in SEED.items() if not isinstance(v, bool)}
    form.update({"address": to, "password": "pw", "archive": "on", "auto_reply": "on", "enabled": "on",
                 "poll_interval": "60", "max_per_poll": "500", "max_message_bytes": "1000",
                 "category_id": str(refs["category_id"]), "smtp_id": str(refs["smtp_id"]),
                 "csrf_token": csrf, "action": "save"})
    # allow_self_signed=True is "verify the certificate" left unticked: no verify_tls field.
    form.update(over)
    return form


def _via_cli(capsys, to: str, **over) -> tuple[int, str]:
    opts = {"from-name": SEED["from_name"], "address": to, "folder": SEED["folder"],
            "archive-folder": SEED["archive_folder"], "host": SEED["host"], "username": SEED["username"],
            "type": SEED["account_type"], "port": str(SEED["port"]), "security": SEED["security"],
            "category": "Hardware", "smtp": "relay", **over}
    argv = ["mailbox", "add", *[x for k, v in opts.items() for x in (f"--{k}", v)],
            "--archive", "--auto-reply", "--allow-self-signed"]
    capsys.readouterr()
    code = cli(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _expected(refs: dict) -> dict:
    return {**SEED, **refs, "has_password": True}


def test_every_seed_field_round_trips_through_api_form_and_cli(api, browser_client, refs, capsys, cli_env):
    expected = _expected(refs)
    by_api = _via_api(api, "api@acme.test", refs)
    assert by_api.status_code == 201, by_api.text

    page = browser_client.post("/mailboxes/new", data=_form("form@acme.test", refs, browser_client.csrf),
                               follow_redirects=False)
    assert page.status_code == 303, page.text
    form_id = int(re.search(r"/mailboxes/(\d+)", page.headers["location"]).group(1))

    code, out = _via_cli(capsys, "cli@acme.test")
    assert code == 0, out
    cli_id = int(re.search(r"mailbox (\d+) added", out).group(1))

    for mailbox_id in (by_api.json()["id"], form_id, cli_id):
        saved = api.get(f"/api/v1/mailboxes/{mailbox_id}").json()
        assert {k: saved[k] for k in expected} == expected, mailbox_id

    # Read back through the form page and the CLI as well.
    shown = browser_client.get(f"/mailboxes/{cli_id}").text
    for field in ("from_name", "folder", "archive_folder", "host", "username", "port"):
        assert f'name="{field}"' in shown and html.escape(str(SEED[field])) in shown, field
    assert 'name="verify_tls" >' in shown or 'name="verify_tls" ' in shown
    assert 'name="verify_tls" checked' not in shown  # allow_self_signed is on: verification off
    capsys.readouterr()
    assert cli(["mailbox", "show", str(form_id), "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    assert {k: from_cli[k] for k in SEED} == SEED
    assert from_cli["password"] == "(set, not shown)"


@pytest.mark.parametrize(("field", "cli_opt", "bad"), [
    ("port", "port", "abc"),
    ("account_type", "type", "imap4"),
    ("address", "address", "not-an-address"),
    ("poll_interval", "poll-interval", "0"),
    ("from_name", "from-name", "{{ customer.nmae }}"),
])
def test_an_invalid_value_gets_the_same_message_from_each(api, browser_client, refs, capsys, cli_env,
                                                        field, cli_opt, bad):
    address = "bad@acme.test"
    from_api = _via_api(api, address, refs, **{field: bad})
    assert from_api.status_code == 422
    message = from_api.json()["errors"][field]

    page = browser_client.post("/mailboxes/new", data=_form(address, refs, browser_client.csrf, **{field: bad}))
    assert page.status_code == 422
    shown = re.search(rf'<span class="field-error" id="{field}-error">(.*?)</span>', page.text, re.S)
    assert shown and html.unescape(shown.group(1)) == message

    code, out = _via_cli(capsys, address, **{cli_opt: bad})
    assert code == 2
    assert f"error: {field}: {message}" in out


@pytest.mark.parametrize(("field", "options"), [
    ("oauth_tenant", {"provider": "microsoft", "flow": "client_credentials", "client-id": "app"}),
    ("oauth_token_url", {"provider": "generic", "flow": "refresh_token", "client-id": "app"}),
    ("oauth_authorize_url", {"provider": "generic", "client-id": "app", "token-url": "http://example.com/t"}),
])
def test_an_invalid_oauth2_setting_gets_the_same_message_from_each(api, browser_client, refs, capsys, cli_env,
                                                                 field, options):
    oauth = {f"oauth_{k.replace('-', '_')}": v for k, v in options.items()}
    address = "oauth@acme.test"
    from_api = _via_api(api, address, refs, auth_method="oauth2", **oauth)
    assert from_api.status_code == 422, from_api.text
    message = from_api.json()["errors"][field]

    page = browser_client.post("/mailboxes/new", data=_form(address, refs, browser_client.csrf,
                                                            auth_method="oauth2", **oauth))
    assert page.status_code == 422
    shown = re.search(rf'<span class="field-error" id="{field}-error">(.*?)</span>', page.text, re.S)
    assert shown and html.unescape(shown.group(1)) == message

    code, out = _via_cli(capsys, address, auth="oauth2", **{f"oauth-{k}": v for k, v in options.items()})
    assert code == 2
    assert f"error: {field}: {message}" in out


def _comparable(value):
    """JSON from the CLI and from the API, with timestamps read back (the two spell them differently)."""
    import datetime as dt

    if isinstance(value, dict):
        return {k: (dt.datetime.fromisoformat(v) if k.endswith("_at") and isinstance(v, str) else _comparable(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def test_requests_list_and_detail_are_one_view_in_api_and_cli(api, app, capsys, cli_env):
    from tests.integration.replier_helpers import add_mailbox, ingest, mail

    mailbox = add_mailbox(app, "support@acme.test", auto_reply=False)
    first = ingest(app, mailbox, mail("Ada <ada@customer.example>", "support@acme.test",
                                      headers="Cc: bob@customer.example\r\n"))[0]["request_id"]
    ingest(app, mailbox, mail("grace@other.example", "support@acme.test", subject="Second"))
    capsys.readouterr()
    assert cli(["requests", "list", "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    from_api = api.get("/api/v1/requests").json()
    assert _comparable(from_cli) == _comparable(from_api["items"])
    for filters, option in (({"customer": "ada@customer.example"}, ["--customer", "ada@customer.example"]),
                            ({"mailbox_id": mailbox, "limit": 1}, ["--mailbox", str(mailbox), "--limit", "1"])):
        assert cli(["requests", "list", "--json", *option]) == 0
        assert _comparable(json.loads(capsys.readouterr().out)) == _comparable(
            api.get("/api/v1/requests", params=filters).json()["items"]), filters

    assert cli(["requests", "show", str(first), "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert _comparable(detail) == _comparable(api.get(f"/api/v1/requests/{first}").json())
    assert detail["people"] == ["ada@customer.example", "bob@customer.example"]
    assert cli(["requests", "list", "--status", "gone"]) == 2
    assert "error: status: must be one of open, closed, not 'gone'" in capsys.readouterr().err


@pytest.mark.parametrize(("field", "cli_opt", "bad"), [
    ("smtp_port", "smtp-port", "abc"),
    ("smtp_host", "smtp-host", "smtp example"),
    ("smtp_security", "smtp-security", "ssl"),
])
def test_the_smtp_section_gets_the_same_message_from_each(api, browser_client, refs, capsys, cli_env,
                                                         field, cli_opt, bad):
    address = "smtp@acme.test"
    section = {"smtp_id": "custom", "smtp_host": "smtp.acme.test", "smtp_port": "587",
               "smtp_security": "starttls", field: bad}
    from_api = _via_api(api, address, refs, **section)
    assert from_api.status_code == 422, from_api.text
    message = from_api.json()["errors"][field]

    page = browser_client.post("/mailboxes/new", data=_form(address, refs, browser_client.csrf, **section))
    assert page.status_code == 422
    shown = re.search(rf'<span class="field-error" id="{field}-error">(.*?)</span>', page.text, re.S)
    assert shown and html.unescape(shown.group(1)) == message

    options = {"smtp": "custom", "smtp-host": "smtp.acme.test", "smtp-port": "587", "smtp-security": "starttls",
               cli_opt: bad}
    code, out = _via_cli(capsys, address, **options)
    assert code == 2
    assert f"error: {field}: {message}" in out


def test_changing_shared_smtp_settings_asks_the_same_from_each(api, browser_client, app, refs, capsys, cli_env):
    mailbox = _via_api(api, "shares@acme.test", refs).json()["id"]  # sends with "relay"
    _via_api(api, "other@acme.test", refs)
    answer = api.patch(f"/api/v1/mailboxes/{mailbox}", json={"smtp_username": "someone-else"})
    assert answer.status_code == 422
    message = answer.json()["errors"]["smtp_edit"]
    assert "other@acme.test" in message

    from tests.integration.web_support import form_fields

    form = form_fields(browser_client.get(f"/mailboxes/{mailbox}").text, f"/mailboxes/{mailbox}")
    form.update(smtp_username="someone-else", action="save")
    page = browser_client.post(f"/mailboxes/{mailbox}", data=form)
    shown = re.search(r'<span class="field-error" id="smtp_edit-error">(.*?)</span>', page.text, re.S)
    assert page.status_code == 422 and shown and html.unescape(shown.group(1)) == message

    capsys.readouterr()
    assert cli(["mailbox", "edit", str(mailbox), "--smtp-username", "someone-else"]) == 2
    assert f"error: smtp_edit: {message}" in capsys.readouterr().err
    assert cli(["mailbox", "edit", str(mailbox), "--smtp-username", "someone-else", "--smtp-edit", "copy"]) == 0
    assert api.get(f"/api/v1/mailboxes/{mailbox}").json()["smtp"]["use"] == "custom"
    with app.pool.connection() as conn:
        assert conn.execute("SELECT username FROM smtp_settings WHERE id = %s",
                            (refs["smtp_id"],)).fetchone()["username"] is None  # "relay" untouched


def test_send_test_mail_accepts_and_refuses_alike(api, browser_client, app, refs, capsys, cli_env, smtp_sink):
    with transaction(app.pool) as conn:
        conn.execute("UPDATE smtp_settings SET host = %s, port = %s, security = 'none' WHERE id = %s",
                     (smtp_sink.host, smtp_sink.port, refs["smtp_id"]))
    mailbox = _via_api(api, "tests@acme.test", refs).json()["id"]
    from_api = api.post(f"/api/v1/mailboxes/{mailbox}/test-mail", json={"test_to": "not-an-address"})
    assert from_api.status_code == 422, from_api.text
    message = from_api.json()["errors"]["test_to"]

    from tests.integration.web_support import form_fields

    form = form_fields(browser_client.get(f"/mailboxes/{mailbox}").text, f"/mailboxes/{mailbox}")
    page = browser_client.post(f"/mailboxes/{mailbox}", data={**form, "action": "send_test",
                                                              "test_to": "not-an-address"})
    shown = re.search(r'<span class="field-error" id="test_to-error">(.*?)</span>', page.text, re.S)
    assert page.status_code == 422 and shown and html.unescape(shown.group(1)) == message
    capsys.readouterr()
    assert cli(["mailbox", "test-mail", str(mailbox), "--to", "not-an-address"]) == 2
    assert f"error: test_to: {message}" in capsys.readouterr().err

    assert api.post(f"/api/v1/mailboxes/{mailbox}/test-mail", json={"test_to": "api@example.com"}).json()["ok"]
    page = browser_client.post(f"/mailboxes/{mailbox}", data={**form, "action": "send_test",
                                                              "test_to": "form@example.com"})
    assert "test mail sent to form@example.com" in page.text
    assert cli(["mailbox", "test-mail", str(mailbox), "--to", "cli@example.com"]) == 0
    sent = smtp_sink.wait_for(3)
    assert sorted(m.rcpt_tos[0] for m in sent) == ["api@example.com", "cli@example.com", "form@example.com"]
    assert {m.message["Subject"] for m in sent} == {"Deskmail test mail"}
