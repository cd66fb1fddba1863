"""Helpers for the spam, sender-list and rule tests.

Mail goes through the stages' handlers with replier_helpers.ingest (its
`settings` turn rspamd on or off). Rules and list entries are written after
shared/filters' checks (clean), as the admin layer does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from psycopg.types.json import Jsonb

from services.app import App
from shared.db import transaction
from shared.filters import rules as rules_mod
from shared.filters import senders
from shared.settings import Settings
from tests.support.rspamd import RspamdServer


def with_rspamd(settings: Settings, server: RspamdServer | None, **extra: Any) -> Settings:
    """`settings` with DESKMAIL_RSPAMD_* pointing at `server` (None: rspamd off)."""
    if server is None:
        return replace(settings, rspamd_url=None, **extra)
    return replace(settings, rspamd_url=server.url, rspamd_controller_url=server.controller_url,
                   rspamd_password=server.password, **extra)


def add_rule(app: App, mailbox_id: int | None, position: int, **values: Any) -> int:
    rule = rules_mod.clean(values)
    with transaction(app.pool) as conn:
        return conn.execute(
            "INSERT INTO mail_rules (mailbox_id, position, name, enabled, match, conditions, actions)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (mailbox_id, position, rule["name"], rule["enabled"], rule["match"],
             Jsonb(rule["conditions"]), Jsonb(rule["actions"]))).fetchone()["id"]


def add_sender(app: App, mailbox_id: int | None, listed: str, kind: str, value: str) -> int:
    entry = senders.clean({"list": listed, "kind": kind, "value": value})
    with transaction(app.pool) as conn:
        return conn.execute(
            "INSERT INTO sender_list (mailbox_id, list, kind, value) VALUES (%s, %s, %s, %s) RETURNING id",
            (mailbox_id, entry["list"], entry["kind"], entry["value"])).fetchone()["id"]


def one(app: App, sql: str, *args: Any) -> Any:
    with app.pool.connection() as conn:
        return conn.execute(sql, args).fetchone()


def rows(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    with app.pool.connection() as conn:
        return conn.execute(sql, args).fetchall()


def request_of(app: App, raw_id: int) -> dict[str, Any] | None:
    return one(app, "SELECT r.*, c.name AS category FROM history h JOIN requests r ON r.id = h.request_id"
                    " LEFT JOIN categories c ON c.id = r.category_id WHERE h.raw_id = %s", raw_id)


def notes(app: App, request_id: int) -> list[str]:
    return [r["body_text"] for r in rows(app, "SELECT body_text FROM history WHERE request_id = %s"
                                              " AND kind = 'note' ORDER BY id", request_id)]
