"""Turning the bytes of a mail into text, whatever charset they claim to be in.

Mail lies about its charset. Labels are missing, misspelt or too narrow
(GB2312 text that uses GBK characters, ISO-8859-1 text typed on Windows with
curly quotes and euro signs). `decode_text` reads the declared label
generously, checks the bytes against it, and falls back to detection, so that
a replacement character appears only for bytes no charset could explain.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable

from charset_normalizer import from_bytes

# Labels seen in the wild mapped to the codec that really decodes such mail:
# supersets for the narrow labels (GBK and GB18030 contain GB2312, Windows
# code pages contain their ISO and JIS cousins), spellings Python lacks.
_ALIASES = {
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "cp936": "gb18030",
    "chinese": "gb18030",
    "iso-8859-1": "latin1-windows",
    "iso8859-1": "latin1-windows",
    "iso_8859-1": "latin1-windows",
    "latin1": "latin1-windows",
    "latin-1": "latin1-windows",
    "l1": "latin1-windows",
    "us-ascii": "latin1-windows",
    "ascii": "latin1-windows",
    "ansi_x3.4-1968": "latin1-windows",
    "windows-1252": "latin1-windows",
    "cp1252": "latin1-windows",
    "x-user-defined": "latin1-windows",
    "unknown-8bit": "",
    "unknown": "",
    "x-unknown": "",
    "default": "",
    "iso-8859-9": "cp1254",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "big5": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "iso-8859-11": "cp874",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode20utf8": "utf-8",
}

# Single-byte labels under which UTF-8 text is often sent by mistake.
_LATIN_LIKE = frozenset({"latin1-windows", "cp1250", "cp1254", "iso-8859-2", "iso-8859-15"})

# Charsets a detector may answer that mail is really written in (codec names).
_PLAUSIBLE = frozenset(
    codecs.lookup(name).name
    for name in (
        "gb18030", "big5hkscs", "cp932", "euc_jp", "cp949", "euc_kr", "iso2022_jp", "koi8_r",
        "koi8_u", "cp1251", "iso8859_5", "cp1253", "iso8859_7", "cp1255", "iso8859_8", "cp1256",
        "iso8859_6", "cp874", "cp1250", "iso8859_2", "cp1257", "iso8859_13", "cp1254", "iso8859_9",
        "cp1258", "utf_8",
    )
) | {"latin1-windows"}  # fmt: skip

_NOT_CHARSETS = frozenset(
    {"undefined", "idna", "punycode", "raw_unicode_escape", "unicode_escape", "mbcs", "oem"}
)

# Encodings that are pure 7-bit, so an ASCII-only payload still needs them.
_SEVEN_BIT = ("iso2022", "utf_7", "utf-7", "hz", "utf_16", "utf_32", "utf-16", "utf-32")


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


_ASCII = bytes(range(128))


def _mostly_utf8(data: bytes) -> bool:
    # Other multi-byte charsets form valid UTF-8 pairs by chance, but only
    # for a small share of their bytes.
    high = len(data.translate(None, _ASCII))
    covered = sum(len(seq) for seq in _UTF8_SEQUENCE.findall(data))
    return covered * 4 >= high * 3


def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    # Windows-1252 leaves five bytes undefined; ISO-8859-1 maps them to C1
    # controls. Taking that mapping means these bytes never become U+FFFD.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    # For UTF-8 text with a few stray Windows-1252 bytes (a signature pasted
    # from elsewhere): read just those bytes as Windows-1252.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    chunk = exc.object[exc.start : exc.end]
    return chunk.decode("cp1252", errors="deskmail-latin1"), exc.end


codecs.register_error("deskmail-latin1", _latin1_fallback)
codecs.register_error("deskmail-cp1252", _cp1252_fallback)


def codec_for(label: str | None) -> str | None:
    """The Python codec to use for a declared charset label, None if unknown or absent."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _ALIASES.get(name, name)
    if not name:
        return None
    if name == "latin1-windows":
        return name
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL in the label
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None  # "base64", "rot13", "unicode_escape" are codecs, not charsets
    return info.name


def _decode_with(data: bytes, codec: str) -> str:
    if codec == "latin1-windows":
        return data.decode("cp1252", errors="deskmail-latin1")
    return data.decode(codec)


def _looks_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def detect(data: bytes) -> str | None:
    """Best guess at the charset of undeclared 8-bit bytes (None if no guess).

    Only charsets that mail is really written in are believed: on a few
    bytes of German, detectors happily answer "mac_iceland".
    """
    if len(data) < 8:
        return None
    try:
        best = from_bytes(data[:65536]).best()
    except Exception:  # a detector failure only means "no guess"
        return None
    if best is None:
        return None
    codec = codec_for(best.encoding)
    return codec if codec in _PLAUSIBLE else None


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str | None]:
    """Decode bytes to text; returns (text, defect or None).

    Order: the declared charset (generously aliased), UTF-8, detection, and
    last Windows-1252 with ISO-8859-1 for its holes, which decodes any byte.
    """
    codec = codec_for(declared)
    if data.isascii() and (codec is None or not codec.startswith(_SEVEN_BIT)):
        return data.decode("ascii"), None
    defect = None
    if declared and codec is None:
        defect = f"unknown charset {declared!r}"
    if codec is not None:
        if codec in _LATIN_LIKE and _looks_utf8(data):
            return data.decode("utf-8"), f"text labelled {declared} is UTF-8"
        try:
            return _decode_with(data, codec), None
        except (UnicodeError, LookupError):
            defect = f"text does not match its charset {declared!r}"
    if codec != "utf-8" and _looks_utf8(data):
        return data.decode("utf-8"), defect
    if codec in (None, "utf-8") and _mostly_utf8(data):
        # Mostly UTF-8 with stray single-byte characters: keep the UTF-8.
        return data.decode("utf-8", errors="deskmail-cp1252"), defect or "invalid UTF-8"
    guess = detect(data)
    if guess is not None and guess != "utf-8":
        try:
            return _decode_with(data, guess), defect or "charset detected"
        except (UnicodeError, LookupError):
            pass
    if codec is not None and codec != "utf-8":
        # A multi-byte charset with a few broken sequences: keep what decodes.
        return data.decode(codec, errors="replace"), defect
    return data.decode("utf-8", errors="deskmail-cp1252"), defect or "undeclared 8-bit text"


def guess_header_charset(samples: Iterable[bytes], declared: Iterable[str]) -> str:
    """The charset of raw 8-bit header text that is not UTF-8.

    Headers carry no label, so we try the multi-byte charsets the message
    declares elsewhere (raw headers are usually in the body's charset), then
    detection on all such header text at once (more text, better guess).
    """
    blob = b"\n".join(samples)
    for label in declared:
        codec = codec_for(label)
        if codec is None or codec in _LATIN_LIKE or codec.startswith("iso8859"):
            continue
        try:
            blob.decode(codec)
        except (UnicodeError, LookupError):
            continue
        return codec
    return detect(blob) or "latin1-windows"


def decode_header_bytes(data: bytes, charset: str) -> str:
    """Decode raw 8-bit header bytes with the charset chosen for the message."""
    try:
        return _decode_with(data, charset)
    except (UnicodeError, LookupError):
        return data.decode("utf-8", errors="deskmail-cp1252")
