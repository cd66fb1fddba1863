"""Walking the MIME tree: which parts are the body and which are attachments.

The body is a list of segments, one per body part or alternative group,
each with its plain text and/or raw HTML. Everything else becomes an
attachment, decoded and hashed exactly once: inline images (linked by
Content-ID), attached messages (named after their subject), PGP and S/MIME
parts, the files inside winmail.dat and uuencoded blocks. Delivery reports
are remembered for the bounce reader.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass, field

from services.parser.charsets import decode_text
from services.parser.flowed import unflow
from services.parser.headers import Headers, HeaderText, split_header_section
from services.parser.structure import Part
from services.parser.tnef import is_tnef, unpack_tnef
from services.parser.uuencode import extract_uuencoded
from shared.parsed import Attachment

_BODY_TYPES = ("text/plain", "text/html")
_MESSAGE_TYPES = ("message/rfc822", "message/global", "message/news")
_RETURNED_HEADER_TYPES = ("text/rfc822-headers", "message/rfc822-headers")
_DEFAULT_NAMES = {
    "message/delivery-status": "delivery-status.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "text/rfc822-headers": "original-headers.txt",
    "message/rfc822-headers": "original-headers.txt",
}
_NO_EXTENSION = frozenset({"application/octet-stream", "application/pgp-encrypted", "application/pgp-keys"})
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "text/calendar": ".ics",
    "image/jpeg": ".jpg",
    "application/pgp-signature": ".asc",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m",
    "application/x-pkcs7-mime": ".p7m",
}


@dataclass(slots=True)
class Segment:
    text: str | None = None
    html: str | None = None


@dataclass
class Collected:
    segments: list[Segment] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    delivery_status: str | None = None
    returned_headers: Headers | None = None


def collect(root: Part, defects: list[str]) -> Collected:
    """Sort the parts of a parsed message into body segments and attachments."""
    walker = _Walker(defects)
    walker.walk(root, in_related=False)
    return walker.out


class _Walker:
    def __init__(self, defects: list[str]) -> None:
        self.defects = defects
        self.out = Collected()

    def walk(self, part: Part, in_related: bool) -> None:
        if not part.children:
            self._leaf(part, in_related)
            return
        kind = part.content_type
        children = part.children
        if kind == "multipart/alternative":
            self._alternative(children)
        elif kind == "multipart/related":
            start = part.params.get("start", "").strip("<>")
            root = next((c for c in children if start and _content_id(c) == start), children[0])
            self.walk(root, in_related=False)
            for child in children:
                if child is not root:
                    self.walk(child, in_related=True)
        elif kind == "multipart/signed":
            self.walk(children[0], in_related)
            for child in children[1:]:
                self._attach(child, in_related=False)
        elif kind == "multipart/encrypted":
            for child in children:
                self._attach(child, in_related=False)
        else:
            for child in children:
                self.walk(child, in_related)

    def _alternative(self, children: list[Part]) -> None:
        plain: str | None = None
        html: str | None = None
        for child in children:
            if child.children:
                saved = self.out.segments
                self.out.segments = []
                self.walk(child, in_related=False)
                inner, self.out.segments = self.out.segments, saved
                texts = [s.text for s in inner if s.text is not None]
                htmls = [s.html for s in inner if s.html is not None]
                if htmls:
                    html = "\n".join(htmls)
                elif texts:
                    plain = "\n".join(texts)
            elif child.content_type in _BODY_TYPES and not self._is_attachment(child):
                text = self._text(child)
                if child.content_type == "text/html":
                    html = text
                elif text.strip() or plain is None:
                    plain = text
            else:
                self._attach(child, in_related=False)
        if plain is not None and not plain.strip() and html is not None:
            plain = None  # an empty text alternative: the HTML is the body
        if plain is not None:
            plain = self._uuencoded(plain)
        self.out.segments.append(Segment(plain, html))

    def _leaf(self, part: Part, in_related: bool) -> None:
        kind = part.content_type
        if kind in _BODY_TYPES and not self._is_attachment(part):
            text = self._text(part)
            if kind == "text/html":
                self.out.segments.append(Segment(None, text))
            else:
                self.out.segments.append(Segment(self._uuencoded(text), None))
            return
        self._attach(part, in_related)

    def _is_attachment(self, part: Part) -> bool:
        disposition, params = part.header_params("content-disposition", self.defects)
        return disposition == "attachment" or bool(params.get("filename") or part.params.get("name"))

    def _text(self, part: Part) -> str:
        text, defect = decode_text(part.payload(self.defects), part.params.get("charset"))
        if defect:
            self.defects.append(f"{part.content_type} part: {defect}")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if part.params.get("format", "").lower() == "flowed":
            text = unflow(text, part.params.get("delsp", "").lower() == "yes")
        return text

    def _uuencoded(self, text: str) -> str:
        text, files = extract_uuencoded(text)
        for name, data in files:
            self._add(_clean_name(name) or "file", _guess_type(name), data, None, False)
        return text

    def _attach(self, part: Part, in_related: bool) -> None:
        if part.children:  # a multipart inside signed/encrypted: its leaves
            for child in part.children:
                self._attach(child, in_related)
            return
        kind = part.content_type
        disposition, dparams = part.header_params("content-disposition", self.defects)
        name = _clean_name(dparams.get("filename") or part.params.get("name") or "")
        data = part.payload(self.defects)
        content_id = _content_id(part)
        if kind == "message/delivery-status" and self.out.delivery_status is None:
            self.out.delivery_status = decode_text(data, "utf-8")[0]
        if kind in _MESSAGE_TYPES or kind in _RETURNED_HEADER_TYPES:
            headers, _ = split_header_section(data, [])
            if self.out.returned_headers is None:
                self.out.returned_headers = headers
            if kind in _MESSAGE_TYPES and not name:
                subject = HeaderText(headers, data, []).get("subject") or ""
                name = _clean_name(" ".join(subject.split())[:120]) or "message"
                name += ".eml"
        if is_tnef(kind, name) and self._tnef(data):
            return
        if not name:
            name = _DEFAULT_NAMES.get(kind) or "file" + _extension(kind)
        inline = disposition == "inline" or (not disposition and in_related)
        self._add(name, kind, data, content_id, inline)

    def _tnef(self, data: bytes) -> bool:
        try:
            files, body = unpack_tnef(data)
        except ValueError as exc:
            self.defects.append(str(exc))
            return False
        if not files and not body:
            return False
        for name, content in files:
            self._add(_clean_name(name) or "file", _guess_type(name), content, None, False)
        if body and not any(s.text or s.html for s in self.out.segments):
            self.out.segments.append(Segment(body.replace("\r\n", "\n"), None))
        return True

    def _add(self, name: str, kind: str, data: bytes, content_id: str | None, inline: bool) -> None:
        self.out.attachments.append(
            Attachment(
                filename=name,
                content_type=kind,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                content_id=content_id,
                inline=inline,
                data=data,
            )
        )


def _content_id(part: Part) -> str | None:
    value = part.headers.get("content-id")
    if not value:
        return None
    cid = value.decode("latin-1").strip().strip("<>").strip()
    return cid or None


def _clean_name(name: str) -> str:
    # Only the last path component, no control characters: the name ends up
    # in download headers and on agents' disks.
    name = _UNSAFE_NAME.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    return name[:255]


def _extension(kind: str) -> str:
    # No extension for protocol parts and unknown data: ".pgp" on the
    # "Version: 1" part of PGP/MIME or ".bin" would only mislead.
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind]
    if kind in _NO_EXTENSION:
        return ""
    return mimetypes.guess_extension(kind, strict=False) or ""


def _guess_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
