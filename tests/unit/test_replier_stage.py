"""The replier stage's pure parts: recipients, settings, SMTP error wording, session reuse."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from services.replier.stage import _recipient, rate_windows
from shared.mailserver import smtp
from shared.settings import Settings
from shared.smtp_settings import SmtpSettings, validate


def _row(parsed: dict | None, customer: str | None = "c@example.com") -> dict:
    return {"parsed": parsed, "customer_address": customer, "customer_name": "C"}


def test_auto_reply_goes_to_reply_to_then_from_then_customer():
    both = {"reply_to": [{"name": "R", "address": "r@example.com"}],
            "from": {"name": "F", "address": "f@example.com"}}
    assert _recipient(_row(both)) == ("r@example.com", "R", None)
    assert _recipient(_row({"from": {"name": "F", "address": "f@example.com"}}))[0] == "f@example.com"
    assert _recipient(_row(None)) == ("c@example.com", "C", None)
    assert _recipient(_row(None, None))[2] == "no address to reply to"


def test_an_address_that_could_break_a_header_is_refused_not_used():
    evil = {"from": {"name": "", "address": "a@example.com\r\nBcc: b@example.com"}}
    assert "cannot reply to this address" in _recipient(_row(evil))[2]


def test_rate_limits_come_from_settings_and_bad_ones_stop_the_stage():
    assert [n for _, n in rate_windows(Settings())] == [1, 5, 20]
    assert [n for _, n in rate_windows(Settings(auto_reply_limits="30s:2"))] == [2]
    with pytest.raises(SystemExit, match="DESKMAIL_AUTO_REPLY_LIMITS"):
        rate_windows(Settings(auto_reply_limits="lots"))


def test_settings_read_the_rate_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("DESKMAIL_AUTO_REPLY_LIMITS", "1h:3")
    assert Settings.from_env().auto_reply_limits == "1h:3"
    monkeypatch.delenv("DESKMAIL_AUTO_REPLY_LIMITS")
    assert Settings.from_env().auto_reply_limits == "10m:1,1h:5,1d:20"


def test_smtp_settings_validation_speaks_plainly():
    errors = validate({"name": "system", "host": "a b", "port": 0, "security": "ssl"},
                      is_system=False)
    assert set(errors) == {"name", "host", "port", "security"}
    assert "set-system" in errors["name"]
    assert validate({"name": "x", "host": "smtp.example.com", "port": 587,
                     "security": "starttls"}, is_system=False) == {}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_names_the_failing_step_and_the_fix():
    s = SmtpSettings(1, "x", True, "127.0.0.1", _closed_port(), "none", None)
    [(step, ok, detail)] = smtp.check(s, timeout=2)
    assert (step, ok) == ("connect", False) and "connection refused" in detail
    bad_host = replace(s, host="no-such-host.invalid")
    assert "cannot be resolved" in smtp.check(bad_host, timeout=2)[0][2]


def test_refused_connection_is_transient_and_the_password_is_not_in_repr():
    s = SmtpSettings(1, "x", True, "127.0.0.1", _closed_port(), "none", "u", "hunter2")
    with pytest.raises(smtp.Transient, match="connection refused"):
        smtp.Sender(timeout=2).send(s, "a@example.com", ["b@example.com"], b"x")
    assert "hunter2" not in repr(s)


class _FakeClient:
    def __init__(self) -> None:
        self.noops = 0

    def noop(self) -> tuple[int, bytes]:
        self.noops += 1
        return 250, b"ok"


def test_a_session_used_just_now_is_reused_without_noop(monkeypatch):
    sender = smtp.Sender()
    s = SmtpSettings(1, "x", True, "h", 25, "none", None)
    client = _FakeClient()
    now = [100.0]
    monkeypatch.setattr(smtp.time, "monotonic", lambda: now[0])
    sender._sessions[s] = (client, 99.0)
    assert sender._session(s) == (client, True) and client.noops == 0
    now[0] = 100.0 + smtp.FRESH + 1  # idle a while: probe first
    assert sender._session(s) == (client, True) and client.noops == 1
