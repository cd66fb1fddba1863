"""Parser throughput on the shared mixed mail set, on one core.

    python bench/parse_bench.py -n 2000

Prints messages/s and latency percentiles of `parse_message`, then the
stdlib `email` package on the same bytes for comparison (policy.default
and compat32, parse only, and policy.default with body and attachments
read, which is the work the parser really replaces).
"""

from __future__ import annotations

import argparse
import email
import os
import sys
import time
from collections.abc import Callable
from email import policy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailgen import generate  # noqa: E402

from services.parser.mime import parse_message  # noqa: E402


def _stdlib_full(raw: bytes) -> None:
    message = email.message_from_bytes(raw, policy=policy.default)
    body = message.get_body(("plain", "html"))
    if body is not None:
        body.get_content()
    for attachment in message.iter_attachments():
        attachment.get_content()


def run(label: str, function: Callable[[bytes], object], messages: list[bytes]) -> None:
    latencies = []
    started = time.perf_counter()
    for raw in messages:
        t0 = time.perf_counter_ns()
        function(raw)
        latencies.append(time.perf_counter_ns() - t0)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1e6

    print(
        f"{label:38} {len(messages) / elapsed:8.0f} msg/s   "
        f"p50 {pct(0.50):6.2f} ms  p95 {pct(0.95):6.2f} ms  p99 {pct(0.99):6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="parse benchmark")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-stdlib", action="store_true", help="skip the stdlib comparison")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    messages = list(generate(args.n, args.seed))
    size = sum(map(len, messages))
    print(f"{len(messages)} messages, {size / len(messages) / 1024:.1f} KB average, seed {args.seed}")
    for raw in messages[:50]:
        parse_message(raw)  # warm up imports and caches
    run("deskmail parse_message", parse_message, messages)
    if args.no_stdlib:
        return
    run("stdlib policy.default (parse only)", lambda r: email.message_from_bytes(r, policy=policy.default), messages)
    run("stdlib compat32 (parse only)", lambda r: email.message_from_bytes(r, policy=policy.compat32), messages)
    run("stdlib policy.default + get_content", _stdlib_full, messages)


if __name__ == "__main__":
    main()
