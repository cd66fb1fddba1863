"""build_message: the header set is exactly ours, whatever incoming mail puts in names,
subjects and ids (invariant 8); non-ASCII round-trips; bodies decode to what went in."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.replier.compose import build_message, sanitize_header_text, validate_address

AUTO_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "MIME-Version",
    "Content-Type",
]
STAFF_HEADERS = [h for h in AUTO_HEADERS if h not in ("Auto-Submitted", "X-Auto-Response-Suppress")]
DATE = datetime(2024, 5, 17, 9, 30, 0, tzinfo=UTC)


def _build(**overrides: object) -> bytes:
    args: dict[str, object] = dict(
        from_name="ACME Support",
        from_address="support@acme.example",
        to_name="Ada Lovelace",
        to_address="ada@example.com",
        subject="[#123] Printer on fire",
        body_text="Hello Ada,\nwe got your mail.\n",
        body_html="<p>Hello Ada,</p>",
        message_id="dm.123.1.abcdefghijklmnop@acme.example",
        in_reply_to="<CAF123@mail.example.com>",
        references=["<root@mail.example.com>", "<CAF123@mail.example.com>"],
        auto_reply=True,
        date=DATE,
    )
    args.update(overrides)
    return build_message(**args)  # type: ignore[arg-type]


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _text(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n")


# ---- the header set -------------------------------------------------------------


def test_auto_reply_has_exactly_the_expected_headers():
    msg = _parse(_build())
    assert msg.keys() == AUTO_HEADERS
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert "Precedence" not in msg  # RFC 3834 advises against it


def test_staff_reply_has_no_auto_reply_headers():
    assert _parse(_build(auto_reply=False)).keys() == STAFF_HEADERS


def test_header_values():
    msg = _parse(_build())
    assert msg["From"] == "ACME Support <support@acme.example>"
    assert msg["To"] == "Ada Lovelace <ada@example.com>"
    assert msg["Subject"] == "[#123] Printer on fire"
    assert msg["Message-ID"] == "<dm.123.1.abcdefghijklmnop@acme.example>"
    assert msg["In-Reply-To"] == "<CAF123@mail.example.com>"
    assert msg["References"] == "<root@mail.example.com> <CAF123@mail.example.com>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"].datetime == DATE


def test_crlf_line_endings_and_ascii_headers():
    raw = _build(to_name="Zoë", subject="Grüße " * 30)
    assert re.search(rb"(?<!\r)\n", raw) is None
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))


# ---- header injection -------------------------------------------------------------

INJECTIONS = [
    "Hi\r\nBcc: victim@x.example",
    "Hi\nBcc: victim@x.example",
    "Hi\rBcc: victim@x.example",
    "Hi\r\n\r\nBcc: victim@x.example",
    "Hi\x85Bcc: victim@x.example",
    "Hi\u2028Bcc: victim@x.example",
    "Hi\x00\x0bBcc: victim@x.example",
    "Hi\r\n X-Continued: folded",
    "Hi\nX-Evil: 1\nContent-Type: text/html",
]


@pytest.mark.parametrize("evil", INJECTIONS)
@pytest.mark.parametrize("field", ["subject", "from_name", "to_name"])
def test_text_headers_cannot_add_headers(field: str, evil: str):
    raw = _build(**{field: evil})
    msg = _parse(raw)
    assert msg.keys() == AUTO_HEADERS
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    # The text survives, on one line, inside its own header.
    header = {"subject": "Subject", "from_name": "From", "to_name": "To"}[field]
    value = str(msg[header])
    assert "\n" not in value and "\r" not in value
    assert "Hi" in value
    # Every raw header line is either a new header of ours or a continuation.
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith(" ")]
    assert names == AUTO_HEADERS


def test_non_ascii_name_with_injection_is_still_one_header():
    msg = _parse(_build(to_name="Zoë\r\nX-Evil: 1"))
    assert msg.keys() == AUTO_HEADERS
    assert msg["To"].addresses[0].display_name == "Zoë X-Evil: 1"
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"


@pytest.mark.parametrize(
    "evil_id",
    [
        "<a@b>\r\nBcc: victim@x.example",
        "a@b\nX-Evil: 1",
        "<a@b> <c@d>",
        "<a@b>, <c@d>",
        "<(comment)a@b>",
        "",
        "<>",
        "a" * 300 + "@b",
    ],
)
def test_bad_foreign_message_ids_are_dropped(evil_id: str):
    msg = _parse(_build(in_reply_to=evil_id, references=[evil_id, "<ok@x.example>"]))
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["In-Reply-To"] is None
    assert msg["References"] == "<ok@x.example>"
    assert msg.keys() == [h for h in AUTO_HEADERS if h != "In-Reply-To"]


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nBcc: victim@x.example",
        "ada@example.com\n",
        "ada @example.com",
        " ada@example.com",
        "<ada@example.com>",
        "Ada <ada@example.com>",
        "ada@example.com, victim@x.example",
        "ada@example.com;victim@x.example",
        '"ada"@example.com',
        "ada(x)@example.com",
        "ada",
        "@example.com",
        "ada@",
        "a@b@c.example",
        "ada..x@example.com",
        "ada@exa_mple.com",
        "ada@-example.com",
        "ädä@example.com",
        "",
    ],
)
def test_bad_addresses_are_refused(address: str):
    with pytest.raises(ValueError):
        _build(to_address=address)
    with pytest.raises(ValueError):
        _build(from_address=address)


def test_idn_domain_is_encoded():
    assert validate_address("info@bücher.example") == "info@xn--bcher-kva.example"
    assert _parse(_build(to_address="info@bücher.example"))["To"].addresses[0].domain == (
        "xn--bcher-kva.example"
    )


@pytest.mark.parametrize(
    "message_id", ["", "<>", "no-at-sign", "a@b\r\nX-Evil: 1", "a b@c", "<a@b"]
)
def test_bad_own_message_id_is_refused(message_id: str):
    with pytest.raises(ValueError):
        _build(message_id=message_id)


def test_own_message_id_may_come_with_brackets():
    assert _parse(_build(message_id="<x@y.example>"))["Message-ID"] == "<x@y.example>"


def test_sanitize_header_text():
    assert sanitize_header_text(" a\r\n\tb\x00c\u2028d  e ") == "a b c d e"
    assert sanitize_header_text("x\udce9y") == "x\ufffdy"


# ---- non-ASCII and quoting round trips -------------------------------------------

NAMES = [
    "Zoë Ünïcode",
    "李小龍",
    "Иван Петров",
    "Ada 🚀 Lovelace",
    'Doe, John "JD" (QA)',
    "back\\slash",
    "O'Brien",
    "=?utf-8?q?not_an_encoded_word?=",
    "Ünïcödé " * 20,
    "🚀" * 40,
    "a" + " 🚀" * 30,
]


@pytest.mark.parametrize("name", NAMES)
def test_display_names_round_trip(name: str):
    raw = _build(from_name=name, to_name=name)
    msg = _parse(raw)
    for header in ("From", "To"):
        (addr,) = msg[header].addresses
        # Python's address parser keeps the space between two encoded-words
        # (RFC 2047 says drop it), so long encoded names may gain spaces.
        assert "".join(addr.display_name.split()) == "".join(name.split())
    assert msg["From"].addresses[0].addr_spec == "support@acme.example"
    if not name.isascii():
        # An RFC 2047 decoder gets the name back exactly.
        raw_to = email.message_from_bytes(raw)["To"]
        assert str(make_header(decode_header(raw_to))) == f"{name.strip()} <ada@example.com>"


def test_short_non_ascii_name_is_exact_with_python_too():
    assert _parse(_build(to_name="Zoë Ünïcode"))["To"].addresses[0].display_name == "Zoë Ünïcode"


SUBJECTS = [
    "Grüße aus Köln",
    "Заказ №42 не пришёл",
    "请帮忙 [#123]",
    "Emoji 🎉 party",
    "=?utf-8?b?SGk=?= literally",
    "word " * 40 + "end",
    "x" * 2000,
    "Ünïcödé-" * 50,
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects_round_trip(subject: str):
    raw = _build(subject=subject)
    msg = _parse(raw)
    assert msg["Subject"] == subject.strip()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))


def test_empty_names_give_bare_addresses():
    msg = _parse(_build(from_name="", to_name="  \r\n "))
    assert msg["From"] == "support@acme.example"
    assert msg["To"] == "ada@example.com"


# ---- threading headers -----------------------------------------------------------


def test_in_reply_to_is_appended_to_references_once():
    msg = _parse(_build(in_reply_to="<p@x>", references=["<r@x>", "<r@x>"]))
    assert msg["References"] == "<r@x> <p@x>"
    msg = _parse(_build(in_reply_to="<p@x>", references=[]))
    assert msg["References"] == "<p@x>"


def test_no_threading_headers_for_a_fresh_mail():
    msg = _parse(_build(in_reply_to=None, references=[], auto_reply=False))
    assert "In-Reply-To" not in msg and "References" not in msg


def test_long_references_are_trimmed_and_folded():
    refs = [f"<id{i}.{'x' * 30}@mail.example.com>" for i in range(50)]
    raw = _build(in_reply_to=refs[-1], references=refs)
    msg = _parse(raw)
    ids = str(msg["References"]).split()
    assert len(ids) == 20
    assert ids[0] == refs[0] and ids[-19:] == refs[-19:]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))


# ---- date -------------------------------------------------------------------


def test_naive_date_is_refused():
    with pytest.raises(ValueError):
        _build(date=datetime(2024, 1, 1))


def test_date_keeps_its_offset_and_defaults_to_now():
    tz = timezone(timedelta(hours=2))
    assert _parse(_build(date=datetime(2024, 1, 1, 12, tzinfo=tz)))["Date"].datetime == (
        datetime(2024, 1, 1, 10, tzinfo=UTC)
    )
    before = datetime.now(UTC).replace(microsecond=0)
    sent = _parse(_build(date=None))["Date"].datetime
    assert before <= sent <= datetime.now(UTC)


# ---- bodies -----------------------------------------------------------------------

BODIES = [
    "Plain ASCII.\nSecond line.\n",
    "Grüße, Zoë!\nÄpfel und Öl.\n",
    "Заказ не пришёл. Когда его доставят?\n" * 3,
    "请帮忙。打印机坏了。\n",
    "trailing spaces   \nand\ttabs\t\n",
    "no final newline",
    "a" * 5000 + "\n",
    "From the start\n.\n..dots\n",
    "control \x00 \x07 chars\n",
    "crlf\r\nand lone\rcr\n",
    "=?utf-8?b?SGk=?= and = signs =3D\n",
]


def _expected(body: str) -> str:
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    return body if body.endswith("\n") else body + "\n"


@pytest.mark.parametrize("body", BODIES)
def test_alternative_bodies_round_trip(body: str):
    html = "<p>" + body + "</p>"
    msg = _parse(_build(body_text=body, body_html=html))
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = list(msg.iter_parts())
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert text_part.get_content_charset() == "utf-8"
    assert _text(text_part) == _expected(body)
    assert _text(html_part) == _expected(html)
    assert not msg.defects and not text_part.defects and not html_part.defects


@pytest.mark.parametrize("body", BODIES)
def test_text_only_body_round_trips(body: str):
    msg = _parse(_build(body_text=body, body_html=None))
    assert not msg.is_multipart()
    assert msg.get_content_type() == "text/plain"
    assert msg.keys() == [*AUTO_HEADERS, "Content-Transfer-Encoding"]
    assert _text(msg) == _expected(body)


def test_encoding_choice():
    def cte(body: str) -> str:
        return str(_parse(_build(body_text=body, body_html=None))["Content-Transfer-Encoding"])

    assert cte("plain\n") == "7bit"
    assert cte("mostly ascii, one ü\n") == "quoted-printable"
    assert cte("всё по-русски\n") == "base64"
    assert cte("x" * 1200 + "\n") == "quoted-printable"  # 7bit lines stop at 998


def test_body_containing_the_boundary_does_not_split_the_part():
    raw = _build()
    boundary = _parse(raw).get_boundary()
    assert boundary
    evil = f"before\n--{boundary}\nContent-Type: text/html\n\n<b>x</b>\n--{boundary}--\nafter\n"
    msg = _parse(_build(body_text=evil))
    parts = list(msg.iter_parts())
    assert len(parts) == 2
    assert _text(parts[0]) == evil


def test_no_html_part_when_none():
    assert b"text/html" not in _build(body_html=None)


# ---- any text at all -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(subject=st.text(), from_name=st.text(), to_name=st.text(), body=st.text())
def test_arbitrary_text_never_changes_the_header_set(
    subject: str, from_name: str, to_name: str, body: str
):
    raw = _build(subject=subject, from_name=from_name, to_name=to_name, body_text=body)
    msg = _parse(raw)
    assert msg.keys() == AUTO_HEADERS
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if not line.startswith(b" ")]
    assert names == [h.encode() for h in AUTO_HEADERS]
    assert msg["Subject"] == sanitize_header_text(subject)
