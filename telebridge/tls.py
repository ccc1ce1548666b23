"""Certificates and TLS context factories for SIP/TLS and HTTPS/WSS.

On first start without a configured certificate, a self-signed ECDSA P-256
certificate for localhost, 127.0.0.1 and ::1 is made in the state directory
and reused afterwards. Keys are loaded with ``cryptography`` and handed to
pyOpenSSL as such (its own X509/PKey objects are deprecated).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl as twisted_ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLContextFactory
from zope.interface import implementer

CERT_NAME = "telebridge-cert.pem"
KEY_NAME = "telebridge-key.pem"


class TlsFileError(Exception):
    """A certificate or key file that cannot be used; ``key`` names the config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, object]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as e:
        raise TlsFileError("certificate", f"{str(cert_path)!r} is not a PEM certificate ({e})") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise TlsFileError("private_key", f"{str(key_path)!r} is not an unencrypted PEM key ({e})") from None
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise TlsFileError("private_key", "does not match the certificate")
    return cert, key


def check_certificate_files(cert_path: Path, key_path: Path) -> None:
    """Raise :class:`TlsFileError` unless the pair loads and matches."""
    _load(cert_path, key_path)


def ensure_self_signed(state_dir: Path, now: datetime.datetime | None = None) -> tuple[Path, Path]:
    """The state directory's self-signed pair, created on first use."""
    cert_path, key_path = state_dir / CERT_NAME, state_dir / KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    state_dir.mkdir(parents=True, exist_ok=True)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


@implementer(IOpenSSLContextFactory)
class ServerContextFactory:
    """An ``IOpenSSLContextFactory`` for our listeners (TLS 1.2+).

    Built by hand rather than from ``CertificateOptions`` so that no
    deprecated pyOpenSSL objects are involved, and so that ALPN-offering
    clients (every browser) are served ``http/1.1`` on the HTTPS port.
    """

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        cert, key = _load(cert_path, key_path)
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate(cert)  # type: ignore[arg-type]
        context.use_privatekey(key)  # type: ignore[arg-type]
        context.check_privatekey()
        context.set_alpn_select_callback(_select_http11)
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context


def _select_http11(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    return b"http/1.1" if b"http/1.1" in offered else SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]


def server_context_factory(cert_path: Path, key_path: Path) -> ServerContextFactory:
    """The context factory for SIP/TLS and HTTPS listeners."""
    return ServerContextFactory(cert_path, key_path)


def client_context_factory(hostname: str, verify: bool, ca_file: Path | None) -> IOpenSSLClientConnectionCreator:
    """For outgoing SIP/TLS: verify the server's name with service-identity when asked."""
    if not verify:
        return twisted_ssl.CertificateOptions(verify=False)  # type: ignore[return-value]
    trust = None
    if ca_file is not None:
        trust = twisted_ssl.Certificate.loadPEM(ca_file.read_bytes())
    return twisted_ssl.optionsForClientTLS(hostname, trustRoot=trust)
