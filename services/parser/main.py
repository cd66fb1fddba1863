"""`deskmail parser`: the parser's handler in a worker, registered for services/runner.py."""

from __future__ import annotations

from services.app import App
from services.parser.stage import ParserHandler
from services.stages import register
from shared.worker import Worker


@register("parser")
def build(app: App) -> Worker:
    return Worker(app.settings, app.topology, ParserHandler(app.pool, app.settings))
