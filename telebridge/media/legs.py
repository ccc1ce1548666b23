"""The two kinds of media leg and the bridge between them, sans-I/O.

A leg turns datagrams from its socket into plain RTP/RTCP for the other
leg, and RTP/RTCP from the other leg into datagrams for its peer. Time is
passed in; what to send comes back as (bytes, address) pairs.

Rules of operation (the hot path, DESIGN.md):

* WebRTC leg: demultiplex by first byte (RFC 7983). STUN goes to the
  ICE-lite agent, DTLS to the DTLS endpoint, SRTP/SRTCP is unprotected
  only when it comes from an address that passed an ICE check. Media goes
  out to the selected pair only, rewritten to one SSRC and continuous
  numbers, then protected.
* Plain leg: RTP on its port, RTCP on port+1 (or muxed). Strict source:
  the address from the SDP, or, when the SDP address is not where the
  packets come from (NAT), the first source seen inside the latching
  window; anything else is dropped and counted (RTP Bleed, CVE-2017-14099).
* Every drop is counted in the leg's own integer fields, never logged per
  packet.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from telebridge.media.dtls import DtlsCertificate, DtlsEndpoint, DtlsState
from telebridge.media.dtmf_events import EventTrack
from telebridge.media.ice import ConsentLost, IceLiteAgent, IceState, PairSelected, SendTo
from telebridge.media.rtcp import QualityFigures, ReceiveStats, RtcpError, build_report, parse_compound
from telebridge.media.rtp import DTLS, RTCP, RTP, RTP_HEADER, STUN, StreamRewriter, classify
from telebridge.media.srtp import SrtpError, SrtpSession

if TYPE_CHECKING:
    from telebridge.media.video import VideoPath

Address = tuple[str, int]
Datagrams = list[tuple[bytes, Address]]
RTCP_INTERVAL = 5.0  # RFC 3550 §6.2's minimum for a two-party session
# Enum members as module names for the per-packet code (see telebridge.media.rtp).
_CONNECTED = DtlsState.CONNECTED


@dataclass
class LegStats:
    """Counters a leg keeps for /metrics and for tests."""

    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    dropped_source: int = 0
    dropped_srtp: int = 0
    dropped_junk: int = 0
    dropped_not_ready: int = 0


class RtcpTermination:
    """What both legs do with RTCP: count what arrives, read what the peer reports, report ourselves."""

    def __init__(self, clock_rate: int) -> None:
        self.receive_stats = ReceiveStats(clock_rate)
        self.quality = QualityFigures()
        self.octets_out = 0
        self.next_report: float | None = None

    def media_in(self, packet: bytearray | bytes, now: float) -> None:
        _, _, seq, timestamp, ssrc = RTP_HEADER.unpack_from(packet)
        self.receive_stats.update(seq, timestamp, ssrc, now)

    def reports_in(self, data: bytes, our_ssrc: int, now: float) -> bool:
        try:
            reports = parse_compound(data)
        except RtcpError:
            return False
        for report in reports:
            if report.ntp_middle is not None and report.ssrc == self.receive_stats.ssrc:
                self.receive_stats.sender_report_received(report.ntp_middle, now)
            self.quality.absorb(report, our_ssrc, now)
        return True

    def report_due(self, outgoing: OutgoingStream, packets_out: int, now: float) -> bytes | None:
        """Our SR + RR if the interval has passed."""
        if self.next_report is None or now < self.next_report:
            return None
        self.next_report = now + RTCP_INTERVAL
        block = self.receive_stats.report_block(now) if self.receive_stats.ssrc is not None else None
        rewriter = outgoing.rewriter
        return build_report(rewriter.ssrc, now, rewriter.last_timestamp, packets_out, self.octets_out, block)


@dataclass
class OutgoingStream:
    """How this leg numbers what it sends: one SSRC, a payload-type map."""

    rewriter: StreamRewriter
    payload_types: dict[int, int] = field(default_factory=dict)  # other leg's PT -> ours

    @classmethod
    def new(cls, clock_rate: int, payload_types: dict[int, int] | None = None) -> OutgoingStream:
        return cls(
            StreamRewriter(
                ssrc=secrets.randbits(32),
                clock_rate=clock_rate,
                initial_seq=secrets.randbits(16),
                initial_ts=secrets.randbits(32),
            ),
            payload_types or {},
        )

    def rewrite(self, packet: bytearray, now: float) -> None:
        pt = packet[1] & 0x7F
        self.rewriter.rewrite(packet, self.payload_types.get(pt, pt), now)


class WebrtcLeg:
    """The browser side: ICE-lite, DTLS-SRTP, SRTP, rtcp-mux and BUNDLE on one port."""

    def __init__(
        self,
        ice: IceLiteAgent,
        certificate: DtlsCertificate,
        dtls_client: bool,
        remote_fingerprint: str | None,
        outgoing: OutgoingStream,
        media_timeout: float = 30.0,
    ) -> None:
        self.ice = ice
        self.dtls = DtlsEndpoint(certificate, is_client=dtls_client, remote_fingerprint=remote_fingerprint)
        self.outgoing = outgoing
        self.media_timeout = media_timeout
        self.stats = LegStats()
        self.rtcp = RtcpTermination(outgoing.rewriter.clock_rate)
        self.ended: str | None = None
        self.last_media: float | None = None
        #: RFC 4733 events we generate (digits detected in-band on the SIP side).
        self.events = EventTrack()
        #: The BUNDLE's video stream, when one is relayed.
        self.video: VideoPath | None = None
        self.on_rtp: Callable[[bytearray, float], None] = lambda packet, now: None
        #: Every RTCP compound the peer sent, once read (keyframe requests for video).
        self.on_rtcp: Callable[[bytes], None] = lambda report: None

    def add_video(self, video: VideoPath, now: float) -> None:
        """Relay the BUNDLE's video too: its payload types go to ``video``, not the audio path."""
        self.video = video
        video.rtcp.next_report = now + RTCP_INTERVAL

    @property
    def srtp(self) -> SrtpSession | None:
        """Keys from a finished handshake whose certificate matched the SDP (none before the SDP arrives)."""
        dtls = self.dtls
        if dtls.state is not _CONNECTED or dtls.remote_fingerprint is None:
            return None
        return dtls.srtp

    def start(self, now: float) -> Datagrams:
        """An active (client) DTLS role sends first, once ICE has a pair."""
        self.last_media = now
        self.rtcp.next_report = now + RTCP_INTERVAL
        return []

    def expect_media(self, now: float | None) -> None:
        """Start (``now``) or suspend (``None``) the media timeout: a ringing call has no media yet."""
        self.last_media = now

    def datagram_received(self, data: bytes, source: Address, now: float) -> Datagrams:
        """One datagram from the socket."""
        kind = classify(data)
        if kind is STUN:
            out: Datagrams = []
            for event in self.ice.receive(data, source, now):
                if isinstance(event, SendTo):
                    out.append((event.data, event.address))
                elif isinstance(event, PairSelected) and self.dtls.is_client and self.dtls.state is DtlsState.HANDSHAKING:
                    out += [(d, event.address) for d in self.dtls.start(now)]
            return out
        if not self.ice.accepts_media_from(source):
            self.stats.dropped_source += 1
            return []
        if kind is DTLS:
            out = [(d, source) for d in self.dtls.receive(data, now)]
            if self.dtls.state is DtlsState.FAILED:
                self.ended = f"DTLS: {self.dtls.error}"
            return out
        srtp = self.srtp
        if (kind is RTP or kind is RTCP) and srtp is None:
            self.stats.dropped_not_ready += 1
            return []
        if kind is RTP:
            try:
                packet = bytearray(srtp.unprotect(data))  # type: ignore[union-attr]
            except SrtpError:
                self.stats.dropped_srtp += 1
                return []
            stats = self.stats
            stats.packets_in += 1
            stats.bytes_in += len(data)
            self.last_media = now
            video = self.video
            if video is not None and packet[1] & 0x7F in video.payload_types:
                video.media_in(packet, now)
                return []
            self.rtcp.media_in(packet, now)
            self.on_rtp(packet, now)
        elif kind is RTCP:
            try:
                report = srtp.unprotect_rtcp(data)  # type: ignore[union-attr]
            except SrtpError:
                self.stats.dropped_srtp += 1
                return []
            if not self.rtcp.reports_in(report, self.outgoing.rewriter.ssrc, now):
                self.stats.dropped_junk += 1
                return []
            if self.video is not None:
                self.video.rtcp.reports_in(report, self.video.outgoing.rewriter.ssrc, now)
            if self.last_media is not None:
                self.last_media = now  # valid RTCP says the peer is alive (RFC 3550 §6)
            self.on_rtcp(report)
        else:
            self.stats.dropped_junk += 1
        return []

    def send_rtp(self, packet: bytearray, now: float) -> Datagrams:
        """RTP from the other leg, toward the browser's selected pair (held back while we play DTMF events)."""
        if self.events.active:
            return []
        out = self._protected(packet, self.outgoing, self.rtcp, now)
        if out:
            self.stats.packets_out += 1
        return out

    def send_video_rtp(self, packet: bytearray, now: float) -> Datagrams:
        """Video RTP from the SIP side's video leg, numbered as our video stream."""
        video = self.video
        if video is None:
            return []
        out = self._protected(packet, video.outgoing, video.rtcp, now)
        if out:
            video.packets_out += 1
        return out

    def _protected(self, packet: bytearray, outgoing: OutgoingStream, rtcp: RtcpTermination, now: float) -> Datagrams:
        srtp, target = self.srtp, self.ice.selected
        if srtp is None or target is None:
            return []
        outgoing.rewrite(packet, now)
        try:
            protected = srtp.protect(packet)
        except SrtpError:
            return []
        rtcp.octets_out += len(packet) - 12
        return [(protected, target)]

    def send_rtcp(self, report: bytes) -> Datagrams:
        """An RTCP packet of ours (a keyframe request) toward the browser."""
        srtp, target = self.srtp, self.ice.selected
        if srtp is None or target is None:
            return []
        try:
            return [(srtp.protect_rtcp(report), target)]
        except SrtpError:
            return []

    def send_dtmf(self, digit: str, duration_ms: int, payload_type: int, clock_rate: int, now: float) -> bool:
        """Queue one digit as RFC 4733 events toward the browser (the caller re-arms the timer)."""
        return self.events.add(digit, duration_ms, payload_type, clock_rate, now)

    def get_timer(self) -> float | None:
        """The earliest of consent, DTLS retransmission, DTMF events and media timeout."""
        video_report = self.video.rtcp.next_report if self.video is not None else None
        times = [
            t
            for t in (self.ice.get_timer(), self.dtls.get_timer(), self.rtcp.next_report, video_report, self.events.next_time())
            if t is not None
        ]
        if self.last_media is not None:
            times.append(self.last_media + self.media_timeout)
        return min(times) if times else None

    def handle_timer(self, now: float) -> Datagrams:
        """Run what is due; sets :attr:`ended` when the leg must end."""
        out: Datagrams = []
        target = self.ice.selected
        if target is not None:
            out += [(d, target) for d in self.dtls.handle_timer(now)]
        reports = [self.rtcp.report_due(self.outgoing, self.stats.packets_out, now)]
        if self.video is not None:
            reports.append(self.video.rtcp.report_due(self.video.outgoing, self.video.packets_out, now))
        srtp = self.srtp
        for packet in self.events.due(now, self.outgoing.rewriter):
            if srtp is not None and target is not None:
                try:
                    out.append((srtp.protect(packet), target))
                    self.stats.packets_out += 1
                except SrtpError:
                    pass
        for report in reports:
            if report is not None:
                out += self.send_rtcp(report)
        for event in self.ice.handle_timer(now):
            if isinstance(event, ConsentLost):
                self.ended = "ICE consent lost"
        if self.dtls.state is DtlsState.FAILED:
            self.ended = f"DTLS: {self.dtls.error}"
        if self.last_media is not None and now >= self.last_media + self.media_timeout:
            self.ended = "media timeout"
        return out

    @property
    def connected(self) -> bool:
        """ICE selected a pair and SRTP keys exist."""
        return self.ice.state is IceState.CONNECTED and self.srtp is not None


class PlainLeg:
    """The SIP side: RTP/AVP (or SDES RTP/SAVP) to one remote address."""

    def __init__(
        self,
        remote: Address | None,
        outgoing: OutgoingStream,
        srtp: SrtpSession | None = None,
        latch_window: float = 2.0,
        media_timeout: float | None = 30.0,
    ) -> None:
        self.remote = remote
        self.outgoing = outgoing
        self.srtp = srtp
        self.latch_window = latch_window
        self.media_timeout = media_timeout
        self.stats = LegStats()
        self.rtcp = RtcpTermination(outgoing.rewriter.clock_rate)
        self.ended: str | None = None
        self.started: float | None = None
        self.last_media: float | None = None
        self.latched = False
        #: Whether the peer's SDP lets it receive (not sendonly or inactive, RFC 3264 §6.1).
        self.receiving = True
        #: RFC 4733 events we generate (a browser's SIP INFO digits).
        self.events = EventTrack()
        self.on_rtp: Callable[[bytearray, float], None] = lambda packet, now: None
        #: Every RTCP compound the peer sent, once read (keyframe requests for video).
        self.on_rtcp: Callable[[bytes], None] = lambda report: None

    def start(self, now: float) -> Datagrams:
        self.started = self.last_media = now
        self.rtcp.next_report = now + RTCP_INTERVAL
        return []

    def expect_media(self, now: float | None) -> None:
        """Start (``now``) or suspend (``None``) the media timeout."""
        self.last_media = now

    def follow_direction(self, direction: str, now: float | None) -> None:
        """The peer's SDP direction: nothing is sent to a peer that does not receive, and
        the media timeout runs only while the call is not on hold (phones on hold often
        send nothing at all). ``now`` is ``None`` before the call is answered."""
        self.receiving = direction in ("sendrecv", "recvonly")
        self.last_media = now if direction == "sendrecv" else None

    def set_remote(self, remote: Address, now: float) -> None:
        """The peer's address from its SDP; a NAT'd peer may still latch within the window from now."""
        if remote != self.remote:
            self.remote = remote
            self.latched = False
            self.started = now

    def _source_ok(self, source: Address, now: float) -> bool:
        host = source[0]
        if self.remote is not None and (host, source[1]) == self.remote:
            self.latched = True
            return True
        if self.latched:
            return False
        # Latching (symmetric RTP behind NAT): the first source inside the window wins.
        if self.started is not None and now - self.started <= self.latch_window:
            self.remote = source
            self.latched = True
            return True
        return False

    def datagram_received(self, data: bytes, source: Address, now: float, rtcp_port: bool = False) -> Datagrams:
        """One datagram from the RTP (or RTCP) socket."""
        rtp_source = (source[0], source[1] - 1) if rtcp_port else source
        if not self._source_ok(rtp_source, now):
            self.stats.dropped_source += 1
            return []
        kind = classify(data)
        if kind is RTP and not rtcp_port:
            try:
                plain = self.srtp.unprotect(data) if self.srtp else data
            except SrtpError:
                self.stats.dropped_srtp += 1
                return []
            stats = self.stats
            stats.packets_in += 1
            stats.bytes_in += len(data)
            self.last_media = now
            packet = bytearray(plain)
            self.rtcp.media_in(packet, now)
            self.on_rtp(packet, now)
        elif kind is RTCP:
            try:
                report = self.srtp.unprotect_rtcp(data) if self.srtp else data
            except SrtpError:
                self.stats.dropped_srtp += 1
                return []
            if not self.rtcp.reports_in(report, self.outgoing.rewriter.ssrc, now):
                self.stats.dropped_junk += 1
                return []
            if self.last_media is not None:
                self.last_media = now  # valid RTCP says the peer is alive (RFC 3550 §6)
            self.on_rtcp(report)
        else:
            self.stats.dropped_junk += 1
        return []

    def send_rtp(self, packet: bytearray, now: float) -> Datagrams:
        """RTP from the browser leg toward the SIP peer (held back while we play DTMF events)."""
        if self.remote is None or not self.receiving or self.events.active:
            return []
        self.outgoing.rewrite(packet, now)
        # Plain RTP goes out as the buffer itself: it is written before anything changes it.
        data: bytes | bytearray = packet
        if self.srtp is not None:
            try:
                data = self.srtp.protect(packet)
            except SrtpError:
                return []
        self.stats.packets_out += 1
        self.rtcp.octets_out += len(packet) - 12
        return [(data, self.remote)]

    def send_dtmf(self, digit: str, duration_ms: int, payload_type: int, clock_rate: int, now: float) -> bool:
        """Queue one digit as RFC 4733 events (the caller re-arms the leg's timer)."""
        return self.events.add(digit, duration_ms, payload_type, clock_rate, now)

    def get_timer(self) -> float | None:
        times = [t for t in (self.rtcp.next_report,) if t is not None]
        if self.last_media is not None and self.media_timeout is not None:
            times.append(self.last_media + self.media_timeout)
        if (event_at := self.events.next_time()) is not None:
            times.append(event_at)
        return min(times) if times else None

    def _event_packets(self, now: float) -> Datagrams:
        out: Datagrams = []
        for packet in self.events.due(now, self.outgoing.rewriter):
            if self.remote is None or not self.receiving:
                continue
            try:
                data = self.srtp.protect(packet) if self.srtp else bytes(packet)
            except SrtpError:
                continue
            self.stats.packets_out += 1
            out.append((data, self.remote))
        return out

    def handle_timer(self, now: float) -> Datagrams:
        out: Datagrams = self._event_packets(now)
        report = self.rtcp.report_due(self.outgoing, self.stats.packets_out, now)
        if report is not None:
            out += self.send_rtcp(report)
        if self.last_media is not None and self.media_timeout is not None and now >= self.last_media + self.media_timeout:
            self.ended = "media timeout"
        return out

    def send_rtcp(self, report: bytes) -> Datagrams:
        """An RTCP packet of ours toward the peer: on the next port up (RFC 3550 §11)."""
        if self.remote is None:
            return []
        try:
            data = self.srtp.protect_rtcp(report) if self.srtp else report
        except SrtpError:
            return []
        return [(data, (self.remote[0], self.remote[1] + 1))]


def use_clock_rate(leg: WebrtcLeg | PlainLeg, clock_rate: int) -> None:
    """The codec agreed runs at this RTP clock (8000 for G.711 where the browser
    offered Opus at 48000 first): the leg's timestamps and jitter count in it."""
    leg.outgoing.rewriter.clock_rate = clock_rate
    leg.rtcp.receive_stats.clock_rate = clock_rate
