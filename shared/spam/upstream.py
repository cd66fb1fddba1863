"""Verdicts that a mail server before Deskmail wrote into the mail's headers.

Many mail servers run a filter at delivery and record its verdict:

    X-Spam-Flag: YES                                   (SpamAssassin)
    X-Spam-Status: Yes, score=7.1 required=5.0 ...     (SpamAssassin)
    X-Spam: Yes                                        (rspamd's milter headers)
    X-Spamd-Result: default: True [15.00 / 15.00]; GTUBE(0.00)[...]   (rspamd)

Anyone can write headers into a mail, so only what harms the sender is
believed: a "yes" makes the mail spam (with its score) and a DMARC failure
counts, but a "no", its score or a DMARC pass change nothing (a spammer would
write those).
"""

from __future__ import annotations

import re

from shared.spam.verdict import Verdict, dmarc_of, top_symbols

HEAD_LIMIT = 256 * 1024  # a header block longer than this is read this far
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(rb"^(X-Spam-Flag|X-Spam-Status|X-Spam|X-Spamd-Result):[ \t]*((?:.*)(?:\r?\n[ \t].*)*)",
                    re.IGNORECASE | re.MULTILINE)
_SPAMD_VERDICT = re.compile(r"default:\s*(true|false)\s*\[\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)\s*\]", re.I)
_SPAMD_SYMBOL = re.compile(r"([A-Z][A-Z0-9_]*)\((-?[\d.]+)\)(?:\[([^\]]*)\])?")
_SA_SCORE = re.compile(r"score=(-?[\d.]+)", re.I)


def _head(raw: bytes) -> bytes:
    end = _HEAD_END.search(raw, 0, HEAD_LIMIT)
    return raw[: end.start()] if end else raw[:HEAD_LIMIT]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def upstream_verdict(raw: bytes) -> Verdict | None:
    """The verdict in `raw`'s headers, or None when no known verdict header is there."""
    fields = _FIELD.findall(_head(raw))
    if not fields:
        return None
    spam = False
    score: float | None = None
    symbols: dict[str, dict] = {}
    for name, value in fields:
        key = name.decode("ascii").lower()
        text = re.sub(r"\s+", " ", value.decode("utf-8", "replace")).strip()
        word = text.split(",", 1)[0].split(" ", 1)[0].lower()
        if key in ("x-spam-flag", "x-spam"):
            spam = spam or word == "yes"
        elif key == "x-spam-status":
            spam = spam or word == "yes"
            found = _SA_SCORE.search(text)
            if found and score is None:
                score = _number(found.group(1))
        else:  # x-spamd-result
            found = _SPAMD_VERDICT.search(text)
            if found:
                spam = spam or found.group(1).lower() == "true"
                score = _number(found.group(2)) if score is None else score
            for sym, weight, options in _SPAMD_SYMBOL.findall(text):
                symbols[sym] = {"score": _number(weight) or 0.0,
                                "options": [options] if options else []}
    dmarc, policy, domain = dmarc_of(symbols)
    if dmarc != "fail":  # only a failure is believed (see above)
        dmarc = policy = domain = None
    if not spam:  # a low score could be written to slip past a rule on the score
        score = None
    return Verdict(state="upstream", spam=spam, score=score, dmarc=dmarc, dmarc_policy=policy,
                   dmarc_domain=domain,
                   symbols=top_symbols({n: s["score"] for n, s in symbols.items()}))
