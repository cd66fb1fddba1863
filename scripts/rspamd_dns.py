#!/usr/bin/env python3
"""A loopback name server for the tests' rspamd (scripts/rspamd.sh): every name is unknown.

rspamd asks DNS for much of what it checks (SPF, DKIM keys, DMARC policies,
block lists, the domains of URLs). The test machine has no network, and an
unanswered query costs rspamd its whole DNS timeout on every mail, which
would make the tests slow and the benchmark's per-mail figure wrong. This
server answers every query at once with NXDOMAIN, as the real DNS answers
for the test domains; the names the tests need (a DMARC policy, say) are
answered by rspamd itself from `fake_records` in its configuration.

Standard library only (it runs with the system's python3, before any
virtualenv exists). Usage: rspamd_dns.py PORT PIDFILE
"""

from __future__ import annotations

import os
import socket
import struct
import sys

HOST = "127.0.0.1"
NXDOMAIN = 3


def answer(query: bytes) -> bytes | None:
    """The NXDOMAIN reply to `query` (its question echoed), or None for garbage."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:  # a response, or not one question: ignore
        return None
    end = 12
    while end < len(query) and query[end] != 0:  # the question's name, label by label
        end += 1 + query[end]
    end += 5  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    reply_flags = 0x8000 | (flags & 0x0100) | 0x0080 | NXDOMAIN  # QR, RD copied, RA, rcode
    return struct.pack("!HHHHHH", ident, reply_flags, 1, 0, 0, 0) + query[12:end]


def main() -> None:
    port, pidfile = int(sys.argv[1]), sys.argv[2]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, port))
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    while True:
        query, peer = sock.recvfrom(4096)
        reply = answer(query)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
