"""An in-process SMTP server that keeps what it receives: the replier's far end.

``SmtpSink`` runs aiosmtpd in a background thread on 127.0.0.1 and a free
port. It speaks plain SMTP, STARTTLS or implicit TLS with the test
certificate, can demand AUTH, and can be told to refuse the next messages
with a 4xx or 5xx reply so that retry and dead-letter paths can be tested.
``stop()`` makes it unreachable (connections are refused on its port).

    with SmtpSink(tls="starttls", auth=("desk", "pw")) as sink:
        ...  # point the product at sink.host, sink.port
        [mail] = sink.wait_for(1)
        assert mail.tls and mail.login == "desk"
"""

from __future__ import annotations

import email.policy
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support import dovecot
from tests.support.certs import CertPair, ensure_self_signed

TlsMode = Literal["none", "starttls", "ssl"]
Stage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # as received after dot-unstuffing, CRLF line endings
    message: EmailMessage
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    login: str | None  # the user who authenticated, None without AUTH


@dataclass
class _Refusal:
    stage: Stage
    remaining: int
    reply: str


class SmtpSink:
    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        require_starttls: bool = False,
        auth: tuple[str, str] | None = None,
        auth_require_tls: bool = True,
        cert: CertPair | None = None,
    ) -> None:
        """Configure, but do not start, a sink.

        ``auth`` is a (user, password) pair that AUTH PLAIN/LOGIN must present
        before MAIL is accepted. ``auth_require_tls`` only matters with
        STARTTLS: set it to False to allow AUTH before STARTTLS. Without TLS
        AUTH is always allowed in clear text (that is what such a test is
        for), and with implicit TLS the session is encrypted from the start.
        """
        if require_starttls and tls != "starttls":
            raise ValueError("require_starttls needs tls='starttls'")
        self.host = dovecot.HOST
        self.port = 0
        self.tls: TlsMode = tls
        self._require_starttls = require_starttls
        self._auth = auth
        self._auth_require_tls = auth_require_tls and tls == "starttls"
        # Default to Dovecot's certificate so one CA file serves every server.
        self._cert = cert
        self._controller: _Controller | None = None
        self._cond = threading.Condition()
        self._messages: list[ReceivedMail] = []
        self._refusal: _Refusal | None = None
        self.refused = 0  # replies given by fail_next()

    @property
    def ca_file(self) -> Path:
        return self._cert_pair().cert

    @property
    def messages(self) -> list[ReceivedMail]:
        """A snapshot of what has been accepted so far, in arrival order."""
        with self._cond:
            return list(self._messages)

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        # aiosmtpd cannot bind port 0 (it connects to self.port to check it is
        # up), so pick a free port first and retry if another process takes it.
        attempts = 5
        for attempt in range(1, attempts + 1):
            self.port = _free_port(self.host)
            controller = self._make_controller()
            try:
                controller.start()
                break
            except OSError:
                if attempt == attempts:
                    raise
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until ``count`` messages have arrived; return all received."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"SMTP sink got {len(self._messages)} of {count} messages in {timeout} s"
                )
            return list(self._messages)

    def fail_next(
        self,
        count: int,
        code: int = 451,
        text: str = "4.3.0 Try again later",
        stage: Stage = "data",
    ) -> None:
        """Answer ``code text`` to the next ``count`` commands of ``stage``.

        At "mail" or "data" that is one refused message per count; at "rcpt"
        it is one refused recipient per count.
        """
        if not 400 <= code <= 599:
            raise ValueError("fail_next() is for 4xx and 5xx replies")
        with self._cond:
            self._refusal = _Refusal(stage, count, f"{code} {text}")

    def _cert_pair(self) -> CertPair:
        if self._cert is None:
            self._cert = ensure_self_signed(dovecot.TLS_DIR)
        return self._cert

    def _make_controller(self) -> _Controller:
        kwargs: dict[str, Any] = {}
        if self.tls != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            pair = self._cert_pair()
            context.load_cert_chain(pair.cert, pair.key)
            kwargs["ssl_context" if self.tls == "ssl" else "tls_context"] = context
        if self._auth is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self._auth_require_tls,
            )
        return _Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            # Without it aiosmtpd calls socket.getfqdn(), which can stall on DNS.
            server_hostname="localhost",
            require_starttls=self._require_starttls,
            ready_timeout=5.0,
            **kwargs,
        )

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert self._auth is not None
        user, password = self._auth
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            user.encode(),
            password.encode(),
        )
        # handled=False makes aiosmtpd send the 535 itself; with the default
        # (True) the client would wait forever (oauth2-testing.md, gotcha 11).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def _take_refusal(self, stage: Stage) -> str | None:
        with self._cond:
            refusal = self._refusal
            if refusal is None or refusal.stage != stage or refusal.remaining <= 0:
                return None
            refusal.remaining -= 1
            self.refused += 1
            return refusal.reply

    def _record(self, mail: ReceivedMail) -> None:
        with self._cond:
            self._messages.append(mail)
            self._cond.notify_all()


class _Handler:
    """aiosmtpd handler hooks; they run on the sink's event-loop thread."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if (reply := self._sink._take_refusal("mail")) is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if (reply := self._sink._take_refusal("rcpt")) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if (reply := self._sink._take_refusal("data")) is not None:
            return reply
        raw = envelope.original_content or b""
        login = session.auth_data.login.decode() if session.auth_data else None
        transport = server.transport
        self._sink._record(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=raw,
                message=BytesParser(policy=email.policy.default).parsebytes(raw),
                tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
                login=login,
            )
        )
        return "250 2.0.0 Message accepted"


class _Controller(Controller):
    def factory(self) -> SMTP:
        # aiosmtpd warns on every connection when AUTH is allowed without its
        # STARTTLS. Here that is either the point of the test (plain AUTH) or
        # untrue (implicit TLS, which aiosmtpd does not notice).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return super().factory()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
