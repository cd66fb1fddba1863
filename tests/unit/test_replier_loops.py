"""Auto-reply loop guards (invariant 7): who never gets an auto-reply, and rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.replier.loops import (
    DEFAULT_RATE_WINDOWS,
    auto_reply_refusal,
    parse_rate_windows,
    rate_limit_refusal,
)
from shared.parsed import AUTOMATIC_KINDS, Address, Bounce, ParsedMessage

OWN = frozenset({"support@acme.example", "Sales@ACME.example"})


def _mail(sender: str | None = "ada@example.com", **kw: object) -> ParsedMessage:
    from_ = Address(name="Ada", address=sender) if sender is not None else None
    return ParsedMessage(from_=from_, subject="Printer on fire", **kw)  # type: ignore[arg-type]


def test_a_person_gets_an_auto_reply():
    assert auto_reply_refusal(_mail(), own_addresses=OWN) is None


@pytest.mark.parametrize("kind", AUTOMATIC_KINDS)
def test_every_automatic_kind_is_refused(kind: str):
    assert auto_reply_refusal(_mail(automatic=kind), own_addresses=OWN) is not None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("auto_replied", "automatic mail (auto_replied)"),
        ("auto_generated", "automatic mail (auto_generated)"),
        ("out_of_office", "automatic mail (out_of_office)"),
        ("own", "automatic mail (own)"),
        ("bulk", "bulk or list mail"),
        ("list", "bulk or list mail"),
        ("bounce", "bounce"),
        ("some_future_kind", "automatic mail (some_future_kind)"),
    ],
)
def test_automatic_reasons(kind: str, reason: str):
    assert auto_reply_refusal(_mail(automatic=kind), own_addresses=OWN) == reason


def test_a_bounce_is_refused_even_without_the_flag():
    mail = _mail(bounce=Bounce(original_message_id="x@y", recipient="a@b"))
    assert auto_reply_refusal(mail, own_addresses=OWN) == "bounce"


def test_unparsed_mail_is_refused():
    reason = auto_reply_refusal(_mail(unparsed="no headers"), own_addresses=OWN)
    assert reason is not None and "could not be parsed" in reason


@pytest.mark.parametrize("sender", [None, "", "   ", "nobody-without-at"])
def test_no_sender_address(sender: str | None):
    assert auto_reply_refusal(_mail(sender), own_addresses=OWN) == "no sender address"


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("MAILER-DAEMON@mx.example.com", "sender is a mailer-daemon"),
        ("mailer-daemon@mx.example.com", "sender is a mailer-daemon"),
        ("mailer_daemon@mx.example.com", "sender is a mailer-daemon"),
        ("Postmaster@example.com", "sender is a mailer-daemon"),
        ("noreply@example.com", "sender is a no-reply address"),
        ("no-reply@example.com", "sender is a no-reply address"),
        ("No_Reply@example.com", "sender is a no-reply address"),
        ("no.reply+tag@example.com", "sender is a no-reply address"),
        ("NOREPLY+abc@example.com", "sender is a no-reply address"),
        ("do-not-reply@example.com", "sender is a no-reply address"),
        ("donotreply@example.com", "sender is a no-reply address"),
        ("do_not_reply@example.com", "sender is a no-reply address"),
        ("jira-noreply@example.com", "sender is a no-reply address"),
        ("noreply-12345@example.com", "sender is a no-reply address"),
        ('"no-reply"@example.com', "sender is a no-reply address"),
        ("bounce@example.com", "sender is a bounce address"),
        ("bounces@example.com", "sender is a bounce address"),
        ("bounces+12345-ada=example.com@lists.example.org", "sender is a bounce address"),
        ("bounce-mc.us4_123.456-ada=example.com@mail.example.net", "sender is a bounce address"),
        ("owner-users@lists.example.org", "sender is a mailing-list address"),
        ("users-request@lists.example.org", "sender is a mailing-list address"),
        ("majordomo@lists.example.org", "sender is a mailing-list address"),
    ],
)
def test_do_not_reply_senders(sender: str, reason: str):
    assert auto_reply_refusal(_mail(sender), own_addresses=OWN) == reason


@pytest.mark.parametrize(
    "sender",
    [
        "noreen@example.com",
        "reply@example.com",
        "norris@example.com",
        "bob.bounce@example.com",
        "post@example.com",
        "daemon.fan@example.com",
        "ada+noreply-in-tag@example.com",
        "support@acme.example.org",
        "support@other.example",
    ],
)
def test_ordinary_senders_are_not_refused(sender: str):
    assert auto_reply_refusal(_mail(sender), own_addresses=OWN) is None


@pytest.mark.parametrize(
    "sender",
    [
        "support@acme.example",
        "SUPPORT@Acme.Example",
        "support+123@acme.example",
        "sales@acme.example",
        " <Sales@acme.EXAMPLE> ",
    ],
)
def test_own_mailboxes_are_refused(sender: str):
    reason = auto_reply_refusal(_mail(sender), own_addresses=OWN)
    assert reason == "sender is one of Deskmail's own mailboxes"


def test_reply_to_is_checked_too():
    mail = _mail(reply_to=[Address(name="", address="Support@acme.example")])
    assert (
        auto_reply_refusal(mail, own_addresses=OWN) == "sender is one of Deskmail's own mailboxes"
    )
    mail = _mail(reply_to=[Address(name="", address="no-reply@example.com")])
    assert auto_reply_refusal(mail, own_addresses=OWN) == "sender is a no-reply address"


def test_no_own_addresses():
    assert auto_reply_refusal(_mail("support@acme.example"), own_addresses=frozenset()) is None


# ---- rate limits ----------------------------------------------------------------

NOW = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)


def _ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


def test_default_windows():
    assert DEFAULT_RATE_WINDOWS == [
        (timedelta(minutes=10), 1),
        (timedelta(hours=1), 5),
        (timedelta(days=1), 20),
    ]


def test_first_auto_reply_is_allowed():
    assert rate_limit_refusal([], NOW, DEFAULT_RATE_WINDOWS) is None


def test_one_per_ten_minutes():
    reason = rate_limit_refusal([_ago(minutes=9)], NOW, DEFAULT_RATE_WINDOWS)
    assert reason == "rate limit: 1 auto-replies to this sender in the last 10m (limit 1)"
    assert rate_limit_refusal([_ago(minutes=10)], NOW, DEFAULT_RATE_WINDOWS) is None
    assert rate_limit_refusal([_ago(minutes=11)], NOW, DEFAULT_RATE_WINDOWS) is None


def test_five_per_hour():
    sent = [_ago(minutes=m) for m in (11, 20, 30, 40, 50)]
    reason = rate_limit_refusal(sent, NOW, DEFAULT_RATE_WINDOWS)
    assert reason is not None and "last 1h (limit 5)" in reason
    assert rate_limit_refusal(sent[:4], NOW, DEFAULT_RATE_WINDOWS) is None


def test_twenty_per_day():
    sent = [_ago(hours=1, minutes=5 + 60 * i) for i in range(20)]
    assert all(NOW - t < timedelta(days=1) for t in sent)
    reason = rate_limit_refusal(sent, NOW, DEFAULT_RATE_WINDOWS)
    assert reason is not None and "last 1d (limit 20)" in reason
    assert rate_limit_refusal(sent[:19], NOW, DEFAULT_RATE_WINDOWS) is None


def test_old_sends_do_not_count():
    sent = [_ago(days=2, minutes=i) for i in range(100)]
    assert rate_limit_refusal(sent, NOW, DEFAULT_RATE_WINDOWS) is None


def test_times_in_the_future_count_as_recent():
    assert rate_limit_refusal([NOW + timedelta(minutes=5)], NOW, DEFAULT_RATE_WINDOWS)


def test_windows_default_to_the_defaults():
    assert rate_limit_refusal([_ago(minutes=1)], NOW) is not None


def test_custom_windows():
    windows = [(timedelta(seconds=30), 3)]
    assert rate_limit_refusal([_ago(seconds=5)] * 2, NOW, windows) is None
    reason = rate_limit_refusal([_ago(seconds=5)] * 3, NOW, windows)
    assert reason == "rate limit: 3 auto-replies to this sender in the last 30s (limit 3)"


# ---- parsing the setting ------------------------------------------------------------


def test_parse_default_setting():
    assert parse_rate_windows("10m:1,1h:5,1d:20") == DEFAULT_RATE_WINDOWS


def test_parse_units_and_spaces():
    assert parse_rate_windows(" 30s:2 , 2w:100 ,90m : 3") == [
        (timedelta(seconds=30), 2),
        (timedelta(weeks=2), 100),
        (timedelta(minutes=90), 3),
    ]


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("10m:1,1x:5", "1x:5"),
        ("10m:1,h:5", "h:5"),
        ("10m", "10m"),
        ("10m:one", "10m:one"),
        ("0m:1", "0m:1"),
        ("10m:0", "10m:0"),
        ("10m:1,,1d:20", ""),
        ("10m:-1", "10m:-1"),
    ],
)
def test_parse_errors_name_the_bad_part(text: str, bad_part: str):
    with pytest.raises(ValueError) as info:
        parse_rate_windows(text)
    assert repr(bad_part) in str(info.value)


@pytest.mark.parametrize("text", ["", "  ", ","])
def test_parse_refuses_no_windows(text: str):
    with pytest.raises(ValueError, match="no rate windows"):
        parse_rate_windows(text)
