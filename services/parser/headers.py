"""Header sections: splitting them off, unfolding, and reading their values.

Headers stay bytes until a value is needed, because raw 8-bit header text
has no declared charset and is decoded once per message (see
`HeaderText`). Everything here tolerates junk: lines that are not headers
end the section, stray continuation lines are dropped, and oversized
values are cut, each with a defect.
"""

from __future__ import annotations

import binascii
import re
from email.utils import getaddresses, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from services.parser.charsets import decode_header_bytes, decode_text, guess_header_charset
from shared.parsed import Address

MAX_HEADER_VALUE = 128 * 1024  # a header larger than this is cut (defect)
MAX_ADDRESS_TEXT = 16 * 1024  # address lists beyond this are not parsed
_BLANK_LINE = re.compile(rb"\r?\n[ \t]*\r?\n")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_NON_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_DECLARED_CHARSET = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_QUOTED_ESCAPE = re.compile(r"\\(.)")
_SIMPLE_ADDRESS = re.compile(r'\s*(?:"([^"\\]*)"|([^"<>,;:@\\]*?))\s*<([^<>\s@,;]+@[^<>\s@,;]+)>\s*')
_BARE_ADDRESS = re.compile(r"\s*<?([^<>\s@,;:\"()]+@[^<>\s@,;:\"()]+)>?\s*")


class Headers:
    """The fields of one header section, in order, values as unfolded bytes."""

    __slots__ = ("items", "_index")

    def __init__(self, items: list[tuple[str, bytes]]) -> None:
        self.items = items
        self._index: dict[str, list[bytes]] = {}
        for name, value in items:
            self._index.setdefault(name, []).append(value)

    def get(self, name: str) -> bytes | None:
        values = self._index.get(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[bytes]:
        return self._index.get(name, [])

    def __contains__(self, name: str) -> bool:
        return name in self._index


def split_header_section(raw: bytes, defects: list[str]) -> tuple[Headers, bytes]:
    """Split a message or body part into its headers and its body."""
    if raw[:1] in (b"\n", b"\r") and raw.lstrip(b"\r")[:1] == b"\n":
        return Headers([]), raw[raw.find(b"\n") + 1 :]
    match = _BLANK_LINE.search(raw)
    if match is None:
        head, body = raw, b""
    else:
        head, body = raw[: match.start()], raw[match.end() :]
    fields: list[tuple[str, list[bytes]]] = []
    offset = 0
    for line in head.split(b"\n"):
        start = offset
        offset += len(line) + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].append(line.strip())
            elif line.strip():
                defects.append("continuation line before the first header")
            continue
        colon = line.find(b":")
        field = line[:colon].rstrip() if colon > 0 else b""
        if field and _FIELD_NAME.fullmatch(field):
            fields.append((field.decode("ascii").lower(), [line[colon + 1 :].strip()]))
        elif start == 0 and line.startswith(b"From "):
            continue  # mbox separator line
        elif not line.strip():
            continue
        else:
            # Not a header line: the header section ended without a blank line.
            defects.append("header section not terminated by a blank line")
            body = raw[start:]
            break
    items: list[tuple[str, bytes]] = []
    for name, chunks in fields:
        value = chunks[0] if len(chunks) == 1 else b" ".join(c for c in chunks if c)
        if len(value) > MAX_HEADER_VALUE:
            defects.append(f"header {name} longer than {MAX_HEADER_VALUE} bytes, cut")
            value = value[:MAX_HEADER_VALUE]
        items.append((name, value))
    return Headers(items), body


class HeaderText:
    """Decodes header values of one message, choosing one charset for raw 8-bit text."""

    def __init__(self, headers: Headers, message: bytes, defects: list[str]) -> None:
        self._headers = headers
        self._message = message  # searched for declared charsets, only if needed
        self._defects = defects
        self._charset: str | None = None

    def _eight_bit_charset(self) -> str:
        if self._charset is None:
            samples = [v for _, v in self._headers.items if not v.isascii() and not _is_utf8(v)]
            declared = [m.decode("ascii") for m in _DECLARED_CHARSET.findall(self._message[:262144])]
            self._charset = guess_header_charset(samples, dict.fromkeys(declared))
            self._defects.append(f"raw 8-bit header text, read as {self._charset}")
        return self._charset

    def raw(self, value: bytes) -> str:
        """The value as text, encoded words left alone."""
        if value.isascii():
            return value.decode("ascii")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return decode_header_bytes(value, self._eight_bit_charset())

    def text(self, value: bytes) -> str:
        """An unstructured value (Subject) fully decoded."""
        return decode_words(self.raw(value), self._defects)

    def get(self, name: str) -> str | None:
        value = self._headers.get(name)
        return None if value is None else self.text(value)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def b64decode_lenient(data: bytes) -> tuple[bytes, bool]:
    """Base64 that survives junk and bad padding; returns (bytes, was_broken)."""
    try:
        return binascii.a2b_base64(data), False
    except binascii.Error:
        clean = _NON_BASE64.sub(b"", data)
        rest = len(clean) % 4
        if rest == 1:
            clean = clean[:-1]
        elif rest:
            clean += b"=" * (4 - rest)
        try:
            return binascii.a2b_base64(clean), True
        except binascii.Error:
            return b"", True


def decode_words(text: str, defects: list[str]) -> str:
    """Decode RFC 2047 encoded words, also broken ones.

    Adjacent words in the same charset are joined as bytes before decoding,
    because mailers split multi-byte characters across words.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            decoded, defect = decode_text(bytes(pending), pending_charset)
            if defect:
                defects.append(f"encoded word: {defect}")
            out.append(decoded)
        pending.clear()
        pending_charset = None

    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        if pending_charset is None or gap.strip():
            flush()
            out.append(gap)
        charset = match.group(1).split("*", 1)[0].lower()
        payload = match.group(3).encode("utf-8", errors="replace")
        if match.group(2) in "bB":
            data, broken = b64decode_lenient(payload.replace(b" ", b""))
            if broken:
                defects.append("broken base64 encoded word")
        else:
            data = binascii.a2b_qp(payload, header=True)
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending_charset = charset
        pending += data
        pos = match.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def parse_params(text: str, defects: list[str]) -> tuple[str, dict[str, str]]:
    """Split `type/subtype; a=b; c*=utf-8''x` into the value and its parameters.

    Parameter names are lower-cased; RFC 2231 continuations and charsets and
    RFC 2047 words inside quoted values (common, though not allowed) are
    decoded.
    """
    semi = text.find(";")
    if semi < 0:
        return text.strip().lower(), {}
    value = text[:semi].strip().lower()
    raw: dict[str, str] = {}
    i, n = semi + 1, len(text)
    while i < n:
        eq = text.find("=", i)
        if eq < 0:
            break
        name = text[i:eq].strip(" \t;").lower()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            end = i + 1
            while end < n and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            val = _QUOTED_ESCAPE.sub(r"\1", text[i + 1 : end])
            i = end + 1
            nxt = text.find(";", i)
            i = n if nxt < 0 else nxt + 1
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            val = text[i:end].strip()
            i = end + 1
        if ";" in name:  # junk before the name, e.g. "a; junk; name=x"
            name = name.rsplit(";", 1)[1].strip()
        if name and name not in raw:
            raw[name] = val
    return value, _assemble_params(raw, defects)


def _assemble_params(raw: dict[str, str], defects: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for name, val in raw.items():
        base, star, rest = name.partition("*")
        if not star:
            params[base] = decode_words(val, defects) if "=?" in val else val
        elif rest == "":
            extended[base] = _decode_2231([(0, True, val)], defects)
        elif rest.rstrip("*").isdigit():
            sections.setdefault(base, []).append((int(rest.rstrip("*")), rest.endswith("*"), val))
    for base, parts in sections.items():
        parts.sort()
        extended[base] = _decode_2231(parts, defects)
    params.update(extended)
    return params


def _decode_2231(parts: list[tuple[int, bool, str]], defects: list[str]) -> str:
    charset: str | None = None
    data = bytearray()
    for index, (_, encoded, val) in enumerate(parts):
        if index == 0 and encoded and val.count("'") >= 2:
            charset, _, val = val.split("'", 2)
        if encoded:
            data += unquote_to_bytes(val)
        else:
            data += val.encode("utf-8", errors="replace")
    text, defect = decode_text(bytes(data), charset or "utf-8")
    if defect:
        defects.append(f"parameter: {defect}")
    return decode_words(text, defects) if "=?" in text else text


def parse_addresses(text: str, defects: list[str]) -> list[Address]:
    """Addresses of an address-list header; names decoded, unusable items dropped."""
    if not text.strip():
        return []
    if len(text) > MAX_ADDRESS_TEXT:
        defects.append("address list too long, cut")
        text = text[:MAX_ADDRESS_TEXT].rsplit(",", 1)[0]
    if "," not in text:
        # The common single address, without the cost of the full parser.
        match = _SIMPLE_ADDRESS.fullmatch(text)
        if match:
            name = match.group(1) if match.group(1) is not None else match.group(2)
            return [_address(name, match.group(3), defects)]
        match = _BARE_ADDRESS.fullmatch(text)
        if match:
            return [Address(name="", address=match.group(1))]
    result = []
    for name, addr in getaddresses([text]):
        if addr or name:
            result.append(_address(name, addr, defects))
    return result


def _address(name: str, addr: str, defects: list[str]) -> Address:
    name = name.strip()
    if "=?" in name:
        name = decode_words(name, defects)
    name = " ".join(name.split())
    if len(name) > 1 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    return Address(name=name, address=addr.strip())


def parse_date(text: str | None, defects: list[str]) -> str | None:
    """A Date header as ISO 8601, None when absent or impossible."""
    if not text or not text.strip():
        return None
    try:
        return parsedate_to_datetime(text).isoformat()
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"unreadable date {text[:80]!r}")
        return None


def parse_message_ids(text: str | None) -> list[str]:
    """Message ids without angle brackets, in order; bare ids accepted too."""
    if not text:
        return []
    ids = _MSG_ID.findall(text)
    if not ids:
        ids = [tok for tok in text.replace(",", " ").split() if "@" in tok]
    seen: set[str] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]
