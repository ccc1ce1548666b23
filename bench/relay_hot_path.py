"""CPU cost of the relay's hot path, per packet, in one process.

Measures WebrtcLeg.datagram_received (demux, source check, SRTP unprotect)
-> PlainLeg.send_rtp (rewrite, plain out) and the reverse PlainLeg ->
WebrtcLeg (rewrite, SRTP protect) with real keys from a DTLS handshake,
using process CPU time (not wall time). Writes bench/results/<date>-relay.md.

    .venv/bin/python bench/relay_hot_path.py [--packets N]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import struct
import time
from pathlib import Path

from telebridge.media.dtls import DtlsCertificate, DtlsEndpoint, DtlsState
from telebridge.media.ice import IceLiteAgent
from telebridge.media.legs import OutgoingStream, PlainLeg, WebrtcLeg

BROWSER, PBX = ("127.0.0.1", 50000), ("127.0.0.1", 20000)


def connected_pair() -> tuple[WebrtcLeg, DtlsEndpoint]:
    """A WebRTC leg whose DTLS finished against an in-memory browser endpoint."""
    gateway_cert, browser_cert = DtlsCertificate(), DtlsCertificate()
    ice = IceLiteAgent("gw", "gateway-password-0123456789")
    ice.valid[BROWSER] = 0.0
    ice.selected = BROWSER
    leg = WebrtcLeg(ice, gateway_cert, dtls_client=False, remote_fingerprint=browser_cert.fingerprint, outgoing=OutgoingStream.new(48000))
    browser = DtlsEndpoint(browser_cert, is_client=True, remote_fingerprint=gateway_cert.fingerprint)
    flights = browser.start(0.0)
    for _ in range(10):
        replies = [d for f in flights for d, _ in leg.datagram_received(f, BROWSER, 0.0)]
        flights = [d for r in replies for d in browser.receive(r, 0.0)]
        if leg.dtls.state is DtlsState.CONNECTED and browser.state is DtlsState.CONNECTED:
            return leg, browser
    raise RuntimeError("handshake did not finish")


def cpu_per_packet(run, packets: int) -> float:
    start = time.process_time()
    run(packets)
    return (time.process_time() - start) / packets * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=200_000)
    args = parser.parse_args()
    webrtc, browser = connected_pair()
    plain = PlainLeg(remote=PBX, outgoing=OutgoingStream.new(48000))
    plain.start(0.0)
    sent: list[int] = [0]
    webrtc.on_rtp = lambda packet, now: sent.__setitem__(0, sent[0] + len(plain.send_rtp(packet, now)))
    plain.on_rtp = lambda packet, now: sent.__setitem__(0, sent[0] + len(webrtc.send_rtp(packet, now)))
    payload = bytes(80)  # a typical 20 ms Opus frame
    srtp_in = [browser.srtp.protect(struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960, 1234) + payload) for seq in range(args.packets)]  # type: ignore[union-attr]
    plain_in = [struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960, 5678) + payload for seq in range(args.packets)]

    def browser_to_pbx(n: int) -> None:
        receive = webrtc.datagram_received
        for i in range(n):
            receive(srtp_in[i], BROWSER, i * 0.02)

    def pbx_to_browser(n: int) -> None:
        receive = plain.datagram_received
        for i in range(n):
            receive(plain_in[i], PBX, i * 0.02)

    up = cpu_per_packet(browser_to_pbx, args.packets)
    down = cpu_per_packet(pbx_to_browser, args.packets)
    assert sent[0] == 2 * args.packets, sent
    calls_per_core = 1e6 / ((up + down) * 50)  # 50 packets/s each way per call
    today = datetime.date.today().isoformat()
    report = f"""# Relay hot path, {today}

Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, one process, CPU time.
Packets: {args.packets} each way, 92-byte RTP (80-byte payload), AES_CM/GCM as negotiated ({webrtc.srtp.profile.name if webrtc.srtp else '?'}).

| direction | CPU per packet |
|---|---|
| browser -> SIP (demux, source check, SRTP unprotect, rewrite, send) | {up:.1f} µs |
| SIP -> browser (source check, rewrite, SRTP protect, send) | {down:.1f} µs |
| both, per call-second (50 pps each way) | {(up + down) * 50 / 1000:.2f} ms |
| relayed calls one core could carry at that cost | {calls_per_core:.0f} |

Excludes the socket system calls and the reactor's dispatch: bench/capacity.py
measures the whole gateway under load.
"""
    out = Path(__file__).parent / "results" / f"{today}-relay.md"
    out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
