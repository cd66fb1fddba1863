"""Scores the parser against others' mail with known expected results: `scripts/score-corpus.sh`.

The reference corpus (`../shared/corpus`, or DESKMAIL_CORPUS_DIR) is others'
mail under their licences: it is read from where it lies, never copied into
the repository, so this is a measurement of its own rather than a test.

    zammad/   every message has an `*.expected.json` (Zammad's own
              expectations): the share of expected fields we agree with,
              per field; below THRESHOLD the command fails.
    cpython/  no expectations, but every message must parse without a
              parser failure, and the well-formed ones without `unparsed`.

Exit status: 0 when every section meets its bar, 1 when one does not, 2 when
the corpus is missing (a missing corpus is a failure, never a skip).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.parser.mime import parse_message  # noqa: E402
from shared.parsed import ParsedMessage  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
THRESHOLD = 98.0  # per cent of Zammad's expected fields
# Zammad's placeholder for an empty body.
NO_CONTENT = "no visible content"
# Not mail: cpython's msg_19 is the bare text of a digest (no header section at all).
NOT_A_MESSAGE = {"msg_19.txt"}
_TAG = re.compile(r"<[a-zA-Z][^>]*>")
_NAME_ADDR = re.compile(r"^(.*?)\s*<([^<>]+)>$")


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
    """(field, expected, got) for every expected field; they agree when expected == got."""
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


def zammad(corpus: Path, verbose: bool) -> bool:
    boxes = sorted((corpus / "zammad").glob("*.box"))
    if not boxes:
        print(f"zammad: no *.box files under {corpus / 'zammad'}")
        return False
    agreed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    mismatches: list[str] = []
    for box in boxes:
        expected = json.loads(box.with_suffix(".expected.json").read_text(encoding="utf-8"))
        for name, want, got in score_file(parse_message(box.read_bytes()), expected):
            total[name] += 1
            if want == got:
                agreed[name] += 1
            else:
                mismatches.append(f"  {box.name:12} {name:16} expected {str(want)[:150]!r}\n"
                                  f"  {'':29} got      {str(got)[:150]!r}")
    percent = 100.0 * sum(agreed.values()) / sum(total.values())
    print(f"zammad: {len(boxes)} mails, {sum(agreed.values())}/{sum(total.values())} expected fields"
          f" agree ({percent:.1f} %; bar {THRESHOLD:.0f} %)")
    for name in sorted(total):
        print(f"  {name:18} {agreed[name]:3}/{total[name]:<3} {100.0 * agreed[name] / total[name]:5.1f} %")
    if mismatches and (verbose or percent < THRESHOLD):
        print("  disagreements:")
        print("\n".join(mismatches))
    return percent >= THRESHOLD


def cpython(corpus: Path, verbose: bool) -> bool:
    paths = sorted((corpus / "cpython").glob("msg_*.txt"))
    if not paths:
        print(f"cpython: no msg_*.txt files under {corpus / 'cpython'}")
        return False
    problems = []
    for path in paths:
        parsed = parse_message(path.read_bytes())
        failures = [d for d in parsed.defects if d.startswith("parser failure")]
        if failures:
            problems.append(f"  {path.name}: {failures[0]}")
        elif path.name not in NOT_A_MESSAGE and parsed.unparsed is not None:
            problems.append(f"  {path.name}: unparsed ({parsed.unparsed}); defects {parsed.defects}")
    print(f"cpython: {len(paths)} mails, {len(paths) - len(problems)} parse cleanly")
    if problems:
        print("\n".join(problems))
    return not problems


SECTIONS: dict[str, Callable[[Path, bool], bool]] = {"zammad": zammad, "cpython": cpython}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus", type=Path,
                        default=Path(os.environ.get("DESKMAIL_CORPUS_DIR") or DEFAULT_CORPUS),
                        help="the reference corpus (default: DESKMAIL_CORPUS_DIR, else ../shared/corpus)")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="score only these")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every disagreement")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus score: no corpus at {args.corpus} (set DESKMAIL_CORPUS_DIR)", file=sys.stderr)
        return 2
    results = {name: SECTIONS[name](args.corpus, args.verbose) for name in (args.only or SECTIONS)}
    failed = [name for name, ok in results.items() if not ok]
    print("corpus score: " + (f"FAILED ({', '.join(failed)})" if failed else "all sections met their bar"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
