"""What every route needs: the App (database pool, keys, broker, settings), a transaction, the templates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from services.app import App
from shared.db import transaction

HERE = Path(__file__).parent


@dataclass
class WebContext:
    core: App
    templates: Jinja2Templates

    @property
    def pool(self):  # noqa: ANN201 - psycopg_pool.ConnectionPool
        return self.core.pool

    @property
    def keys(self):  # noqa: ANN201 - shared.crypto.Keys
        return self.core.keys

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block succeeds, rolled back when it raises."""
        with transaction(self.core.pool) as conn:
            yield conn


def ctx(request: Request) -> WebContext:
    return request.app.state.ctx


Ctx = Annotated[WebContext, Depends(ctx)]
