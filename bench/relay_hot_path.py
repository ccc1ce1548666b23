"""CPU cost of the relay's hot path, per packet, in one process.

Measures WebrtcLeg.datagram_received (demux, source check, SRTP unprotect)
-> PlainLeg.send_rtp (rewrite, plain out) and the reverse PlainLeg ->
WebrtcLeg (rewrite, SRTP protect) with real keys from a DTLS handshake,
using process CPU time (not wall time). Writes bench/results/<date>-relay.md.

    .venv/bin/python bench/relay_hot_path.py [--packets N] [--calls 1,200]
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


class Call:
    """One relayed call's two legs, with its packets each way made in advance."""

    def __init__(self, packets: int) -> None:
        self.webrtc, browser = connected_pair()
        self.plain = PlainLeg(remote=PBX, outgoing=OutgoingStream.new(48000))
        self.plain.start(0.0)
        self.sent = 0
        self.webrtc.on_rtp = lambda packet, now: self._count(self.plain.send_rtp(packet, now))
        self.plain.on_rtp = lambda packet, now: self._count(self.webrtc.send_rtp(packet, now))
        payload = bytes(80)  # a typical 20 ms Opus frame
        self.srtp_in = [
            browser.srtp.protect(struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960, 1234) + payload)  # type: ignore[union-attr]
            for seq in range(packets)
        ]
        self.plain_in = [struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960, 5678) + payload for seq in range(packets)]

    def _count(self, datagrams: list[object]) -> None:
        self.sent += len(datagrams)


def measure(calls: int, packets: int) -> tuple[float, float, str]:
    """CPU µs per packet each way, ``packets`` in all spread over ``calls`` calls in turn
    (as a loaded relay sees them: each packet another call's objects)."""
    per_call = packets // calls
    table = [Call(per_call) for _ in range(calls)]
    order = [(call, k) for k in range(per_call) for call in table]

    def browser_to_pbx(n: int) -> None:
        for call, k in order:
            call.webrtc.datagram_received(call.srtp_in[k], BROWSER, k * 0.02)

    def pbx_to_browser(n: int) -> None:
        for call, k in order:
            call.plain.datagram_received(call.plain_in[k], PBX, k * 0.02)

    up = cpu_per_packet(browser_to_pbx, len(order))
    down = cpu_per_packet(pbx_to_browser, len(order))
    assert all(call.sent == 2 * per_call for call in table), [call.sent for call in table]
    srtp = table[0].webrtc.srtp
    return up, down, srtp.profile.name if srtp else "?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--calls", default="1,200", help="calls the packets are spread over, comma-separated")
    args = parser.parse_args()
    rows = []
    profile = "?"
    for calls in [int(c) for c in args.calls.split(",")]:
        up, down, profile = measure(calls, args.packets)
        calls_per_core = 1e6 / ((up + down) * 50)  # 50 packets/s each way per call
        rows.append(f"| {calls} | {up:.1f} µs | {down:.1f} µs | {(up + down) * 50 / 1000:.2f} ms | {calls_per_core:.0f} |")
    today = datetime.date.today().isoformat()
    table = "\n".join(rows)
    report = f"""# Relay hot path, {today}

Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, one process, CPU time.
Packets: {args.packets} each way, 92-byte RTP (80-byte payload), {profile}, spread over N calls in
turn (each packet is the next call's, as under load).

| N calls | browser -> SIP (demux, source check, SRTP unprotect, rewrite) | SIP -> browser (source check, rewrite, SRTP protect) | both, per call-second (50 pps each way) | calls one core could carry at that cost |
|---|---|---|---|---|
{table}

Excludes the socket system calls and the reactor's dispatch: bench/relay.py
measures the whole gateway under load, bench/udp_floor.py what forwarding alone costs.
"""
    out = Path(__file__).parent / "results" / f"{today}-relay.md"
    out.write_text(report)
    print(report)

if __name__ == "__main__":
    main()
