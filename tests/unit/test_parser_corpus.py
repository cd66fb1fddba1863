"""Scores the parser against third-party mail with known expected results.

zammad/: every message has an `*.expected.json` (Zammad's own expectations);
the share of expected fields we agree with must stay at or above 98 %.
cpython/: no expectations, but every message must parse, and the
well-formed ones without `unparsed`.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from services.parser.mime import parse_message
from shared.parsed import ParsedMessage

# The project's reference corpus sits beside the repository (../shared/corpus);
# DESKMAIL_CORPUS_DIR points elsewhere. Missing, the score fails: it is never skipped.
CORPUS = Path(os.environ.get("DESKMAIL_CORPUS_DIR")
              or Path(__file__).resolve().parents[2].parent / "shared" / "corpus")
ZAMMAD = CORPUS / "zammad"
CPYTHON = CORPUS / "cpython"
THRESHOLD = 98.0
# Zammad's placeholder for an empty body.
NO_CONTENT = "no visible content"
_TAG = re.compile(r"<[a-zA-Z][^>]*>")



class _TextContent(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "td", "th", "table", "h1", "h2", "h3", "pre", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("style", "script", "title", "head"):
            self._skip += 1
        if tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title", "head") and self._skip:
            self._skip -= 1
        if tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def norm(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split())


def html_text(markup: str) -> str:
    parser = _TextContent()
    parser.feed(markup)
    parser.close()
    return norm("".join(parser.parts))


_NAME_ADDR = re.compile(r"^(.*?)\s*<([^<>]+)>$")


def _addresses(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    # Each raw item is one recipient already; the stdlib would read the
    # "[example.com]" in a display name as a domain literal.
    pairs = []
    for item in items:
        match = _NAME_ADDR.match(item["raw"].strip())
        if match:
            pairs.append((match.group(1).strip().strip('"'), match.group(2).strip().lower()))
        else:
            pairs.append(("", item["raw"].strip().lower()))
    return pairs


def score_file(parsed: ParsedMessage, expected: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, expected, got) for every expected field; equal when expected == got."""
    rows: list[tuple[str, Any, Any]] = []
    sender = parsed.from_
    if "from_address" in expected:
        rows.append(("from_address", expected["from_address"].lower(), sender and sender.address.lower()))
    if "from_name" in expected:
        rows.append(("from_name", expected["from_name"], sender and sender.name))
    if "subject" in expected:
        rows.append(("subject", expected["subject"], parsed.subject))
    for key in ("to", "cc"):
        if key in expected:
            got = [(a.name, a.address.lower()) for a in getattr(parsed, key)]
            rows.append((key, _addresses(expected[key]), got))
    body = expected.get("body_text", expected.get("body_html", expected.get("body_untyped")))
    if body is not None:
        if body == NO_CONTENT:
            body = ""
        is_html = "body_html" in expected or ("body_untyped" in expected and _TAG.search(body))
        if is_html:
            ours = html_text(parsed.body_html) if parsed.body_html else norm(parsed.body_text)
            rows.append(("body(html text)", html_text(body), ours))
        else:
            rows.append(("body_text", norm(body), norm(parsed.body_text)))
    if "attachments" in expected:
        # Zammad lists the HTML body as "message.html" (content_alternative): not an attachment here.
        names = sorted(a["filename"] for a in expected["attachments"] if not a.get("content_alternative"))
        rows.append(("attachments", names, sorted(a.filename for a in parsed.attachments)))
    return rows


def test_zammad_corpus_score() -> None:
    total = agreed = 0
    mismatches: list[str] = []
    for box in sorted(ZAMMAD.glob("*.box")):
        expected = json.loads(box.with_suffix(".expected.json").read_text(encoding="utf-8"))
        parsed = parse_message(box.read_bytes())
        for name, want, got in score_file(parsed, expected):
            total += 1
            if want == got:
                agreed += 1
            else:
                mismatches.append(f"{box.name:12} {name:16} expected {str(want)[:150]!r}\n{'':29} got      {str(got)[:150]!r}")
    percent = 100.0 * agreed / total
    print(f"\nzammad corpus: {agreed}/{total} expected fields agree ({percent:.1f} %)")
    for line in mismatches:
        print(line)
    assert total > 60
    assert percent >= THRESHOLD, "\n".join(mismatches)


def _cpython_messages() -> list[Path]:
    return sorted(CPYTHON.glob("msg_*.txt"))


# Not mail: msg_19 is the bare text of a digest (no header section at all).
_NOT_A_MESSAGE = {"msg_19.txt"}


@pytest.mark.parametrize("path", _cpython_messages(), ids=lambda p: p.name)
def test_cpython_message_parses(path: Path) -> None:
    parsed = parse_message(path.read_bytes())
    assert isinstance(parsed, ParsedMessage)
    assert not any(d.startswith("parser failure") for d in parsed.defects)
    if path.name not in _NOT_A_MESSAGE:
        assert parsed.unparsed is None, parsed.defects
