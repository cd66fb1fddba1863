"""Run a stage's worker until its queue is empty, then return: no sleeping and hoping.

As Mailman's `make_testable_runner`: the worker runs its real loop in the
test's thread and stops once a receive brings nothing and the broker says
its queue (and, on RabbitMQ, its delayed retry queue) holds no message. A
message waiting in the retry queue keeps it running until it has come back
and been handled, so a test sees the end of the retries, not a snapshot.

    taken = run_until_empty(worker)          # how many messages it took
    run_pipeline_until_empty(parser, ticketer)   # each in turn, until a round takes nothing
"""

from __future__ import annotations

import threading
import time

from kombu import Connection

from shared.worker import Worker

IDLE_WAIT = 0.2  # a receive this long with nothing delivered, then the broker is asked


def _queues(worker: Worker) -> list[str]:
    name = worker.topology.queue_name(worker.stage)
    # memory:// has no retry queue: a retry goes back onto the stage's own queue.
    return [name] if worker.settings.embedded else [name, f"{name}.retry"]


def _waiting(conn: Connection, queues: list[str]) -> int:
    """Messages ready in `queues`, as the broker counts them (a passive declare)."""
    channel = conn.default_channel
    return sum(channel.queue_declare(queue=q, passive=True).message_count for q in queues)


def run_until_empty(worker: Worker, timeout: float = 60.0) -> int:
    """Run `worker` in this thread until its queue is empty; return how many messages it took.

    AssertionError if the queue is still not empty after `timeout` seconds
    (a message that fails forever, a handler that hangs).
    """
    taken = 0
    queues = _queues(worker)
    receive, process = worker._receive, worker._process

    def receive_until_empty(conn: Connection) -> None:
        receive(conn)
        # Nothing arrived for IDLE_WAIT and the worker holds nothing: everything
        # delivered to it is acked, so the queue's ready count is the whole story.
        if not worker._batch and _waiting(conn, queues) == 0:
            worker.stop()

    def counting(messages: list) -> None:
        nonlocal taken
        taken += len(messages)
        process(messages)

    worker.receive_wait = IDLE_WAIT
    worker._receive = receive_until_empty  # type: ignore[method-assign]
    worker._process = counting  # type: ignore[method-assign]
    worker.stopping.clear()
    timed_out = threading.Event()

    def give_up() -> None:
        timed_out.set()
        worker.stop()

    timer = threading.Timer(timeout, give_up)
    timer.start()
    try:
        worker.run()
    finally:
        timer.cancel()
        del worker._receive, worker._process  # the class's own again
    if timed_out.is_set():
        raise AssertionError(f"the {worker.stage} queue was not empty after {timeout:.0f} s ({taken} taken)")
    return taken


def run_pipeline_until_empty(*workers: Worker, timeout: float = 120.0) -> list[int]:
    """Run each worker until its queue is empty, in order, and again until a round takes nothing.

    Returns how many messages each took in all.
    """
    totals = [0] * len(workers)
    deadline = time.monotonic() + timeout
    while True:
        taken = [run_until_empty(w, timeout=max(1.0, deadline - time.monotonic())) for w in workers]
        totals = [a + b for a, b in zip(totals, taken, strict=True)]
        if not any(taken):
            return totals
