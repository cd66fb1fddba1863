"""Mailbox settings: every bad value is refused with a message that names its field."""

from __future__ import annotations

import pytest

from shared.mailboxes import DEFAULTS, Mailbox, validate

GOOD = {**DEFAULTS, "from_name": "Support", "address": "support@example.com", "host": "mail.example.com",
        "username": "support", "account_type": "imap"}


def test_good_values_pass():
    assert validate(GOOD) == {}
    assert validate({**GOOD, "account_type": "pop3", "archive": False}) == {}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"account_type": "exchange"}, "account_type", "imap, pop3"),
    ({"security": "ssl"}, "security", "none, starttls, tls"),
    ({"port": 0}, "port", "between 1 and 65535"),
    ({"port": 70000}, "port", "between 1 and 65535"),
    ({"account_type": "pop3", "archive": True}, "archive", "IMAP only"),
    ({"account_type": "pop3", "archive": False, "folder": "Support"}, "folder", "POP3 has no folders"),
    ({"archive_folder": "inbox"}, "archive_folder", "must differ"),
    ({"archive_folder": " "}, "archive_folder", "must not be empty"),
    ({"host": ""}, "host", "must not be empty"),
    ({"username": ""}, "username", "must not be empty"),
    ({"folder": ""}, "folder", "must not be empty"),
    ({"address": "support"}, "address", "email address"),
    ({"poll_interval": 0}, "poll_interval", "positive"),
    ({"max_per_poll": -1}, "max_per_poll", "positive"),
    ({"max_message_bytes": "big"}, "max_message_bytes", "positive"),
])
def test_bad_value_names_its_field(change, field, words):
    errors = validate({**GOOD, **change})
    assert field in errors and words in errors[field], errors


@pytest.mark.parametrize(("kind", "security", "port"), [
    ("imap", "none", 143), ("imap", "starttls", 143), ("imap", "tls", 993),
    ("pop3", "none", 110), ("pop3", "starttls", 110), ("pop3", "tls", 995),
])
def test_usual_port_when_none_is_given(kind, security, port):
    values = {k: GOOD.get(k) for k in Mailbox.__dataclass_fields__ if k != "password"}
    mailbox = Mailbox(**{**values, "id": 1, "account_type": kind, "security": security, "port": None})
    assert mailbox.effective_port == port
    assert Mailbox(**{**values, "id": 1, "account_type": kind, "security": security, "port": 10143}).effective_port == 10143


def test_pop3_never_archives():
    values = {k: GOOD.get(k) for k in Mailbox.__dataclass_fields__ if k != "password"}
    assert Mailbox(**{**values, "id": 1, "account_type": "pop3", "archive": True}).archives is False
    assert Mailbox(**{**values, "id": 1, "archive": True}).archives is True
