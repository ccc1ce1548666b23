"""DTLS-SRTP between two endpoints over an in-memory link (RFC 5763, RFC 5764)."""

from __future__ import annotations

import struct
import time

from telebridge.media.dtls import DtlsCertificate, DtlsEndpoint, DtlsState

RTP = struct.pack("!BBHII", 0x80, 111, 7, 960, 0x1234) + b"opus frame" * 4


def handshake(client: DtlsEndpoint, server: DtlsEndpoint, drop_first: int = 0) -> None:
    """Carry flights both ways until both sides settle; optionally lose the first flights."""
    now = 0.0
    to_server = client.start(now)
    to_client: list[bytes] = []
    dropped = 0
    for _ in range(40):
        if dropped < drop_first and to_server:
            dropped += 1
            to_server = []
        for datagram in to_server:
            to_client += server.receive(datagram, now)
        to_server = []
        for datagram in to_client:
            to_server += client.receive(datagram, now)
        to_client = []
        if client.state is not DtlsState.HANDSHAKING and server.state is not DtlsState.HANDSHAKING:
            return
        if not to_server:
            # Nothing in flight: let the retransmission timer fire. OpenSSL
            # keeps its own clock for DTLS timers, so real time must pass too.
            deadline = client.get_timer()
            if deadline is not None:
                time.sleep(max(0.0, deadline - now) + 0.05)
                now = max(now, deadline)
                to_server = client.handle_timer(now)
    raise AssertionError("handshake did not settle")


def test_handshake_agrees_on_srtp_keys_and_checks_fingerprints() -> None:
    """RFC 5764 §4.2: both sides export the same keys; each side's SRTP is the other's."""
    gw, browser = DtlsCertificate(), DtlsCertificate()
    client = DtlsEndpoint(browser, is_client=True, remote_fingerprint=gw.fingerprint)
    server = DtlsEndpoint(gw, is_client=False, remote_fingerprint=browser.fingerprint)
    handshake(client, server)
    assert client.state is DtlsState.CONNECTED and server.state is DtlsState.CONNECTED, (client.error, server.error)
    assert client.srtp is not None and server.srtp is not None
    assert server.srtp.unprotect(client.srtp.protect(RTP)) == RTP
    assert client.srtp.unprotect(server.srtp.protect(RTP)) == RTP
    assert client.srtp.profile.name == "AEAD_AES_128_GCM"  # our first preference


def test_fingerprint_mismatch_fails_the_leg() -> None:
    """RFC 5763 §5: a certificate that is not the one in the SDP ends the association."""
    gw, browser, impostor = DtlsCertificate(), DtlsCertificate(), DtlsCertificate()
    client = DtlsEndpoint(impostor, is_client=True, remote_fingerprint=gw.fingerprint)
    server = DtlsEndpoint(gw, is_client=False, remote_fingerprint=browser.fingerprint)
    handshake(client, server)
    assert server.state is DtlsState.FAILED and server.srtp is None
    assert "fingerprint" in (server.error or "")


def test_fingerprint_arriving_after_the_handshake_is_still_checked() -> None:
    """The answer SDP may come after the handshake; the check happens then."""
    gw, browser, impostor = DtlsCertificate(), DtlsCertificate(), DtlsCertificate()
    client = DtlsEndpoint(browser, is_client=True, remote_fingerprint=None)
    server = DtlsEndpoint(gw, is_client=False, remote_fingerprint=None)
    handshake(client, server)
    assert server.state is DtlsState.CONNECTED
    server.set_remote_fingerprint(impostor.fingerprint)
    assert server.state is DtlsState.FAILED


def test_lost_flight_is_retransmitted_on_the_timer() -> None:
    """RFC 6347 §4.2.4: a lost ClientHello is sent again when the timer fires."""
    gw, browser = DtlsCertificate(), DtlsCertificate()
    client = DtlsEndpoint(browser, is_client=True, remote_fingerprint=gw.fingerprint)
    server = DtlsEndpoint(gw, is_client=False, remote_fingerprint=browser.fingerprint)
    handshake(client, server, drop_first=1)
    assert client.state is DtlsState.CONNECTED and server.state is DtlsState.CONNECTED


def test_garbage_fails_without_raising() -> None:
    """Bad input never raises: the endpoint fails (or ignores it) and says why."""
    server = DtlsEndpoint(DtlsCertificate(), is_client=False, remote_fingerprint=None)
    out = server.receive(b"\x16\xfe\xfd" + b"\xff" * 60, 0.0)
    assert isinstance(out, list)
    assert server.state in (DtlsState.HANDSHAKING, DtlsState.FAILED)
