"""What spam checks and mail rules cost per mail, each measured alone.

    python bench/filter_bench.py            # 2,000 mails of the shared mix
    python bench/filter_bench.py --quick    # 300 mails

1. rspamd      /checkv2 of each mail of the mix (bench/mailgen.py) against
               the tests' rspamd (scripts/rspamd.sh start): latency one at a
               time, then throughput with the parser's 8 requests in flight.
               rspamd's own CPU per mail is read from its processes.
2. upstream    scanning each mail's header block for upstream verdicts (done
               for every mail, rspamd on or off).
3. rules       evaluating 50 rules (bench/e2e.py's mix of shapes: subject,
               body regex, from, recipient, header, attachments, ...) against
               each parsed mail, and, for comparison, 0 and 10 rules.

Nothing of the pipeline runs: the figures are the work the parser (1, 2) and
the ticketer (3) add per mail, to read beside bench/e2e.py's totals.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e import bench_rules, rspamd_env  # noqa: E402
from bench.mailgen import generate_with_ids  # noqa: E402
from services.parser.mime import parse_message  # noqa: E402
from shared.filters.facts import facts_of, parse_headers  # noqa: E402
from shared.filters.rules import Rule, clean, evaluate  # noqa: E402
from shared.spam.rspamd import Rspamd, RspamdError  # noqa: E402
from shared.spam.upstream import upstream_verdict  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def rspamd_cpu() -> float:
    """CPU seconds of every rspamd process on this machine (user + system)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("rspamd"):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def bench_rspamd(mails: list[bytes]) -> None:
    env = rspamd_env()
    client = Rspamd(env["DESKMAIL_RSPAMD_URL"], timeout=10.0)
    for raw in mails[:20]:  # warm up: rspamd's maps and regex cache
        client.check(raw)
    latencies = []
    cpu = rspamd_cpu()
    started = time.perf_counter()
    failed = 0
    for raw in mails:
        t = time.perf_counter()
        try:
            client.check(raw, rcpt="support@example.test")
        except RspamdError:
            failed += 1
        latencies.append(time.perf_counter() - t)
    serial = time.perf_counter() - started
    serial_cpu = rspamd_cpu() - cpu
    print(f"rspamd /checkv2, one at a time: {len(mails)} mails in {serial:.1f} s; latency p50"
          f" {pct(latencies, .5) * 1000:.1f} ms p95 {pct(latencies, .95) * 1000:.1f} ms"
          f" p99 {pct(latencies, .99) * 1000:.1f} ms; rspamd CPU {serial_cpu * 1000 / len(mails):.1f} ms/mail"
          + (f"; {failed} failed" if failed else ""))
    cpu = rspamd_cpu()
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda raw: client.check(raw, rcpt="support@example.test"), mails))
    parallel = time.perf_counter() - started
    print(f"rspamd /checkv2, 8 in flight (the parser's lanes): {len(mails) / parallel:,.0f} mails/s;"
          f" rspamd CPU {(rspamd_cpu() - cpu) * 1000 / len(mails):.1f} ms/mail"
          f" (its scanner runs {_workers()} worker process(es))")


def _workers() -> str:
    out = subprocess.run(["pgrep", "-fc", "rspamd: normal process"], capture_output=True, text=True).stdout
    return out.strip() or "?"


def bench_upstream(mails: list[bytes]) -> None:
    started = time.perf_counter()
    for _ in range(5):
        for raw in mails:
            upstream_verdict(raw)
    per = (time.perf_counter() - started) / (5 * len(mails))
    print(f"upstream verdict headers: {per * 1e6:.1f} µs/mail")


def bench_rules_eval(mails: list[bytes]) -> None:
    parsed = [parse_message(raw) for raw in mails]
    for count in (0, 10, 50):
        rules = [Rule.from_row({"id": i, "mailbox_id": None, "enabled": True, "position": i, **clean(v)})
                 for i, v in enumerate(bench_rules(count))]
        wanted = set().union(*(r.headers for r in rules))
        matched = 0
        started = time.perf_counter()
        for p, raw in zip(parsed, mails, strict=True):
            # The facts as the ticketer builds them, the head read as it does (facts.read_headers).
            decision = evaluate(rules, facts_of(p, None, parse_headers(raw, wanted)))
            matched += decision.category is not None
        per = (time.perf_counter() - started) / len(mails)
        print(f"rules: {count:2d} rules, facts and headers included: {per * 1e6:,.0f} µs/mail"
              f" ({matched} of {len(mails)} mails matched one)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-rspamd", action="store_true")
    args = parser.parse_args()
    n = 300 if args.quick else args.n
    mails = [raw for _, raw in generate_with_ids(n, 1)]
    print(f"{n} mails of the mix, {sum(map(len, mails)) / n / 1024:.0f} KB average")
    bench_upstream(mails)
    bench_rules_eval(mails)
    if not args.no_rspamd:
        bench_rspamd(mails)


if __name__ == "__main__":
    main()
