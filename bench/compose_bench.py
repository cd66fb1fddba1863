"""Time the replier's CPU work per mail: render templates + From name + build_message.

The replier's target is 400 mails/s in total, SMTP included, so this part
should stay well under 1 ms a mail. Run: `PYTHONPATH=. python bench/compose_bench.py [N]`.
Alternates auto-replies and staff replies, with ASCII and non-ASCII customers.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime

from services.replier.compose import build_message
from shared.msgid import make_message_id
from shared.templates import build_context, render, render_from_name, system_template

KEY = b"bench-key-0123456789abcdef0123456"
FROM_NAME = "{{ agent.name if agent else mailbox.name }} at ACME"
CUSTOMERS = [("Ada Lovelace", "ada@example.com"), ("Zoë Ünïcode-Müller", "zoe@example.de")]
BODY = "Hello,\n\nsince this morning the printer only prints blank pages.\n" * 5


def one_mail(i: int, now: datetime) -> bytes:
    staff = i % 2 == 1
    name, address = CUSTOMERS[(i // 2) % 2]
    ctx = build_context(
        request_id=1000 + i,
        request_subject="Printer on the 3rd floor prints blank pages",
        request_status="active",
        customer_name=name,
        customer_address=address,
        mailbox_name="ACME Support",
        mailbox_address="support@acme.example",
        agent_name="Grace Hopper" if staff else None,
        message_subject="Printer on the 3rd floor prints blank pages",
        message_body_text=BODY,
        reply_body_text="We replaced the toner; please try again.\n\nBest regards"
        if staff
        else None,
    )
    rendered = render(system_template("staff_reply" if staff else "auto_reply"), ctx)
    return build_message(
        from_name=render_from_name(FROM_NAME, ctx),
        from_address="support@acme.example",
        to_name=name,
        to_address=address,
        subject=rendered.subject,
        body_text=rendered.body_text,
        body_html=rendered.body_html,
        message_id=make_message_id(1000 + i, i, KEY, "acme.example"),
        in_reply_to=f"<CAF{i}@mail.example.com>",
        references=[f"<root{i}@mail.example.com>", f"<CAF{i}@mail.example.com>"],
        auto_reply=not staff,
        date=now,
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    now = datetime.now(UTC)
    for i in range(200):  # warm the template cache and the interpreter
        one_mail(i, now)
    latencies: list[float] = []
    size = 0
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter_ns()
        size += len(one_mail(i, now))
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    print(f"mails:       {n} ({size / n:.0f} bytes on average)")
    print(f"throughput:  {n / elapsed:,.0f} mails/s (one core)")
    print(
        f"latency µs:  p50 {q[49]:.0f}  p95 {q[94]:.0f}  p99 {q[98]:.0f}  max {max(latencies):.0f}"
    )


if __name__ == "__main__":
    main()
