"""Regular expressions that mail and administrators control, under a budget.

Rules and sender patterns are matched with RE2 (google-re2), which runs in
time linear in the text, whatever the pattern: no pattern, however written,
can make a mail take long (a backtracking engine takes exponential time on
`(a+)+$` against a long run of a's). The budget is completed by bounding the
input (MAX_TEXT characters of any field) and the compiled program (MAX_PROGRAM
bytes of memory); a pattern RE2 cannot compile within that, or does not
support (backreferences, lookaround), is refused when it is saved, with RE2's
reason.
"""

from __future__ import annotations

from functools import lru_cache

import re2

MAX_TEXT = 256 * 1024  # characters of a field that a condition looks at
MAX_PROGRAM = 1 << 20  # bytes RE2 may use for one compiled pattern
MAX_PATTERN = 1000  # characters of a pattern as typed


class BadPattern(ValueError):
    """A pattern that will not compile, in words for the administrator."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    options.max_mem = MAX_PROGRAM
    return options


@lru_cache(maxsize=4096)
def compile_regex(pattern: str, *, ignore_case: bool = True) -> re2._Regexp:
    """The compiled pattern; BadPattern saying why not."""
    if len(pattern) > MAX_PATTERN:
        raise BadPattern(f"longer than {MAX_PATTERN} characters")
    try:
        return re2.compile(("(?i)" if ignore_case else "") + pattern, _options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        if ignore_case:  # RE2 quotes the pattern it compiled: show the one the administrator wrote
            reason = reason.replace("(?i)", "", 1)
        raise BadPattern(f"not a valid regular expression: {reason}") from None


def glob_regex(glob: str) -> str:
    """A sender pattern (`*` any run of characters, `?` one character) as an anchored regex."""
    out = []
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re2.escape(ch))
    return "^" + "".join(out) + "$"


def search(pattern: str, text: str) -> bool:
    return compile_regex(pattern).search(text[:MAX_TEXT]) is not None
