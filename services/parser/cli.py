"""`deskmail parse FILE [--json]`: show what the parser makes of one raw message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from services.parser.mime import parse_message
from shared.parsed import Address, ParsedMessage


def _address(address: Address | None) -> str:
    if address is None:
        return "-"
    return f"{address.name} <{address.address}>" if address.name else address.address


def _human(parsed: ParsedMessage) -> str:
    lines = [
        f"From:        {_address(parsed.from_)}",
        f"Reply-To:    {', '.join(map(_address, parsed.reply_to)) or '-'}",
        f"To:          {', '.join(map(_address, parsed.to)) or '-'}",
        f"Cc:          {', '.join(map(_address, parsed.cc)) or '-'}",
        f"Subject:     {parsed.subject}",
        f"Date:        {parsed.date or '-'}",
        f"Message-ID:  {parsed.message_id or '-'}",
        f"In-Reply-To: {' '.join(parsed.in_reply_to) or '-'}",
        f"References:  {' '.join(parsed.references) or '-'}",
        f"Automatic:   {parsed.automatic or 'no'}",
    ]
    if parsed.bounce:
        b = parsed.bounce
        lines.append(f"Bounce:      recipient={b.recipient} status={b.status} original={b.original_message_id}")
    if parsed.unparsed:
        lines.append(f"UNPARSED:    {parsed.unparsed}")
    for a in parsed.attachments:
        flags = " inline" if a.inline else ""
        cid = f" cid:{a.content_id}" if a.content_id else ""
        lines.append(f"Attachment:  {a.filename} ({a.content_type}, {a.size} bytes{flags}{cid}) sha256={a.sha256}")
    for defect in parsed.defects:
        lines.append(f"Defect:      {defect}")
    lines += ["", "--- reply text ---", parsed.reply_text.rstrip(), "", "--- body text ---", parsed.body_text.rstrip()]
    return "\n".join(lines)


def parse_command(path: str, as_json: bool) -> int:
    """Print the parsed form of the message in `path`; 0 on success, 2 if it cannot be read."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    parsed = parse_message(raw)
    if as_json:
        print(json.dumps(parsed.to_json(), ensure_ascii=False, indent=2))
    else:
        print(_human(parsed))
    return 0
