"""The fault-injection scenarios of tests/fault at a larger size, with a report.

    python bench/reliability.py                      # scale 5: 1,000 mails a scenario, 10,000 malformed
    python bench/reliability.py --scale 2 --only sigkill network
    python bench/reliability.py --json report.json

Each scenario (tests/fault/scenarios.py) runs the four stages as processes
against the real RabbitMQ, PostgreSQL and Dovecot of this machine, with its
own database and queues, while it injects its faults; then it checks the
invariants. The report gives per scenario: mails, faults injected per kind,
lost, duplicated, duplicate auto-replies (dup-AR), auto-replies due (AR due;
for the malformed scenario: recorded sent), auto-replies left 'unknown' by
the replier's at-most-once rule and how many of those the SMTP sink did
receive, dead letters left at the end, the time to make progress again
after each fault, and the whole run's mails/s. Exit status 1 if any
invariant broke.

The rabbitmq and postgresql scenarios stop the shared servers for a few
seconds (and always restore them): do not run this while others run tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fault import scenarios  # noqa: E402
from tests.fault.scenarios import Result, Size  # noqa: E402
from tests.support import dovecot  # noqa: E402
from tests.support.pipeline import scratch_settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=5.0, help="multiplies the CI size (200 mails, 5 kills)")
    parser.add_argument("--malformed", type=int, default=10_000, help="malformed mails in that scenario")
    parser.add_argument("--only", nargs="*", choices=sorted(scenarios.SCENARIOS), help="run only these")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args()
    base = Size.from_scale(args.scale)
    size = Size(mails=base.mails, kills_per_stage=base.kills_per_stage, kill_interval=base.kill_interval,
                malformed=args.malformed)
    dovecot.ensure_dovecot()
    print(f"reliability: {size.mails} mails a scenario, {size.kills_per_stage} SIGKILLs per stage,"
          f" {size.malformed} malformed mails", flush=True)
    results: list[Result] = []
    for name in args.only or list(scenarios.SCENARIOS):
        with tempfile.TemporaryDirectory(prefix=f"reliability-{name}-") as tmp:
            work = Path(tmp)
            with scratch_settings(work, prefix="deskmail_rel") as settings:
                started = time.monotonic()
                try:
                    result = scenarios.SCENARIOS[name](settings, work, size)
                except AssertionError as exc:  # the pipeline never settled: a stall is a finding too
                    result = Result(name, scenarios.Verdict(problems=[f"did not settle: {exc}"]),
                                    seconds=time.monotonic() - started)
        results.append(result)
        print(scenarios.describe(result), flush=True)
    print()
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([as_dict(r) for r in results], indent=1))
    return 1 if any(r.problems for r in results) else 0


def report(results: list[Result]) -> str:
    lines = ["scenario      mails  mails/s  lost   dup  dup-AR  AR due  AR unknown(rcvd)  dead"
             "  recovery p50/max (s)  verdict  faults injected"]
    for r in results:
        v = r.verdict
        kinds = Counter(f.kind for f in r.faults)
        faults = ", ".join(f"{k} x{n}" for k, n in kinds.items()) or "-"
        recovered = [f.recovery for f in r.faults if f.recovery is not None]
        recovery = (f"{statistics.median(recovered):.2f}/{max(recovered):.2f}" if recovered else "-")
        unknown = f"{v.auto_replies_unknown}({v.auto_replies_unknown_received})"
        lines.append(
            f"{r.scenario:<12} {v.mails:>6} {v.mails / r.seconds if r.seconds else 0:>8.1f} {len(v.lost):>5}"
            f" {len(v.duplicated):>5} {len(v.duplicate_auto_replies):>7} {v.auto_replies_due:>7} {unknown:>17}"
            f" {len(v.dead):>5}  {recovery:>20}  {'OK' if not r.problems else 'FAILED':<7}  {faults}")
    lines.append("")
    lines.append("time to progress again after each fault (s), by kind:")
    by_kind: dict[str, list[str]] = {}
    for r in results:
        for f in r.faults:
            value = "idle" if f.recovery is None else f"{f.recovery:.2f}"
            by_kind.setdefault(f"{f.kind} ({f.target})" if f.kind != "sigkill" else f"sigkill {f.target}",
                               []).append(value)
    for kind, values in by_kind.items():
        lines.append(f"  {kind:<36} {' '.join(values)}")
    return "\n".join(lines)


def as_dict(r: Result) -> dict:
    v = r.verdict
    return {
        "scenario": r.scenario, "seconds": round(r.seconds, 1), "mails": v.mails, "lost": len(v.lost),
        "duplicated": len(v.duplicated), "duplicate_auto_replies": len(v.duplicate_auto_replies),
        "auto_replies_due": v.auto_replies_due, "auto_replies_unknown": v.auto_replies_unknown,
        "dead_letters": len(v.dead), "details": v.details, "problems": r.problems, "notes": r.notes,
        "faults": [{"kind": f.kind, "target": f.target, "lasted": round(f.cleared - f.started, 2),
                    "recovery": None if f.recovery is None else round(f.recovery, 2)} for f in r.faults],
    }


if __name__ == "__main__":
    sys.exit(main())
