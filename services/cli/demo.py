"""`deskmail demo`: the newcomer's first run, with nothing to set up.

Copies the bundled sample mails into a local Maildir, adds a mailbox for it
(auto-reply on, archive on), runs all four stages in this process until every
mail is a request and every auto-reply is written, then prints what happened.
Without SMTP settings, auto-replies land as .eml files in the outbox folder.
"""

from __future__ import annotations

import shutil
import threading
import time
from importlib import resources
from pathlib import Path

from services import runner
from services.admin import mailboxes, operations
from services.admin import requests as request_admin
from services.app import App
from services.stages import STAGES
from shared.db import transaction

DEMO_ADDRESS = "support@acme.example"


def _prepare_maildir(root: Path, source: Path | None) -> Path:
    maildir = root / "demo" / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    if source is not None:
        files = sorted(p for sub in ("new", "cur") for p in (source / sub).glob("*") if p.is_file())
    else:
        files = sorted(Path(str(p)) for p in resources.files("services.cli").joinpath("samples").iterdir()
                       if p.name.endswith(".eml"))
    for i, path in enumerate(files):
        shutil.copyfile(path, maildir / "new" / f"{int(time.time())}.demo{i:04d}.{path.stem}")
    print(f"copied {len(files)} sample mail(s) into {maildir}")
    return maildir


def _ensure_mailbox(app: App, maildir: Path) -> int:
    with transaction(app.pool) as conn:
        found = mailboxes.find_by_address(conn, DEMO_ADDRESS)
        if found is not None:
            return int(found["id"])
        return mailboxes.save(conn, app.keys, {
            "from_name": "ACME Support", "address": DEMO_ADDRESS, "account_type": "maildir",
            "host": str(maildir), "username": "demo", "security": "none", "archive": True,
            "auto_reply": True, "category_id": "Support", "poll_interval": 1,
        })


def _pending(app: App, mailbox_id: int, maildir: Path) -> int:
    waiting = len(list((maildir / "new").iterdir())) + len(list((maildir / "cur").iterdir()))
    with app.pool.connection() as conn:
        return waiting + operations.unfinished(conn, mailbox_id)


def run_demo(app: App, source: Path | None, timeout: float) -> int:
    started = time.monotonic()
    maildir = _prepare_maildir(app.settings.data_dir, source)
    mailbox_id = _ensure_mailbox(app, maildir)
    runnables = [runner.build(app, name) for name in STAGES]
    threads = [threading.Thread(target=r.run, daemon=True) for r in runnables]
    for t in threads:
        t.start()
    try:
        while _pending(app, mailbox_id, maildir) and time.monotonic() - started < timeout:
            time.sleep(0.2)
    finally:
        for r in runnables:
            r.stop()
        for t in threads:
            t.join(timeout=10)
    left = _pending(app, mailbox_id, maildir)
    with app.pool.connection() as conn:
        rows = request_admin.page(conn, request_admin.parse_filters({"mailbox_id": mailbox_id, "limit": 20}))
        outgoing = operations.outgoing_summary(conn)
    sent, skipped = outgoing["sent"], outgoing["skipped"]
    print(f"\nrequests in {DEMO_ADDRESS} (newest first):")
    for r in rows["items"]:
        print(f"  #{r['id']:<4} {r['entries']} mail  {r['customer'] or '-':24} {r['subject']}")
    outbox = app.settings.outbox_dir or app.settings.data_dir / "outbox"
    print(f"\nauto-replies sent: {sent} (written to {outbox})")
    for s in skipped:
        print(f"  not sent to {s['to_address']}: {s['reason']}")
    archive = maildir / f".{'deskmail_archive'}"
    archived = len(list((archive / "cur").glob("*"))) + len(list((archive / "new").glob("*"))) if archive.exists() else 0
    print(f"archived mails: {archived} (in {archive})")
    print(f"done in {time.monotonic() - started:.1f}s" + (f"; {left} item(s) still pending" if left else ""))
    print("\nnext: `deskmail requests show <id>`, or see README.md to add a real IMAP/POP3 mailbox")
    return 0 if not left else 1
