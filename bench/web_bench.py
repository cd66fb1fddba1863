"""Admin web and API latency with 10,000 requests in the database.

    python bench/web_bench.py [--requests 10000] [--rounds 200] [--seed 1]

Fills a scratch database with `--requests` requests made from bench/mailgen.py
mail (one customer per sender, one incoming history entry and the mail's
first 4 KB as its raw message each; a third get an auto-reply row), starts
the web on a loopback port with uvicorn (as `deskmail web` does), and asks
each page and API endpoint `--rounds` times over HTTP. Prints requests/s and
p50/p95/p99 per endpoint; the target is p95 under 100 ms. The status page
and /api/v1/status talk to RabbitMQ (queue depths), so they are measured too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mailgen import generate  # noqa: E402
from services.admin import users  # noqa: E402
from services.app import App  # noqa: E402
from services.web.server import serve_in_thread  # noqa: E402
from shared.db import transaction  # noqa: E402
from tests.support.pipeline import scratch_settings  # noqa: E402

TARGET_P95_MS = 100.0


def fill(app: App, n: int, seed: int) -> tuple[int, int]:
    """n requests over 3 mailboxes and 4 categories; returns (a mailbox id, a request id)."""
    parser = BytesHeaderParser()
    with transaction(app.pool) as conn:
        boxes = [conn.execute(
            "INSERT INTO mailboxes (from_name, address, host, username, account_type, category_id)"
            " VALUES ('Support', %s, 'imap.example.test', 'u', 'imap', NULL) RETURNING id",
            (f"support{i}@example.test",)).fetchone()["id"] for i in range(3)]
        cats = [conn.execute("INSERT INTO categories (name) VALUES (%s) RETURNING id",
                             (f"Category {i}",)).fetchone()["id"] for i in range(4)]
        customers: dict[str, int] = {}
        with conn.cursor() as cur:
            for i, raw in enumerate(generate(n, seed)):
                headers = parser.parsebytes(raw[:8192])
                name, address = parseaddr(str(headers.get("From", "")))
                address = address or f"unknown{i}@example.test"
                if address.lower() not in customers:
                    cur.execute("INSERT INTO customers (address, name) VALUES (%s, %s)"
                                " ON CONFLICT (lower(address)) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                                (address, name))
                    customers[address.lower()] = cur.fetchone()["id"]
                box = boxes[i % 3]
                head = raw[:4096]
                cur.execute("INSERT INTO raw_messages (mailbox_id, data, size, sha256, truncated)"
                            " VALUES (%s, %s, %s, %s, true) RETURNING id", (box, head, len(raw), f"bench{i}"))
                raw_id = cur.fetchone()["id"]
                subject = str(headers.get("Subject", ""))[:200]
                cur.execute("INSERT INTO requests (mailbox_id, category_id, customer_id, subject, unparsed)"
                            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                            (box, cats[i % 4], customers[address.lower()], subject, i % 50 == 0))
                request_id = cur.fetchone()["id"]
                cur.execute("INSERT INTO history (request_id, kind, raw_id, outcome, from_address, from_name,"
                            " subject, body_text) VALUES (%s, 'incoming', %s, 'created', %s, %s, %s, %s)"
                            " RETURNING id", (request_id, raw_id, address, name, subject, "Hello,\n" * 20))
                history_id = cur.fetchone()["id"]
                if i % 3 == 0:
                    cur.execute("INSERT INTO outgoing_mail (request_id, history_id, kind, to_address, state, reason)"
                                " VALUES (%s, %s, 'auto_reply', %s, 'skipped', 'sender is a mailing list')",
                                (request_id, history_id, address))
        conn.execute("ANALYZE")
    return boxes[0], request_id


def measure(client: httpx.Client, path: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: HTTP {answer.status_code}: {answer.text[:300]}")
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--requests", type=int, default=10_000)
    args.add_argument("--rounds", type=int, default=200)
    args.add_argument("--seed", type=int, default=1)
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as work, scratch_settings(Path(work), "deskmail_webbench") as settings:
        app = App(settings)
        started = time.perf_counter()
        mailbox_id, request_id = fill(app, opts.requests, opts.seed)
        print(f"filled {opts.requests} requests in {time.perf_counter() - started:.1f} s")
        with transaction(app.pool) as conn:
            users.create_user(conn, "bench", "bench-password-1")
            token = users.create_token(conn, "bench", "bench")
        app.topology.declare(app.broker())  # the status page reads queue depths
        web, _ = serve_in_thread(app)
        base = f"http://127.0.0.1:{web.bound_port()}"
        endpoints = [
            "/api/v1/requests", f"/api/v1/requests?mailbox_id={mailbox_id}&status=open",
            "/api/v1/requests?unparsed=true", f"/api/v1/requests/{request_id}", "/api/v1/mailboxes",
            f"/api/v1/mailboxes/{mailbox_id}", "/api/v1/categories", "/api/v1/status",
            "/requests", f"/requests?mailbox_id={mailbox_id}&category_id=2", f"/requests/{request_id}",
            "/mailboxes", f"/mailboxes/{mailbox_id}", "/categories", "/",
        ]
        worst = 0.0
        print(f"{'endpoint':58} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api, \
                httpx.Client(base_url=base) as browser:
            page = browser.get("/login")
            csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            browser.post("/login", data={"username": "bench", "password": "bench-password-1", "csrf_token": csrf})
            for path in endpoints:
                client = api if path.startswith("/api/") else browser
                measure(client, path, 5)  # warm up
                times = measure(client, path, opts.rounds)
                p95 = pct(times, 95)
                worst = max(worst, p95)
                print(f"{path:58} {1000 / statistics.mean(times):7.0f} {pct(times, 50):7.1f} {p95:7.1f}"
                      f" {pct(times, 99):7.1f}")
        web.stop()
        app.pool.close()
    verdict = "OK" if worst < TARGET_P95_MS else "OVER TARGET"
    print(f"worst p95: {worst:.1f} ms (target < {TARGET_P95_MS:.0f} ms): {verdict}")
    return 0 if worst < TARGET_P95_MS else 1


if __name__ == "__main__":
    sys.exit(main())
