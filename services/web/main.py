"""`deskmail web`: the admin web and API served by uvicorn in a thread, registered for services/runner.py."""

from __future__ import annotations

from services.app import App
from services.stages import register
from services.web.server import WebServer


@register("web")
def build(app: App) -> WebServer:
    return WebServer(app)
