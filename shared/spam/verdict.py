"""A mail's spam verdict, as the parser stores it and the ticketer reads it.

rspamd (or an upstream mail server) gives a score, an action and symbols;
Deskmail adds what it decides from them:

- spam: the filter's own verdict (rspamd's action is one it would file in a
  junk folder or refuse, or an upstream header says yes); a mailbox's
  `spam_threshold`, when set, replaces it with "score >= threshold";
- DMARC: from rspamd's DMARC_* symbols. A mail "fails DMARC" when its From
  domain publishes quarantine or reject and neither SPF nor DKIM aligned;
  a failure under p=none is recorded but not acted on, as the domain's
  owner asked (RFC 7489 6.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATES = ("rspamd", "upstream", "unchecked")
# rspamd's actions that mean "this is spam" (the others: no action, greylist, soft reject).
SPAM_ACTIONS = frozenset({"add header", "rewrite subject", "reject"})
_DMARC_SYMBOLS = {
    "DMARC_POLICY_ALLOW": ("pass", None),
    "DMARC_POLICY_REJECT": ("fail", "reject"),
    "DMARC_POLICY_QUARANTINE": ("fail", "quarantine"),
    "DMARC_POLICY_SOFTFAIL": ("softfail", "none"),
    "DMARC_NA": ("none", None),
    "DMARC_BAD_POLICY": ("none", None),
    "DMARC_DNSFAIL": ("none", None),
}
MAX_SYMBOLS = 64  # kept per mail: the ones that weigh most


@dataclass(frozen=True)
class Verdict:
    state: str  # one of STATES
    spam: bool | None = None
    score: float | None = None
    action: str | None = None
    dmarc: str | None = None
    dmarc_policy: str | None = None
    dmarc_domain: str | None = None
    symbols: dict[str, float] = field(default_factory=dict)
    problem: str | None = None

    @property
    def dmarc_failed(self) -> bool:
        """The From domain asked receivers to distrust mail that fails, and this one fails."""
        return self.dmarc == "fail" and self.dmarc_policy in ("reject", "quarantine")

    def is_spam(self, threshold: float | None) -> bool:
        """Spam by the mailbox's threshold if it has one, else by the filter's own verdict.

        The threshold is on rspamd's scale; an upstream server's score may be
        on another (SpamAssassin's), so its own yes or no stands.
        """
        if threshold is not None and self.state == "rspamd" and self.score is not None:
            return self.score >= threshold
        return bool(self.spam)

    def describe(self) -> str:
        """One line for a request's history: who said what."""
        who = "rspamd" if self.state == "rspamd" else "the upstream mail server"
        if self.state == "unchecked":
            who = "the upstream mail server (rspamd did not answer)"
        parts = [f"score {self.score:g}" if self.score is not None else "",
                 f"action {self.action}" if self.action else ""]
        top = sorted(((s, n) for n, s in self.symbols.items() if s > 0), reverse=True)[:5]
        detail = ", ".join(p for p in parts if p)
        if top:
            detail += (": " if detail else "") + ", ".join(f"{n} {s:g}" for s, n in top)
        return f"{who}: {detail}" if detail else who

    def row(self, raw_id: int) -> tuple[Any, ...]:
        from psycopg.types.json import Jsonb

        return (raw_id, self.state, self.spam, self.score, self.action, self.dmarc,
                self.dmarc_policy, self.dmarc_domain, Jsonb(self.symbols), self.problem)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Verdict:
        return cls(state=row["state"], spam=row["spam"], score=row["score"], action=row["action"],
                   dmarc=row["dmarc"], dmarc_policy=row["dmarc_policy"],
                   dmarc_domain=row["dmarc_domain"], symbols=dict(row["symbols"] or {}),
                   problem=row["problem"])


INSERT_SQL = (
    "INSERT INTO spam_verdicts (raw_id, state, spam, score, action, dmarc, dmarc_policy,"
    " dmarc_domain, symbols, problem) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (raw_id) DO NOTHING"
)


def dmarc_of(symbols: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(result, policy, domain) from rspamd's symbols (a name -> {score, options} mapping or names)."""
    for name, (result, policy) in _DMARC_SYMBOLS.items():
        if name in symbols:
            options = symbols[name].get("options") if isinstance(symbols[name], dict) else None
            domain = None
            if options:
                domain = str(options[0]).split(" : ", 1)[0].strip() or None
            return result, policy, domain
    return None, None, None


def top_symbols(symbols: dict[str, float]) -> dict[str, float]:
    """The MAX_SYMBOLS symbols that weigh most (either way), so a row stays small."""
    if len(symbols) <= MAX_SYMBOLS:
        return symbols
    keep = sorted(symbols.items(), key=lambda kv: abs(kv[1]), reverse=True)[:MAX_SYMBOLS]
    return dict(keep)
