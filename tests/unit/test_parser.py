"""The MIME parser on small hand-written messages, one feature each (tests/data/parser/*.eml)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import pytest

from services.parser.cli import parse_command
from services.parser.mime import parse_message
from shared.parsed import ParsedMessage

DATA = Path(__file__).resolve().parents[1] / "data" / "parser"


def parse(name: str, **kwargs: object) -> ParsedMessage:
    return parse_message((DATA / name).read_bytes(), **kwargs)  # type: ignore[arg-type]


def no_replacement_chars(parsed: ParsedMessage) -> bool:
    texts = [parsed.subject, parsed.body_text, parsed.from_.name if parsed.from_ else ""]
    return all("\ufffd" not in t for t in texts)


# -- headers ---------------------------------------------------------------


def test_headers_of_a_reply() -> None:
    parsed = parse("reply_quoted.eml")
    assert parsed.from_ is not None
    assert (parsed.from_.name, parsed.from_.address) == ("Anna Meyer", "anna@example.com")
    assert [(a.name, a.address) for a in parsed.to] == [("Support", "support@example.test")]
    assert parsed.subject == "Re: [Ticket#1001] printer"
    assert parsed.date == "2024-01-08T10:00:00+01:00"
    assert parsed.message_id == "reply-a@example.com"
    assert parsed.in_reply_to == ["ticket-1001@example.test"]
    assert parsed.references == ["first@example.test", "ticket-1001@example.test"]
    assert parsed.defects == []
    assert parsed.unparsed is None


def test_from_falls_back_to_reply_to_when_broken() -> None:
    parsed = parse("no_from.eml")
    assert parsed.from_ is not None
    assert parsed.from_.address == "customer@example.net"
    assert any("From" in d for d in parsed.defects)


def test_from_falls_back_to_sender_without_reply_to() -> None:
    raw = b"Sender: relay@example.net\r\nTo: support@example.test\r\nSubject: x\r\n\r\nbody\r\n"
    parsed = parse_message(raw)
    assert parsed.from_ is not None and parsed.from_.address == "relay@example.net"


def test_cc_and_several_recipients() -> None:
    raw = (
        b'From: a@example.com\nTo: "Doe, John" <john@example.com>, jane@example.com\n'
        b"Cc: =?utf-8?Q?Ren=C3=A9?= <rene@example.com>\nSubject: x\n\nbody\n"
    )
    parsed = parse_message(raw)
    assert [(a.name, a.address) for a in parsed.to] == [
        ("Doe, John", "john@example.com"),
        ("", "jane@example.com"),
    ]
    assert [(a.name, a.address) for a in parsed.cc] == [("René", "rene@example.com")]


def test_impossible_date_is_a_defect_not_an_error() -> None:
    raw = b"From: a@example.com\nDate: Mon, 8 Jan 2024 27:39:33 +0100\nSubject: x\n\nbody\n"
    parsed = parse_message(raw)
    assert parsed.date is None
    assert any("date" in d for d in parsed.defects)


# -- charsets --------------------------------------------------------------


def test_gb2312_label_on_gbk_text() -> None:
    parsed = parse("mislabelled_gb2312.eml")
    assert parsed.subject == "镕字测试"
    assert parsed.body_text == "朱镕基总理说：你好。\n"


def test_latin1_label_on_windows_1252_text() -> None:
    parsed = parse("mislabelled_latin1.eml")
    assert parsed.subject == "Preis € 100"
    assert parsed.body_text == "Der Preis beträgt 100 € – „sofort“ fällig.\n"


def test_undeclared_8bit_text_is_detected() -> None:
    parsed = parse("undeclared_8bit.eml")
    assert "Grüße aus Köln" in parsed.body_text
    assert parsed.subject == "Bestätigung der Änderung"
    assert parsed.from_ is not None and parsed.from_.name == "Jürgen Müller"
    assert no_replacement_chars(parsed)


def test_broken_encoded_words() -> None:
    parsed = parse("broken_encoded_words.eml")
    # A UTF-8 character split over two words, missing base64 padding and an
    # unknown charset all still decode.
    assert parsed.subject == "Grüße aus Köln café"
    assert parsed.from_ is not None and parsed.from_.name == "Jürgen Smith"
    assert parsed.to[0].name == "Support Team"
    assert no_replacement_chars(parsed)


def test_raw_utf8_headers() -> None:
    raw = "From: Zoë <zoe@example.com>\nSubject: Größe\n\nbody\n".encode()
    parsed = parse_message(raw)
    assert parsed.subject == "Größe" and parsed.from_ is not None and parsed.from_.name == "Zoë"


# -- bodies ----------------------------------------------------------------


def test_html_only_body_becomes_readable_text_and_safe_html() -> None:
    parsed = parse("inline_image.eml")
    text = parsed.body_text
    assert "See the error:" in text
    assert "* first step" in text and "* second step" in text
    assert "https://help.example.com/printer" in text  # link target kept
    assert "alert" not in text
    html = parsed.body_html or ""
    assert "<script" not in html and "onclick" not in html and "javascript:" not in html
    assert 'src="cid:shot1@example.com"' in html  # inline image still resolvable


def test_inline_image_linked_by_content_id() -> None:
    parsed = parse("inline_image.eml")
    [image] = parsed.attachments
    assert image.content_id == "shot1@example.com"
    assert image.inline is True
    assert image.content_type == "image/png"
    assert image.data.startswith(b"\x89PNG")
    assert image.size == len(image.data)


def test_plain_and_html_alternatives() -> None:
    raw = (
        b'From: a@example.com\nSubject: x\nContent-Type: multipart/alternative; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\nplain version\n"
        b"--B\nContent-Type: text/html\n\n<p>html <b>version</b></p>\n--B--\n"
    )
    parsed = parse_message(raw)
    assert parsed.body_text == "plain version\n"
    assert parsed.body_html == "<p>html <b>version</b></p>"


def test_empty_plain_alternative_uses_html() -> None:
    raw = (
        b'From: a@example.com\nSubject: x\nContent-Type: multipart/alternative; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\n\n--B\nContent-Type: text/html\n\n<p>the text</p>\n--B--\n"
    )
    assert parse_message(raw).body_text == "the text\n"


def test_format_flowed_is_unwrapped() -> None:
    raw = (
        b"From: a@example.com\nSubject: x\nContent-Type: text/plain; format=flowed\n\n"
        b"This line was \nwrapped by the mailer.\n"
    )
    assert parse_message(raw).body_text == "This line was wrapped by the mailer.\n"


def test_reply_text_strips_quoted_history() -> None:
    parsed = parse("reply_quoted.eml")
    assert parsed.reply_text == "Thanks, the printer works again.\n"
    assert "> Please restart the printer." in parsed.body_text


def test_reply_text_strips_outlook_history() -> None:
    parsed = parse("reply_outlook_de.eml")
    assert parsed.reply_text == "Hallo, morgen passt mir gut.\n\nViele Grüße\nAnna\n"
    assert "Wann dürfen wir vorbeikommen?" in parsed.body_text


@pytest.mark.parametrize(
    ("text", "new"),
    [
        ("Top.\n\n-----Original Message-----\nFrom: a\nSent: b\n\nold\n", "Top.\n"),
        ("Ok\n\n________________________________\nFrom: S\nSent: M\nTo: x\nSubject: s\n\nold", "Ok\n"),
        ("Danke\n\nAm 12.03.2024 um 10:00 schrieb Hans <h@example.de>:\n> alt\n", "Danke\n"),
        ("> question\nanswer\n", "answer\n"),
        ("Nothing quoted.\nFrom: me to you is fine.\n", "Nothing quoted.\nFrom: me to you is fine.\n"),
    ],
)
def test_reply_stripping_variants(text: str, new: str) -> None:
    raw = b"From: a@example.com\nSubject: x\nContent-Type: text/plain; charset=utf-8\n\n" + text.encode()
    assert parse_message(raw).reply_text == new


# -- attachments -----------------------------------------------------------


def test_rfc2231_and_encoded_word_filenames() -> None:
    parsed = parse("rfc2231_names.eml")
    names = [a.filename for a in parsed.attachments]
    assert names == ["Rechnung März 2024.pdf", "Übersicht Teil 2 Änderungen.txt", "图片.png"]
    pdf = parsed.attachments[0]
    assert pdf.data == b"%PDF-1.4 tiny test file\n"
    assert pdf.sha256 == hashlib.sha256(b"%PDF-1.4 tiny test file\n").hexdigest()
    assert pdf.size == 24
    assert parsed.body_text == "See attachments.\n"


def test_uuencoded_file_in_plain_body() -> None:
    parsed = parse("uuencode.eml")
    [attachment] = parsed.attachments
    assert attachment.filename == "notes.txt"
    assert attachment.data == b"hello uuencoded world\n"
    assert "begin 644" not in parsed.body_text
    assert "Here is the file." in parsed.body_text and "Regards" in parsed.body_text


def _tnef_attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", checksum)


def _winmail_dat(files: dict[str, bytes]) -> bytes:
    blob = struct.pack("<IH", 0x223E9F78, 1)
    blob += _tnef_attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))  # TNEF version
    blob += _tnef_attribute(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))  # OEM code page
    for name, content in files.items():
        blob += _tnef_attribute(2, 0x9002, 0x0006, bytes(14))  # starts an attachment
        blob += _tnef_attribute(2, 0x8010, 0x0001, name.encode() + b"\x00")  # title
        blob += _tnef_attribute(2, 0x800F, 0x0006, content)  # data
    return blob


def _message_with(part_type: str, filename: str, data: bytes) -> bytes:
    encoded = base64.encodebytes(data).decode()
    return (
        'From: a@example.com\nSubject: outlook\nContent-Type: multipart/mixed; boundary="M"\n\n'
        "--M\nContent-Type: text/plain\n\nsee attached\n"
        f'--M\nContent-Type: {part_type}; name="{filename}"\nContent-Transfer-Encoding: base64\n\n'
        f"{encoded}--M--\n"
    ).encode()


def test_tnef_winmail_dat_is_unpacked() -> None:
    winmail = _winmail_dat({"report.txt": b"quarterly numbers", "plan.csv": b"a,b\n1,2\n"})
    parsed = parse_message(_message_with("application/ms-tnef", "winmail.dat", winmail))
    found = {a.filename: a for a in parsed.attachments}
    assert set(found) == {"report.txt", "plan.csv"}
    assert found["report.txt"].data == b"quarterly numbers"
    assert found["report.txt"].content_type == "text/plain"


def test_unreadable_tnef_is_kept_as_it_is() -> None:
    parsed = parse_message(_message_with("application/ms-tnef", "winmail.dat", b"not tnef at all"))
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert any("TNEF" in d for d in parsed.defects)


def test_attached_message_named_after_its_subject() -> None:
    parsed = parse("rfc822_attached.eml")
    [attached] = parsed.attachments
    assert attached.filename == "Original problem report.eml"
    assert attached.content_type == "message/rfc822"
    assert b"The original text." in attached.data
    assert parsed.body_text == "Forwarding this as an attachment.\n"


def test_pgp_signature_kept_as_attachment() -> None:
    parsed = parse("pgp_signed.eml")
    assert parsed.body_text == "Signed text.\n"
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("signature.asc", "application/pgp-signature")
    ]


def test_smime_message_kept_as_attachment() -> None:
    parsed = parse("smime_encrypted.eml")
    [smime] = parsed.attachments
    assert (smime.filename, smime.content_type) == ("smime.p7m", "application/pkcs7-mime")
    assert smime.data == b"0\x82fake-cms"


# -- automatic mail --------------------------------------------------------


def test_delivery_report_is_a_bounce_with_details() -> None:
    parsed = parse("bounce_dsn.eml")
    assert parsed.automatic == "bounce"
    assert parsed.bounce is not None
    assert parsed.bounce.recipient == "nobody@customer.example"
    assert parsed.bounce.original_message_id == "reply-1001@example.test"
    assert parsed.bounce.status == "5.1.1"


def test_prose_bounce_from_mailer_daemon() -> None:
    parsed = parse("bounce_qmail.eml")
    assert parsed.automatic == "bounce"
    assert parsed.bounce is not None
    assert parsed.bounce.recipient == "gone@example.org"
    assert parsed.bounce.original_message_id == "reply-2002@example.test"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("out_of_office.eml", "out_of_office"), ("list_mail.eml", "list"), ("bulk.eml", "bulk")],
)
def test_automatic_kinds_from_files(name: str, kind: str) -> None:
    assert parse(name).automatic == kind


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (b"Auto-Submitted: auto-generated", "auto_generated"),
        (b"Auto-Submitted: auto-replied", "auto_replied"),
        (b"Auto-Submitted: no", None),
        (b"X-Autoreply: yes", "out_of_office"),
        (b"X-Autorespond: yes", "out_of_office"),
        (b"X-Auto-Response-Suppress: All", "auto_generated"),
        (b"Precedence: junk", "bulk"),
        (b"List-Unsubscribe: <mailto:x@example.org>", "list"),
        (b"Subject: Automatic reply: your mail", "out_of_office"),
        (b"Subject: Out of Office", "out_of_office"),
        (b"Subject: Re: invoice", None),
    ],
)
def test_automatic_kinds_from_headers(header: bytes, kind: str | None) -> None:
    raw = b"From: Someone <someone@example.com>\n" + header + b"\nTo: support@example.test\n\nhello\n"
    assert parse_message(raw).automatic == kind


def test_own_address_is_recognised() -> None:
    raw = b"From: Support <Support@Example.test>\nSubject: x\n\nhello\n"
    parsed = parse_message(raw, own_addresses=frozenset({"support@example.test"}))
    assert parsed.automatic == "own"


def test_mail_from_a_person_is_not_automatic() -> None:
    assert parse("reply_quoted.eml").automatic is None


# -- robustness ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe" * 1000,
        b"From: a@example.com\nSubject: trunc\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: te",
        b"Subject: " + b"A" * 1_000_000 + b"\n\nbody\n",
        b"To: " + b"a@example.com, " * 100_000 + b"\n\nbody\n",
        b"From: a@example.com\nContent-Type: text/plain; charset=\xff\xfe\n\n\xff\xfe",
        b"From: a@example.com\nContent-Transfer-Encoding: base64\n\n!!!!====not base64",
    ],
    ids=["empty", "random", "truncated", "megabyte-header", "huge-to", "bad-charset", "bad-base64"],
)
def test_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    assert not any(d.startswith("parser failure") for d in parsed.defects)


def test_empty_input_is_unparsed() -> None:
    parsed = parse_message(b"")
    assert parsed.unparsed == "empty message"


def test_random_bytes_are_unparsed() -> None:
    parsed = parse_message(bytes(range(256)) * 10)
    assert parsed.unparsed is not None


def test_deeply_nested_multipart() -> None:
    depth = 100
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth))
    tail = "".join(f"\n--b{i}--\n" for i in reversed(range(depth)))
    raw = f"From: a@example.com\nSubject: deep\n{head}Content-Type: text/plain\n\ndeep text{tail}".encode()
    parsed = parse_message(raw)
    assert parsed.unparsed is None
    assert any("too deep" in d for d in parsed.defects)


def test_fifty_megabyte_attachment() -> None:
    data = b"QUFB" * (50 * 1024 * 1024 // 4)
    raw = (
        b'From: a@example.com\nSubject: big\nContent-Type: multipart/mixed; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\nbig file\n"
        b'--B\nContent-Type: application/octet-stream; name="big.bin"\nContent-Transfer-Encoding: base64\n\n'
        + data
        + b"\n--B--\n"
    )
    parsed = parse_message(raw)
    [big] = parsed.attachments
    assert big.size == len(data) * 3 // 4
    assert parsed.body_text == "big file\n"


def test_multipart_without_its_boundary_is_read_as_text() -> None:
    raw = b"From: a@example.com\nContent-Type: multipart/mixed; boundary=nothere\n\njust text\n"
    parsed = parse_message(raw)
    assert parsed.body_text == "just text\n"
    assert parsed.defects


def test_safety_net_turns_a_bug_into_unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.parser.mime as mime

    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(mime, "collect", boom)
    parsed = mime.parse_message(b"From: a@example.com\n\nx\n")
    assert parsed.unparsed == "parser failure: RuntimeError"


# -- output ----------------------------------------------------------------


def test_json_round_trip() -> None:
    parsed = parse("rfc2231_names.eml")
    again = ParsedMessage.from_json(json.loads(json.dumps(parsed.to_json())))
    assert again.subject == parsed.subject
    assert [a.sha256 for a in again.attachments] == [a.sha256 for a in parsed.attachments]


def test_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_command(str(DATA / "bounce_dsn.eml"), as_json=True) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["automatic"] == "bounce"
    assert printed["bounce"]["recipient"] == "nobody@customer.example"


def test_cli_prints_human_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_command(str(DATA / "inline_image.eml"), as_json=False) == 0
    out = capsys.readouterr().out
    assert "Subject:     screenshot" in out
    assert "file.png (image/png" in out


def test_cli_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_command(str(DATA / "missing.eml"), as_json=False) == 2
