"""Embedded mode without any SMTP settings: outgoing mail is written to a folder instead of sent.

The folder is DESKMAIL_OUTBOX_DIR (default `$DESKMAIL_DATA_DIR/outbox`).
"""

from __future__ import annotations

from pathlib import Path


def write_outbox(outbox: Path, message_id: str, data: bytes) -> Path:
    """Embedded mode without SMTP: the mail lands as a file a newcomer can open."""
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{message_id.split('@')[0]}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
