"""The request tag in subjects, e.g. "[#12345]": one format for the replier and the ticketer.

DESKMAIL_TAG_FORMAT sets it; `{id}` stands for the request number.
"""

from __future__ import annotations

import os
import re

DEFAULT_TAG_FORMAT = "[#{id}]"


def tag_format() -> str:
    fmt = os.environ.get("DESKMAIL_TAG_FORMAT", DEFAULT_TAG_FORMAT)
    if "{id}" not in fmt:
        raise SystemExit(f"DESKMAIL_TAG_FORMAT must contain {{id}}, got {fmt!r}")
    return fmt


def tag_for(request_id: int, fmt: str | None = None) -> str:
    return (fmt or tag_format()).replace("{id}", str(request_id))


def tag_pattern(fmt: str | None = None) -> re.Pattern[str]:
    before, _, after = (fmt or tag_format()).partition("{id}")
    return re.compile(re.escape(before) + r"(\d{1,18})" + re.escape(after))


def with_tag(subject: str, request_id: int) -> str:
    """The subject with the request's tag, added once."""
    tag = tag_for(request_id)
    return subject if tag in subject else f"{subject} {tag}".strip()
