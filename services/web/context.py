"""What every route needs: the database pool, the keys, the broker, the templates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from kombu import Connection

from services.app import App
from services.web.errors import BrokerDown
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

    @property
    def topology(self):  # noqa: ANN201 - shared.topology.Topology
        return self.core.topology

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block succeeds, rolled back when it raises."""
        with transaction(self.core.pool) as conn:
            yield conn

    @contextmanager
    def broker(self) -> Iterator[Connection]:
        with self.core.broker() as conn:
            try:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=5)
            except Exception as exc:  # noqa: BLE001 - kombu raises several kinds for "down"
                raise BrokerDown(f"the message broker does not answer: {exc}") from exc
            yield conn


def ctx(request: Request) -> WebContext:
    return request.app.state.ctx


Ctx = Annotated[WebContext, Depends(ctx)]
