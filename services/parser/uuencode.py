"""uuencoded files inside plain-text bodies (old mailers and scripts still send them).

A block runs from `begin <mode> <name>` to `end`; it is cut out of the text
and becomes an attachment.
"""

from __future__ import annotations

import binascii
import re

_BEGIN = re.compile(r"^begin(?:-base64)? [0-7]{3,4} (\S[^\r\n]*)$", re.MULTILINE)
_END = re.compile(r"^end\s*$", re.MULTILINE)


def _decode_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # Some encoders pad lines with garbage; the length byte says how much is real.
        if not line:
            return b""
        count = (((line[0] - 32) & 63) * 4 + 5) // 3
        try:
            return binascii.a2b_uu(line[:count])
        except binascii.Error:
            return b""


def decode_uu_body(body: bytes) -> bytes:
    """The data of a body in uuencode transfer encoding (with or without begin/end)."""
    out = bytearray()
    started = not body.lstrip().startswith(b"begin ")
    for line in body.splitlines():
        if not started:
            started = line.startswith(b"begin ")
            continue
        if line.strip() == b"end":
            break
        if line.strip() and line.strip() != b"`":
            out += _decode_line(line.rstrip(b"\r"))
    return bytes(out)


def extract_uuencoded(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Cut uuencoded blocks out of a text; returns (remaining text, [(filename, data)])."""
    if "begin " not in text:
        return text, []
    files: list[tuple[str, bytes]] = []
    kept: list[str] = []
    pos = 0  # where to search next
    cut = 0  # end of the last block cut out
    while True:
        begin = _BEGIN.search(text, pos)
        if begin is None:
            break
        end = _END.search(text, begin.end())
        if end is None:
            break
        lines = text[begin.end() : end.start()].strip("\r\n").splitlines()
        try:
            encoded = [line.rstrip("\r").encode("ascii") for line in lines]
        except UnicodeEncodeError:
            pos = begin.end()  # not uuencode after all
            continue
        data = b"".join(_decode_line(line) for line in encoded if line.strip(b" `"))
        files.append((begin.group(1).strip(), data))
        kept.append(text[cut : begin.start()])
        pos = cut = end.end()
    if not files:
        return text, []
    kept.append(text[cut:])
    return "".join(kept), files
