"""Service-layer errors to HTTP answers, the same for every endpoint.

    InvalidSetting  422 {"errors": {field: message}}
    NotFound        404 {"error": message}
    Conflict        409 {"error": message, "errors": {field: message}} (field when known)
    Throttled       429 with Retry-After
    Unavailable     503 {"error": message} (the broker or the database does not answer)

FastAPI's own request validation (a path id that is not a number, a body
that is not a JSON object) answers in the same 422 shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.admin.errors import Conflict, InvalidSetting, Unavailable
from services.admin.users import Throttled

log = logging.getLogger(__name__)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install(app: FastAPI, templates: Jinja2Templates) -> None:
    def answer(request: Request, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(body, status_code=status, headers=headers)
        message = body.get("error") or "; ".join(f"{k}: {v}" for k, v in body.get("errors", {}).items())
        return templates.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                          status_code=status, headers=headers)

    @app.exception_handler(InvalidSetting)
    async def invalid(request: Request, exc: InvalidSetting) -> Response:
        return answer(request, 422, {"errors": exc.errors})

    @app.exception_handler(LookupError)
    async def not_found(request: Request, exc: LookupError) -> Response:
        return answer(request, 404, {"error": str(exc).strip("'\"")})

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> Response:
        body: dict[str, Any] = {"error": str(exc)}
        if exc.field:
            body["errors"] = {exc.field: str(exc)}
        return answer(request, 409, body)

    @app.exception_handler(Throttled)
    async def throttled(request: Request, exc: Throttled) -> Response:
        return answer(request, 429, {"error": str(exc)}, {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> Response:
        errors: dict[str, str] = {}
        for error in exc.errors():
            errors.setdefault(_field(tuple(error.get("loc", ()))), str(error.get("msg", "is invalid")))
        return answer(request, 422, {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return answer(request, exc.status_code, {"error": str(exc.detail)}, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        # Logged with the traceback; the answer names no internals (and no secret).
        log.exception("request failed", extra={"path": request.url.path, "method": request.method})
        return answer(request, 500, {"error": "internal error; the server log has the details"})

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> Response:
        return answer(request, 503, {"error": str(exc)})
