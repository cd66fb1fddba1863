"""winmail.dat (MS-TNEF): Outlook's wrapper around the real attachments.

An agent cannot open winmail.dat, so its files are unpacked and listed as
ordinary attachments; the wrapper itself is kept only if nothing came out.
"""

from __future__ import annotations

import logging

from tnefparse.tnef import TNEF

# tnefparse logs every unknown TNEF attribute at warning level.
logging.getLogger("tnefparse").setLevel(logging.ERROR)


def is_tnef(content_type: str, filename: str | None) -> bool:
    return content_type in ("application/ms-tnef", "application/vnd.ms-tnef") or (
        filename or ""
    ).lower() in ("winmail.dat", "win.dat")


def unpack_tnef(data: bytes) -> tuple[list[tuple[str, bytes]], str | None]:
    """The files inside a TNEF blob and its plain body; raises ValueError if unreadable."""
    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception as exc:  # tnefparse raises anything on junk
        raise ValueError(f"unreadable TNEF: {type(exc).__name__}") from exc
    files = []
    for attachment in tnef.attachments:
        try:
            name = attachment.long_filename() or attachment.name
        except Exception:  # undecodable names
            name = ""
        if isinstance(name, bytes):
            name = name.decode("utf-8", errors="replace")
        if attachment.data:
            files.append((name.strip("\x00 ") or "attachment", bytes(attachment.data)))
    body = tnef.body
    if isinstance(body, bytes):
        body = body.decode("cp1252", errors="replace")
    return files, (body.strip("\x00") if body else None)
