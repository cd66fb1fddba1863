"""`deskmail replier`: the replier's worker and its staff-reply sweeper, registered for services/runner.py."""

from __future__ import annotations

from services.app import App
from services.replier.outbox import ReplierStage
from services.stages import register


@register("replier")
def build(app: App) -> ReplierStage:
    return ReplierStage(app.settings, app.pool, app.keys, app.topology)
