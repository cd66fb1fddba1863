"""Which stages there are, and how each is built: every stage registers itself here.

A stage's entry module, `services/<name>/main.py`, registers the function
that builds it from the App (as Zulip's queue workers do with
`@assign_queue`):

    @register("parser")
    def build(app: App) -> Runnable:
        return Worker(app.settings, app.topology, ParserHandler(app.pool))

services/runner.py imports the entry module of each stage it is asked to
run, then calls its builder. This module imports no stage, so a stage can
import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from shared.health import Heartbeat

if TYPE_CHECKING:
    from services.app import App

STAGES = ("fetcher", "parser", "ticketer", "replier")  # the pipeline, in the order mail goes through it
RUNNABLE = (*STAGES, "web")  # what `deskmail <name>` and the runner accept


class Runnable(Protocol):
    heartbeat: Heartbeat

    def run(self) -> None: ...

    def stop(self) -> None: ...


Builder = Callable[["App"], Runnable]
_builders: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register the decorated function as the builder of stage `name`."""
    if name not in RUNNABLE:
        raise ValueError(f"unknown stage {name!r}; add it to RUNNABLE in services/stages.py")

    def decorate(builder: Builder) -> Builder:
        if _builders.get(name, builder) is not builder:
            raise ValueError(f"stage {name!r} is registered twice")
        _builders[name] = builder
        return builder

    return decorate


def builder(name: str) -> Builder:
    """The registered builder of `name`; LookupError if its entry module has not registered one."""
    try:
        return _builders[name]
    except KeyError:
        raise LookupError(f"services/{name}/main.py registers no stage {name!r}") from None
