"""The parsed form of a mail: the contract between the parser and the ticketer.

The parser turns raw bytes into a `ParsedMessage`; the ticketer reads it back
from the database (`parsed_messages.parsed`, JSON). Attachment bytes travel
separately (the `blobs` table, keyed by sha256), so `to_json` leaves them out.
`deskmail parse --json` prints exactly `to_json()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Kinds of automatic mail (invariant 7). None means a person wrote it.
AUTOMATIC_KINDS = ("auto_replied", "auto_generated", "out_of_office", "bulk", "list", "bounce", "own")


@dataclass
class Address:
    name: str
    address: str


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    sha256: str  # hex
    content_id: str | None = None
    inline: bool = False
    data: bytes = field(default=b"", repr=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["data"]
        return d


@dataclass
class Bounce:
    original_message_id: str | None
    recipient: str | None
    status: str | None = None


@dataclass
class ParsedMessage:
    from_: Address | None = None
    reply_to: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    subject: str = ""
    date: str | None = None  # ISO 8601
    message_id: str | None = None  # without angle brackets
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    body_text: str = ""
    reply_text: str = ""  # the new text of a reply, quoted history stripped
    body_html: str | None = None  # sanitised
    attachments: list[Attachment] = field(default_factory=list)
    automatic: str | None = None  # one of AUTOMATIC_KINDS
    bounce: Bounce | None = None
    defects: list[str] = field(default_factory=list)
    # Set when the message could not be parsed at all (invariant 6).
    unparsed: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "from": asdict(self.from_) if self.from_ else None,
            "reply_to": [asdict(a) for a in self.reply_to],
            "to": [asdict(a) for a in self.to],
            "cc": [asdict(a) for a in self.cc],
            "subject": self.subject,
            "date": self.date,
            "message_id": self.message_id,
            "in_reply_to": self.in_reply_to,
            "references": self.references,
            "body_text": self.body_text,
            "reply_text": self.reply_text,
            "body_html": self.body_html,
            "attachments": [a.to_json() for a in self.attachments],
            "automatic": self.automatic,
            "bounce": asdict(self.bounce) if self.bounce else None,
            "defects": self.defects,
            "unparsed": self.unparsed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ParsedMessage:
        def addrs(key: str) -> list[Address]:
            return [Address(**a) for a in d.get(key) or []]

        return cls(
            from_=Address(**d["from"]) if d.get("from") else None,
            reply_to=addrs("reply_to"),
            to=addrs("to"),
            cc=addrs("cc"),
            subject=d.get("subject") or "",
            date=d.get("date"),
            message_id=d.get("message_id"),
            in_reply_to=list(d.get("in_reply_to") or []),
            references=list(d.get("references") or []),
            body_text=d.get("body_text") or "",
            reply_text=d.get("reply_text") or "",
            body_html=d.get("body_html"),
            attachments=[Attachment(**a) for a in d.get("attachments") or []],
            automatic=d.get("automatic"),
            bounce=Bounce(**d["bounce"]) if d.get("bounce") else None,
            defects=list(d.get("defects") or []),
            unparsed=d.get("unparsed"),
        )
