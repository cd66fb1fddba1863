"""`deskmail ticketer`: the ticketer's handler in a worker, registered for services/runner.py."""

from __future__ import annotations

from services.app import App
from services.stages import register
from services.ticketer.stage import TicketerHandler
from shared.worker import Worker


@register("ticketer")
def build(app: App) -> Worker:
    return Worker(app.settings, app.topology, TicketerHandler(app.pool, app.keys.message_id_key))
