"""Prometheus metrics, defined once for every stage (label `stage`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter("deskmail_messages_handled", "Messages handled successfully", ["stage"])
FAILED = Counter("deskmail_messages_failed", "Handling attempts that raised", ["stage"])
RETRIED = Counter("deskmail_messages_retried", "Messages sent to the delayed retry queue", ["stage"])
DEAD_LETTERED = Counter("deskmail_messages_dead_lettered", "Messages dead-lettered", ["stage"])
HANDLE_SECONDS = Histogram(
    "deskmail_handle_seconds",
    "Time to handle a batch of messages, per message",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("deskmail_queue_depth", "Messages ready in a queue", ["queue"])
MAILBOX_LAST_SUCCESS = Gauge(
    "deskmail_mailbox_last_success_timestamp_seconds", "Last successful poll", ["mailbox"]
)
MAILBOX_ERRORS = Counter("deskmail_mailbox_errors", "Failed polls", ["mailbox"])
FETCHED = Counter("deskmail_mails_fetched", "Mails stored from a mailbox", ["mailbox"])
ARCHIVED = Counter("deskmail_mails_archived", "Mails archived or deleted remotely", ["mailbox"])
SENT = Counter("deskmail_mails_sent", "Outgoing mails accepted by SMTP", ["kind"])
NOT_SENT = Counter(
    "deskmail_mails_not_sent", "Outgoing mails failed, skipped or left unknown", ["kind", "outcome"]
)
