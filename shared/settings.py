"""Configuration, read once from environment variables.

Every variable is documented in README.md ("Settings"). With neither
`DATABASE_URL` nor `AMQP_URL` set, Deskmail runs embedded: kombu's in-memory
transport and a PostgreSQL kept under `DESKMAIL_DATA_DIR`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"setting {name} must be a whole number, got {raw!r}") from None


def ca_file() -> str | None:
    """DESKMAIL_CA_FILE: the CA bundle mail, SMTP and OAuth2 servers' certificates are checked against.

    None: the system's CAs. The only place the variable is read. A function
    rather than a `Settings` field because TLS contexts are made deep inside
    the connection code (shared/mailserver, shared/oauth2), which is handed a
    mailbox or SMTP setting, not the process's settings; reading it when a
    context is made also lets a test point it at its own CA.
    """
    return os.environ.get("DESKMAIL_CA_FILE") or None


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    amqp_url: str | None = None
    data_dir: Path = Path("var")
    secret_key: str = ""
    queue_prefix: str = "deskmail"
    mail_domain: str = "deskmail.local"
    log_level: str = "INFO"
    http_port: int = 9100
    prefetch: int = 64
    retry_attempts: int = 4  # in-process tenacity attempts for a transient error
    redeliveries: int = 5  # delayed redeliveries through the retry queue before dead-lettering
    retry_delay_ms: int = 30_000  # delay of the retry queue
    outbox_dir: Path | None = None  # embedded mode: auto-replies land here as .eml
    auto_reply_limits: str = "10m:1,1h:5,1d:20"  # per-recipient windows, span:count
    fetch_threads: int = 4  # mailboxes one fetcher process serves at once
    fetch_lease_seconds: int = 60  # a dead fetcher's mailboxes are taken over after this
    web_enabled: bool = True  # `deskmail run` also serves the admin web
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    web_forwarded_ips: str = "127.0.0.1"  # proxies trusted for X-Forwarded-Proto
    rabbitmq_api: str | None = None  # management API, for queue rates
    rspamd_url: str | None = None  # rspamd's scanner (/checkv2); unset: no spam check of our own
    rspamd_controller_url: str | None = None  # where learning goes; unset: rspamd_url
    rspamd_password: str | None = None  # the controller's password, for learning
    rspamd_timeout: float = 2.0  # seconds a batch waits for rspamd's verdicts at most

    @property
    def embedded(self) -> bool:
        return self.amqp_url is None

    @property
    def broker_url(self) -> str:
        return self.amqp_url or "memory://"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        data_dir = Path(env.get("DESKMAIL_DATA_DIR", "var")).absolute()
        outbox = env.get("DESKMAIL_OUTBOX_DIR")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            amqp_url=env.get("AMQP_URL") or None,
            data_dir=data_dir,
            secret_key=env.get("DESKMAIL_SECRET_KEY", ""),
            queue_prefix=env.get("DESKMAIL_QUEUE_PREFIX", "deskmail"),
            mail_domain=env.get("DESKMAIL_MAIL_DOMAIN", "deskmail.local"),
            log_level=env.get("DESKMAIL_LOG_LEVEL", "INFO").upper(),
            http_port=_int("DESKMAIL_HTTP_PORT", 9100),
            prefetch=_int("DESKMAIL_PREFETCH", 64),
            retry_attempts=_int("DESKMAIL_RETRY_ATTEMPTS", 4),
            redeliveries=_int("DESKMAIL_REDELIVERIES", 5),
            retry_delay_ms=_int("DESKMAIL_RETRY_DELAY_MS", 30_000),
            outbox_dir=Path(outbox).absolute() if outbox else None,
            fetch_threads=max(1, _int("DESKMAIL_FETCH_THREADS", 4)),
            fetch_lease_seconds=_int("DESKMAIL_FETCH_LEASE_SECONDS", 60),
            web_enabled=env.get("DESKMAIL_WEB", "1") != "0",
            web_host=env.get("DESKMAIL_WEB_HOST", "127.0.0.1"),
            web_port=_int("DESKMAIL_WEB_PORT", 8000),
            web_forwarded_ips=env.get("DESKMAIL_WEB_FORWARDED_IPS", "127.0.0.1"),
            rabbitmq_api=env.get("DESKMAIL_RABBITMQ_API") or None,
            auto_reply_limits=env.get("DESKMAIL_AUTO_REPLY_LIMITS") or "10m:1,1h:5,1d:20",
            rspamd_url=env.get("DESKMAIL_RSPAMD_URL") or None,
            rspamd_controller_url=env.get("DESKMAIL_RSPAMD_CONTROLLER_URL") or None,
            rspamd_password=env.get("DESKMAIL_RSPAMD_PASSWORD") or None,
            rspamd_timeout=max(1, _int("DESKMAIL_RSPAMD_TIMEOUT_MS", 2000)) / 1000,
        )
