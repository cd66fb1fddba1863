"""Property tests: whatever bytes arrive, parse_message returns a ParsedMessage.

Inputs are the parser's test messages mutated the way transports and broken
mailers damage mail (byte flips, truncation, lost or doubled lines, injected
headers), plus plain random bytes. Seeded and bounded so the run is
repeatable and fast.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.parser.mime import parse_message
from shared.parsed import ParsedMessage

_HERE = Path(__file__).resolve()
_SOURCES = sorted((_HERE.parents[1] / "data" / "parser").glob("*.eml"))
SEEDS = [p.read_bytes()[:20000] for p in _SOURCES] or [b"From: a@example.com\nSubject: x\n\nbody\n"]

_INJECTIONS = [
    b"Content-Type: multipart/mixed; boundary=\"\"",
    b"Content-Type: multipart/alternative",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Type: text/plain; charset=\"x-unknown\"",
    b"Content-Type: text/html; charset=utf-16",
    b"Content-Type: message/rfc822",
    b"Content-Type: application/ms-tnef",
    b"Content-Disposition: attachment; filename*0*=utf-8''%E2%82; filename*1*=%AC",
    b"Subject: =?utf-8?B?broken?= =?gb2312?Q?=B0=A1?=",
    b"From: =?utf-8?q?\xff?= <<>>",
    b"Date: Mon, 99 Foo 2024 99:99:99 +9999",
    b"References: <<<a@b>>> <",
    b"begin 644 x.bin",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "truncate", "drop", "double", "inject", "splice"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[pos:]
        elif action in ("drop", "double"):
            lines = bytes(data).split(b"\n")
            i = pos % len(lines)
            if action == "drop":
                del lines[i]
            else:
                lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
        elif action == "inject":
            line = data.rfind(b"\n", 0, pos) + 1
            data[line:line] = draw(st.sampled_from(_INJECTIONS)) + b"\n"
        else:
            data[pos:pos] = draw(st.binary(max_size=64))
    return bytes(data)


def _check(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    assert not any(d.startswith("parser failure") for d in parsed.defects), parsed.defects
    parsed.to_json()  # serialisable as the ticketer will store it


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_mail_never_breaks_the_parser(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=4096))
def test_random_bytes_never_break_the_parser(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.text(max_size=2000))
def test_random_text_never_breaks_the_parser(text: str) -> None:
    _check(("From: a@example.com\nSubject: x\n\n" + text).encode("utf-8", "surrogatepass"))
