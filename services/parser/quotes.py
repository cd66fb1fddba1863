"""Separating the new text of a reply from the history it quotes.

The history starts at the first attribution line ("On ... wrote:",
"Am ... schrieb ...:"), separator ("-----Original Message-----") or
Outlook header block ("From: ... Sent: ...", "Von: ... Gesendet: ...").
Lines quoted with ">" are dropped wherever they are, so inline answers
keep their new text. Forwarded messages are not history: they are kept.
"""

from __future__ import annotations

import re

_VERBS = r"(?:wrote|schrieb|a\s+écrit|escribió|ha\s+scritto|schreef|escreveu|napisał|skrev)"
# "On <date>, <name> wrote:" and its translations, possibly wrapped over two
# lines by the sender's mailer; or "<name and address/date> wrote:".
_ATTRIBUTION = re.compile(
    r"^[ \t]*(?:"
    r"(?:On|Am|Le|El|Il|Op|Em|W|Den|På)\b[^\n]{0,300}?(?:\n(?![ \t]*>)[^\n]{0,200}?)?"
    r"|[^\n>]{0,200}?[@\d][^\n>]{0,200}?"
    r")\b" + _VERBS + r"\b[^\n:]{0,100}:[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_VERB_WORDS = ("wrote", "schrieb", "crit", "escribi", "scritto", "schreef", "escreveu", "napisa", "skrev")
_VERB_HINT = re.compile(_VERBS, re.IGNORECASE)
_SEPARATOR = re.compile(
    r"^[ \t]*-{2,}[ \t]*(?:Original Message|Ursprüngliche Nachricht|Originalnachricht"
    r"|Message d'origine|Mensaje original|Messaggio originale|Oorspronkelijk bericht)[ \t]*-{2,}[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_OUTLOOK_FROM = re.compile(r"^[ \t]*\**(?:From|Von|De|Van|Da)[ \t]*:\**[ \t]*\S", re.IGNORECASE | re.MULTILINE)
_OUTLOOK_FIELD = re.compile(
    r"[ \t]*\**(?:Sent|Date|Gesendet|Datum|Envoyé|Enviado|Verzonden|Inviato|To|An|À|Subject|Betreff"
    r"|Objet|Asunto|Onderwerp|Oggetto|Cc)[ \t]*:",
    re.IGNORECASE,
)
_QUOTED_LINE = re.compile(r"^[ \t]*>[^\n]*(?:\n|$)", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def _attribution_start(text: str) -> int | None:
    # Searching the whole text with _ATTRIBUTION is slow (it tries every
    # line); look only at the lines around each verb, and only if there is one.
    lowered = text.lower()
    if not any(verb in lowered for verb in _VERB_WORDS):
        return None
    for count, verb in enumerate(_VERB_HINT.finditer(text)):
        if count == 50:
            break
        line_start = text.rfind("\n", 0, verb.start()) + 1
        line_end = text.find("\n", verb.end())
        line_end = len(text) if line_end < 0 else line_end
        previous = text.rfind("\n", 0, max(0, line_start - 1)) + 1 if line_start else 0
        for start in (previous, line_start):
            if _ATTRIBUTION.match(text, start, line_end):
                return start
    return None


def _history_start(text: str) -> int | None:
    candidates = []
    attribution = _attribution_start(text)
    if attribution is not None:
        candidates.append(attribution)
    if "--" in text:
        match = _SEPARATOR.search(text)
        if match:
            candidates.append(match.start())
    for count, match in enumerate(_OUTLOOK_FROM.finditer(text)):
        if count == 200 or candidates and match.start() > min(candidates):
            break
        if _outlook_block(text, match.start()):
            # An Outlook separator line of underscores belongs to the block.
            before = text.rfind("\n", 0, max(0, match.start() - 1))
            line = text[before + 1 : match.start()].strip()
            start = before + 1 if line and set(line) == {"_"} else match.start()
            candidates.append(start)
            break
    return min(candidates) if candidates else None


def _outlook_block(text: str, start: int) -> bool:
    # "From: x" followed by at least two more header-like lines.
    lines = text[start : start + 1000].split("\n", 7)[1:7]
    fields = 0
    for line in lines:
        if _OUTLOOK_FIELD.match(line):
            fields += 1
        elif line.strip():
            break
    return fields >= 2


def strip_quoted(text: str) -> str:
    """The new text of a message: quoted history removed, the full text if nothing else is left."""
    if not text:
        return ""
    start = _history_start(text)
    new = text if start is None else text[:start]
    if ">" in new:
        new = _QUOTED_LINE.sub("", new)
    new = _MANY_BLANK_LINES.sub("\n\n", new).strip()
    if not new:
        return text.strip() + "\n"
    return new + "\n"
