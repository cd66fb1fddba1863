"""The MIME tree of a message: parts, their content types and raw bodies.

A small byte-level engine instead of the stdlib `email` parser: boundaries
are found with `bytes.find`, so a 50 MB attachment costs one scan and one
slice rather than a Python-level loop over its lines, and nothing is
decoded until someone asks for it (`Part.payload`).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

from services.parser.headers import Headers, b64decode_lenient, parse_params, split_header_section

MAX_DEPTH = 40  # deeper multiparts are kept whole as one opaque attachment
MAX_PARTS = 2000  # a message with more parts keeps the rest unsplit


@dataclass(slots=True, eq=False)
class Part:
    headers: Headers
    body: bytes  # still transfer-encoded
    content_type: str  # "maintype/subtype", lower case
    params: dict[str, str]
    depth: int
    children: list[Part] = field(default_factory=list)
    _payload: bytes | None = None

    def header_params(self, name: str, defects: list[str]) -> tuple[str, dict[str, str]]:
        value = self.headers.get(name)
        if value is None:
            return "", {}
        return parse_params(_header_str(value), defects)

    def transfer_encoding(self) -> str:
        value = self.headers.get("content-transfer-encoding")
        return value.decode("latin-1").strip().lower() if value else ""

    def payload(self, defects: list[str]) -> bytes:
        """The body with its transfer encoding undone (decoded once, then cached)."""
        if self._payload is None:
            self._payload = decode_transfer(self.body, self.transfer_encoding(), defects)
            # Nothing reads the encoded body once decoded: free it (a big attachment
            # would otherwise be held twice, encoded and decoded).
            self.body = b""
        return self._payload


def _header_str(value: bytes) -> str:
    if value.isascii():
        return value.decode("ascii")
    return value.decode("utf-8", errors="deskmail-cp1252")


def decode_transfer(body: bytes, encoding: str, defects: list[str]) -> bytes:
    if encoding == "base64":
        data, broken = b64decode_lenient(body)
        if broken:
            defects.append("broken base64 body")
        return data
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    if encoding in ("x-uuencode", "uuencode", "x-uue"):
        from services.parser.uuencode import decode_uu_body

        return decode_uu_body(body)
    if encoding not in ("", "7bit", "8bit", "binary", "none"):
        defects.append(f"unknown transfer encoding {encoding!r}")
    return body


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def parse_tree(raw: bytes, defects: list[str]) -> Part:
    """Parse a whole message (or an attached one) into its tree of parts."""
    return _parse_part(raw, 0, "text/plain", defects, _Budget())


def _parse_part(raw: bytes, depth: int, default: str, defects: list[str], budget: _Budget) -> Part:
    budget.parts += 1
    headers, body = split_header_section(raw, defects)
    ctype_header = headers.get("content-type")
    ctype, params = default, {}
    if ctype_header is not None:
        ctype, params = parse_params(_header_str(ctype_header), defects)
        if ctype.count("/") != 1 or " " in ctype:
            defects.append(f"invalid content type {ctype[:60]!r}")
            ctype = "application/octet-stream" if ctype.startswith("application") else default
    part = Part(headers, body, ctype, params, depth)
    del body, raw  # the part holds its body; _split_children may drop it
    if ctype.startswith("multipart/"):
        _split_children(part, defects, budget)
    return part


def _split_children(part: Part, defects: list[str], budget: _Budget) -> None:
    boundary = part.params.get("boundary", "")
    if part.depth >= MAX_DEPTH or budget.parts >= MAX_PARTS:
        defects.append("multipart nested too deep or too many parts, kept whole")
        part.content_type = "application/octet-stream"
        return
    chunks, closed = split_multipart(part.body, boundary.encode("utf-8", "replace"))
    if not boundary or not chunks:
        defects.append("multipart without boundary or parts, read as text")
        part.content_type = "text/plain"
        return
    if not closed:
        defects.append("multipart not closed by its final boundary")
    room = max(1, MAX_PARTS - budget.parts)
    if len(chunks) > room:
        defects.append(f"more than {MAX_PARTS} parts, the rest dropped")
        del chunks[room:]
    default = "message/rfc822" if part.content_type == "multipart/digest" else "text/plain"
    # A container's body is only ever read through its children: drop it, and
    # each chunk once its part is made, so a big attachment is not held three times.
    part.body = b""
    chunks.reverse()
    while chunks:
        part.children.append(_parse_part(chunks.pop(), part.depth + 1, default, defects, budget))


def split_multipart(body: bytes, boundary: bytes) -> tuple[list[bytes], bool]:
    """The raw parts between `--boundary` lines and whether the closing line was seen."""
    if not boundary:
        return [], False
    delimiter = b"--" + boundary
    chunks: list[bytes] = []
    start: int | None = None
    pos = 0
    while True:
        i = body.find(delimiter, pos)
        if i < 0:
            break
        pos = i + len(delimiter)
        if i > 0 and body[i - 1] != 0x0A:
            continue  # not at the start of a line
        eol = body.find(b"\n", pos)
        if eol < 0:
            eol = len(body)
        rest = body[pos:eol].strip()
        closing = rest.startswith(b"--")
        if rest and not closing:
            continue  # a longer boundary that merely starts like ours
        if start is not None:
            end = i - 1 if i > 0 else 0
            if end > start and body[end - 1] == 0x0D:
                end -= 1
            chunks.append(body[start:max(start, end)])
        if closing:
            return chunks, True
        start = eol + 1
        pos = start
    if start is not None and start < len(body):
        chunks.append(body[start:])
    return chunks, False
