"""Signed Message-IDs: round trip, and every kind of tampering is refused."""

from __future__ import annotations

import re

import pytest

from shared.msgid import make_message_id, request_id_from_message_id

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def test_shape_and_round_trip():
    mid = make_message_id(123, 7, KEY, "mail.example.com")
    assert re.fullmatch(r"dm\.123\.7\.[a-z2-7]{16}@mail\.example\.com", mid)
    assert "<" not in mid and ">" not in mid
    assert request_id_from_message_id(mid, KEY) == 123


def test_deterministic_and_distinct_per_outgoing_mail():
    assert make_message_id(5, 1, KEY, "x.org") == make_message_id(5, 1, KEY, "x.org")
    assert make_message_id(5, 1, KEY, "x.org") != make_message_id(5, 2, KEY, "x.org")


def test_angle_brackets_whitespace_and_case_are_accepted():
    mid = make_message_id(42, 0, KEY, "x.org")
    assert request_id_from_message_id(f"  <{mid}>\r\n", KEY) == 42
    assert request_id_from_message_id(mid.upper(), KEY) == 42


def test_large_ids():
    mid = make_message_id(10**18 - 1, 10**18 - 1, KEY, "x.org")
    assert request_id_from_message_id(mid, KEY) == 10**18 - 1


def test_domain_is_not_part_of_the_signature():
    mid = make_message_id(42, 3, KEY, "a.example")
    assert request_id_from_message_id(mid.replace("a.example", "b.example"), KEY) == 42


def _swap_char(s: str, i: int) -> str:
    return s[:i] + ("a" if s[i] != "a" else "b") + s[i + 1 :]


def test_tampered_request_id_is_refused():
    mid = make_message_id(42, 3, KEY, "x.org")
    assert request_id_from_message_id(mid.replace("dm.42.", "dm.43.", 1), KEY) is None
    # A leading zero spells the same number but is not what we signed.
    assert request_id_from_message_id(mid.replace("dm.42.", "dm.042.", 1), KEY) is None


def test_tampered_outgoing_id_is_refused():
    mid = make_message_id(42, 3, KEY, "x.org")
    assert request_id_from_message_id(mid.replace(".3.", ".4.", 1), KEY) is None


def test_every_signature_character_matters():
    mid = make_message_id(42, 3, KEY, "x.org")
    sig_start = len("dm.42.3.")
    for i in range(sig_start, sig_start + 16):
        assert request_id_from_message_id(_swap_char(mid, i), KEY) is None, i


def test_truncated_or_extended_signature_is_refused():
    mid = make_message_id(42, 3, KEY, "x.org")
    local, domain = mid.split("@")
    assert request_id_from_message_id(f"{local[:-1]}@{domain}", KEY) is None
    assert request_id_from_message_id(f"{local}a@{domain}", KEY) is None


def test_wrong_key_is_refused():
    mid = make_message_id(42, 3, KEY, "x.org")
    assert request_id_from_message_id(mid, OTHER_KEY) is None
    assert request_id_from_message_id(mid, b"") is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "<>",
        "CAF=abc123@mail.gmail.com",
        "dm.42.3@x.org",
        "dm.42.3.aaaaaaaaaaaaaaaa",
        "dm.-1.3.aaaaaaaaaaaaaaaa@x.org",
        "dm.42.3.aaaaaaaaaaaaaaaa@x.org\r\nBcc: a@b",
        "xdm.42.3.aaaaaaaaaaaaaaaa@x.org",
        "dm.42.3.aaaaaaaaaaaaaaa1@x.org",  # 1 is not base32
        "\x00" * 100,
    ],
)
def test_foreign_ids_and_garbage_give_none(garbage: str):
    assert request_id_from_message_id(garbage, KEY) is None


def test_non_string_gives_none():
    assert request_id_from_message_id(None, KEY) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_id", "outgoing_id", "key", "domain"),
    [
        (0, 1, KEY, "x.org"),
        (-5, 1, KEY, "x.org"),
        (1, -1, KEY, "x.org"),
        (10**18, 1, KEY, "x.org"),
        (True, 1, KEY, "x.org"),
        (1, 1, b"", "x.org"),
        (1, 1, KEY, ""),
        (1, 1, KEY, "x.org>\r\nBcc: a@b"),
        (1, 1, KEY, "bad domain"),
        (1, 1, KEY, "a@b"),
    ],
)
def test_make_rejects_bad_input(request_id, outgoing_id, key, domain):
    with pytest.raises(ValueError):
        make_message_id(request_id, outgoing_id, key, domain)
