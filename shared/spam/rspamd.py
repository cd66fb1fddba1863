"""rspamd's HTTP API: /checkv2 on the scanner, /learnspam and /learnham on the controller.

One small client over http.client, with a kept-alive connection per thread
(the parser checks a batch's mails side by side from a few threads). Every
failure is an RspamdError whose message says what went wrong in words: the
caller decides what that means (the parser marks the mail "not checked", an
administrator's decision records that rspamd was not taught).

    POST /checkv2          the raw mail; headers Rcpt (our mailbox), Queue-Id
    -> {"score": 15.0, "required_score": 15.0, "action": "reject",
        "symbols": {"GTUBE": {"score": 0.0, "options": [...]}, ...}, ...}
    POST /learnspam|/learnham   the raw mail; header Password
    -> 200 {"success": true} | 208 already learned | 401/403 wrong password
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.spam.verdict import SPAM_ACTIONS, Verdict, dmarc_of, top_symbols

MAX_CHECK_BYTES = 10 * 1024 * 1024  # larger mail is not sent (spam is small; rspamd would work hard)


class RspamdError(Exception):
    """rspamd could not give an answer; the message says why, in words."""


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


class Rspamd:
    def __init__(self, url: str, *, controller_url: str | None = None, password: str | None = None,
                 timeout: float = 2.0) -> None:
        self.scanner = Endpoint.parse(url)
        self.controller = Endpoint.parse(controller_url or url)
        self.password = password
        self.timeout = timeout
        self._local = threading.local()

    # -- checking ------------------------------------------------------------

    def check(self, raw: bytes, *, rcpt: str | None = None, queue_id: str | None = None,
              timeout: float | None = None) -> Verdict:
        """rspamd's verdict on `raw`; RspamdError if it gives none in time."""
        if len(raw) > MAX_CHECK_BYTES:
            raise RspamdError(f"mail of {len(raw):,} bytes is over {MAX_CHECK_BYTES:,}: not sent to rspamd")
        headers = {}
        if rcpt:
            headers["Rcpt"] = rcpt
        if queue_id:
            headers["Queue-Id"] = queue_id
        status, body = self._post(self.scanner, "/checkv2", raw, headers, timeout)
        if status != 200:
            raise RspamdError(f"rspamd answered HTTP {status}: {_error_text(body)}")
        try:
            data = json.loads(body)
            score = float(data["score"])
            action = str(data["action"])
            symbols: dict[str, Any] = data.get("symbols") or {}
        except (ValueError, KeyError, TypeError) as exc:
            raise RspamdError(f"rspamd's answer is not a verdict: {exc}") from None
        dmarc, policy, domain = dmarc_of(symbols)
        weights = {name: float((s or {}).get("score") or 0.0) for name, s in symbols.items()}
        return Verdict(state="rspamd", spam=action in SPAM_ACTIONS, score=score, action=action,
                       dmarc=dmarc, dmarc_policy=policy, dmarc_domain=domain,
                       symbols=top_symbols(weights))

    # -- learning ------------------------------------------------------------

    def learn(self, raw: bytes, *, spam: bool) -> tuple[bool, str]:
        """Teach rspamd's Bayes that `raw` is spam (or not): (learned, what rspamd said)."""
        path = "/learnspam" if spam else "/learnham"
        headers = {"Password": self.password} if self.password else {}
        status, body = self._post(self.controller, path, raw, headers, None)
        if status == 200:
            return True, f"learned as {'spam' if spam else 'ham'}"
        if status == 208:  # the same mail was learned before: nothing to do
            return True, _error_text(body) or "already learned"
        if status == 204:  # rspamd declined: too few words for Bayes (its log says which)
            return False, "rspamd did not learn it (HTTP 204: too few words for its Bayes filter)"
        if status in (401, 403):
            raise RspamdError("rspamd's controller refused the password"
                              " (DESKMAIL_RSPAMD_PASSWORD)")
        raise RspamdError(f"rspamd's controller answered HTTP {status}: {_error_text(body)}")

    # -- HTTP ----------------------------------------------------------------

    def _post(self, endpoint: Endpoint, path: str, body: bytes, headers: dict[str, str],
              timeout: float | None) -> tuple[int, bytes]:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            conn, reused = self._connection(endpoint, timeout)
            try:
                conn.timeout = max(0.05, deadline - time.monotonic())
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                conn.request("POST", endpoint.path + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    self._drop(endpoint)
                return response.status, data
            except TimeoutError:
                self._drop(endpoint)
                raise RspamdError(f"rspamd at {endpoint} did not answer within {timeout:g} s") from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop(endpoint)
                # A kept-alive connection the server closed meanwhile: once more, on a new one.
                if reused and attempt == 1 and time.monotonic() < deadline:
                    continue
                raise RspamdError(f"rspamd at {endpoint} is unreachable: {_reason(exc)}") from None
        raise AssertionError("unreachable")

    def _connection(self, endpoint: Endpoint, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        pool: dict[Endpoint, http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = pool.get(endpoint)
        if conn is not None:
            return conn, True
        if endpoint.scheme == "https":
            conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
        pool[endpoint] = conn
        return conn, False

    def _drop(self, endpoint: Endpoint) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(endpoint, None)
        if conn is not None:
            conn.close()


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
