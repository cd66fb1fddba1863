"""Typed values from what a front end received: form strings, JSON values, command-line text.

Only what is clearly meant is converted ("143" -> 143, "on" -> True, "" ->
None for a field that may be empty); anything else is passed on as it came,
so that the service's own validation words the error once, for the CLI, the
API and the pages alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.mailboxes import InvalidSetting

TRUE = ("true", "on", "yes", "1")
FALSE = ("false", "off", "no", "0", "")


def coerce(raw: Mapping[str, Any], *, accepted: Iterable[str], ints: Iterable[str] = (),
           nullable: Iterable[str] = (), bools: Iterable[str] = (), lowered: Iterable[str] = (),
           secret: str | None = "password") -> tuple[dict[str, Any], str | None]:
    """(typed values, secret) from `raw`; a blank secret is None ("keep the saved one").

    Raises InvalidSetting for unknown fields, text fields given something
    other than text, and boolean fields given anything but a yes or no.
    """
    accepted, ints, nullable, bools, lowered = (set(x) for x in (accepted, ints, nullable, bools, lowered))
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    password: str | None = None
    for name, value in raw.items():
        if name == secret:
            if value is not None and not isinstance(value, str):
                errors[name] = "must be text"
            else:
                password = value or None
        elif name not in accepted:
            errors[name] = "is not a setting here"
        elif name in bools:
            if isinstance(value, bool):
                values[name] = value
            elif isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
                values[name] = value.strip().lower() in TRUE
            else:
                errors[name] = f"must be true or false, not {value!r}"
        elif name in ints:
            if (value is None or (isinstance(value, str) and not value.strip())) and name in nullable:
                values[name] = None
            elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
                values[name] = int(value.strip())
            elif isinstance(value, bool):
                values[name] = str(value).lower()  # JSON true is no number: validation says so
            else:
                values[name] = value
        elif value is None:
            values[name] = None if name in nullable else ""
        elif not isinstance(value, str):
            errors[name] = f"must be text, not {value!r}"
        else:
            values[name] = value.strip().lower() if name in lowered else value
            if name in nullable and not values[name].strip():
                values[name] = None
    if errors:
        raise InvalidSetting(errors)
    return values, password
