"""DTLS-SRTP (RFC 5763, RFC 5764) with pyOpenSSL memory BIOs.

Rules of operation:

* No sockets: :meth:`DtlsEndpoint.receive` takes a datagram and returns the
  datagrams to send; :meth:`get_timer` / :meth:`handle_timer` drive the
  handshake retransmissions OpenSSL schedules (RFC 6347 §4.2.4). OpenSSL
  times those with its own clock; the deadline is reported in ours.
* The role comes from ``a=setup`` (RFC 5763 §5): the gateway is passive
  (server) when it answers an offer, and active (client) when the browser
  answers its ``actpass`` offer with ``passive``.
* Any certificate is accepted during the handshake (WebRTC peers are
  self-signed); afterwards its SHA-256 fingerprint must equal the one in
  the peer's SDP (RFC 8122 §5), compared in constant time, or the
  endpoint fails and the leg ends.
* The SRTP keys come from the exporter ``EXTRACTOR-dtls_srtp`` (RFC 5764
  §4.2) for the profile the handshake selected.
* DTLS 1.2 only; an MTU of 1200 keeps handshake flights under every path
  MTU (and OpenSSL needs an MTU set, or the handshake stalls).
"""

from __future__ import annotations

import datetime
import enum
import hmac

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from telebridge.media.srtp import SrtpError, SrtpSession

SRTP_PROFILES = b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80:SRTP_AES128_CM_SHA1_32"
MTU = 1200
# OpenSSL's DTLS1_2_VERSION; pyOpenSSL names only the TLS versions.
DTLS1_2_VERSION = 0xFEFD


class DtlsError(Exception):
    """The handshake failed, or the peer is not who its SDP says."""


class DtlsState(enum.Enum):
    """Handshaking until keys exist; FAILED is final."""

    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    FAILED = "failed"


class DtlsCertificate:
    """The ECDSA P-256 certificate made at start-up (RFC 8827 §6.5) and its fingerprint."""

    def __init__(self, now: datetime.datetime | None = None) -> None:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "telebridge")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.fingerprint = fingerprint_of(self.certificate)

    def context(self) -> SSL.Context:
        """A fresh DTLS context with this certificate (a Context is frozen once used)."""
        context = SSL.Context(SSL.DTLS_METHOD)
        context.set_min_proto_version(DTLS1_2_VERSION)
        context.use_certificate(self.certificate)  # type: ignore[arg-type]
        context.use_privatekey(self.key)  # type: ignore[arg-type]
        context.set_tlsext_use_srtp(SRTP_PROFILES)
        context.set_options(SSL.OP_NO_QUERY_MTU)
        # WebRTC certificates are self-signed: require one, check it by fingerprint later.
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        return context


def fingerprint_of(certificate: x509.Certificate) -> str:
    """``AB:CD:...`` SHA-256 fingerprint as SDP writes it (RFC 8122 §5)."""
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))


class DtlsEndpoint:
    """One DTLS association over a media flow."""

    def __init__(self, certificate: DtlsCertificate, is_client: bool, remote_fingerprint: str | None) -> None:
        self.is_client = is_client
        self.remote_fingerprint = remote_fingerprint
        self.state = DtlsState.HANDSHAKING
        self.srtp: SrtpSession | None = None
        self.error: str | None = None
        self._conn = SSL.Connection(certificate.context(), None)
        self._conn.set_ciphertext_mtu(MTU)
        if is_client:
            self._conn.set_connect_state()
        else:
            self._conn.set_accept_state()
        self._deadline: float | None = None

    def start(self, now: float) -> list[bytes]:
        """The client's first flight (nothing for a server)."""
        return self._step(now) if self.is_client else []

    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Feed a DTLS datagram; returns datagrams to send."""
        if self.state is DtlsState.FAILED:
            return []
        self._conn.bio_write(data)
        return self._step(now)

    def get_timer(self) -> float | None:
        """When OpenSSL wants a handshake retransmission."""
        return self._deadline if self.state is DtlsState.HANDSHAKING else None

    def handle_timer(self, now: float) -> list[bytes]:
        """Retransmit the last flight if its timer ran out."""
        if self.state is not DtlsState.HANDSHAKING:
            return []
        try:
            self._conn.DTLSv1_handle_timeout()
        except SSL.Error as e:
            return self._fail(f"handshake timer: {e}")
        return self._flush(now)

    def set_remote_fingerprint(self, fingerprint: str) -> None:
        """The peer's SDP arrived (an offer's answer may follow the handshake's start)."""
        self.remote_fingerprint = fingerprint
        if self.state is DtlsState.CONNECTED:
            self._verify_peer()

    def _step(self, now: float) -> list[bytes]:
        if self.state is DtlsState.HANDSHAKING:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                out = self._flush(now)  # an alert may be pending
                self._fail(f"handshake failed: {e}")
                return out
            else:
                self._connected()
        else:
            # After the handshake, application data is not used: drain and drop it.
            try:
                self._conn.recv(2048)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            except SSL.Error:
                pass
        return self._flush(now)

    def _flush(self, now: float) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self._conn.bio_read(4096))
            except SSL.WantReadError:
                break
        timeout = self._conn.DTLSv1_get_timeout()
        self._deadline = None if timeout is None else now + timeout
        return out

    def _connected(self) -> None:
        profile = self._conn.get_selected_srtp_profile()
        if not profile:
            self._fail("peer negotiated no SRTP profile")
            return
        try:
            size = {b"SRTP_AEAD_AES_128_GCM": 2 * (16 + 12)}.get(profile, 2 * (16 + 14))
            material = self._conn.export_keying_material(b"EXTRACTOR-dtls_srtp", size)
            self.srtp = SrtpSession.from_dtls(profile, material, we_are_client=self.is_client)
        except (SrtpError, SSL.Error) as e:
            self._fail(f"SRTP keying failed: {e}")
            return
        self.state = DtlsState.CONNECTED
        self._verify_peer()

    def _verify_peer(self) -> None:
        if self.remote_fingerprint is None:
            return  # checked when the SDP arrives
        certificate = self._conn.get_peer_certificate(as_cryptography=True)
        if certificate is None:
            self._fail("peer sent no certificate")
            return
        actual = fingerprint_of(certificate)
        if not hmac.compare_digest(actual.upper(), self.remote_fingerprint.upper()):
            self._fail("peer certificate does not match the SDP fingerprint")

    def _fail(self, reason: str) -> list[bytes]:
        self.state = DtlsState.FAILED
        self.error = reason
        self.srtp = None
        self._deadline = None
        return []
