"""The broker topology: every exchange and queue Deskmail uses, declared here only.

Per consuming stage (parse, ticket, reply) there are three queues:

    <prefix>.<stage>         quorum; what the stage consumes
    <prefix>.<stage>.retry   quorum; a message waits here `retry_delay_ms`, then
                             dead-letters back to <prefix>.<stage> (delayed redelivery)
    <prefix>.<stage>.dead    quorum; for a person: `deskmail dead-letters` lists and replays it

Messages reach the stage queue through the direct exchange <prefix>, the retry
queue through <prefix>.retry and the dead queue through <prefix>.dlx, each with
the stage name as routing key. The stage queue's own dead-lettering (a
`reject(requeue=False)`, or more deliveries than `x-delivery-limit` because a
message keeps killing its worker) also lands in .dead, so nothing is dropped.

Declaring is idempotent: every stage declares the whole topology when it starts.
kombu's memory transport ignores the queue arguments, which is why the worker
republishes retries itself in embedded mode (see shared/worker.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from kombu import Connection, Exchange, Queue

STAGES = ("parse", "ticket", "reply")

# A message that crashes its worker process (OOM, segfault) is redelivered by
# the broker without our code seeing an error; this bounds that loop.
DELIVERY_LIMIT = 10
# The dead-letter queues have no consumer: only `deskmail dead-letters` reads them.
DEAD_DELIVERY_LIMIT = 1_000_000_000


@dataclass(frozen=True)
class Topology:
    prefix: str = "deskmail"
    retry_delay_ms: int = 30_000

    @property
    def exchange(self) -> Exchange:
        return Exchange(self.prefix, "direct", durable=True)

    @property
    def retry_exchange(self) -> Exchange:
        return Exchange(f"{self.prefix}.retry", "direct", durable=True)

    @property
    def dead_exchange(self) -> Exchange:
        return Exchange(f"{self.prefix}.dlx", "direct", durable=True)

    def queue_name(self, stage: str) -> str:
        return f"{self.prefix}.{stage}"

    def queue(self, stage: str) -> Queue:
        return Queue(
            self.queue_name(stage),
            self.exchange,
            routing_key=stage,
            durable=True,
            queue_arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": self.dead_exchange.name,
                "x-dead-letter-routing-key": stage,
                "x-delivery-limit": DELIVERY_LIMIT,
            },
        )

    def retry_queue(self, stage: str) -> Queue:
        return Queue(
            f"{self.queue_name(stage)}.retry",
            self.retry_exchange,
            routing_key=stage,
            durable=True,
            queue_arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": self.retry_delay_ms,
                "x-dead-letter-exchange": self.exchange.name,
                "x-dead-letter-routing-key": stage,
            },
        )

    def dead_queue(self, stage: str) -> Queue:
        return Queue(
            f"{self.queue_name(stage)}.dead",
            self.dead_exchange,
            routing_key=stage,
            durable=True,
            # Operators read dead letters with basic.get and hand them back by
            # closing the channel; quorum queues count every such return as a
            # delivery, and RabbitMQ 4.x drops a message past its default
            # limit of 20. A dead letter must survive any number of looks.
            queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": DEAD_DELIVERY_LIMIT},
        )

    def all_queues(self) -> list[Queue]:
        return [q for s in STAGES for q in (self.queue(s), self.retry_queue(s), self.dead_queue(s))]

    def declare(self, connection: Connection) -> None:
        channel = connection.channel()
        try:
            for queue in self.all_queues():
                queue.bind(channel).declare()
        finally:
            channel.close()
