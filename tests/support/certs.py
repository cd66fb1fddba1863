"""A self-signed TLS certificate for the local test servers.

The certificate is for ``localhost`` and ``127.0.0.1`` and is its own CA, so a
client trusts it with ``ssl.create_default_context(cafile=cert)`` and keeps
hostname checking on. ``scripts/dovecot.sh`` writes the same two files with
openssl into the same place; whichever runs first creates them, the other
reuses them, so Dovecot and the SMTP sink present one certificate.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def ensure_self_signed(directory: Path) -> CertPair:
    """Return the pair in ``directory``, creating it first if it is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(directory / CERT_NAME, directory / KEY_NAME)
    # Same lock file as scripts/dovecot.sh, so two creators never mix halves.
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (_non_empty(pair.cert) and _non_empty(pair.key)):
            key_pem, cert_pem = _generate()
            _write_atomic(pair.key, key_pem, mode=0o600)
            _write_atomic(pair.cert, cert_pem, mode=0o644)
    return pair


def _generate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a little so a clock that lags by a minute still accepts it.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _non_empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # a leftover .tmp keeps its old mode otherwise
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
