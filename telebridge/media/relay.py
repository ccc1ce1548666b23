"""The media relay's Twisted side: ports, sockets, timers (a thin adapter).

Each leg owns one UDP socket (two for a plain leg without rtcp-mux: RTP on
an even port, RTCP on the next), taken from a :class:`PortPool`, opened in
the shared :class:`UdpSocketSet` and given back when the bridge closes,
whatever ended it. Datagrams go straight to the sans-I/O leg with the
reactor's time, and what the leg returns is written out: no Deferreds, no
logging, no objects per packet beyond the buffer. Each leg has one
``callLater`` for its earliest deadline.
"""

from __future__ import annotations

import socket
from typing import Callable, Sequence, Union

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime

from telebridge.media.dtmf_events import EventReader
from telebridge.media.inband_dtmf import InbandDigits
from telebridge.media.legs import Datagrams, PlainLeg, WebrtcLeg
from telebridge.media.recording_tap import RecordingTap
from telebridge.media.rtp import RTCP, classify
from telebridge.media.transcode import Transcoder, rtp_payload
from telebridge.media.udp_sockets import UdpSocketSet
from telebridge.media.video import KeyframeRequests, VideoPath

Leg = Union[WebrtcLeg, PlainLeg]


class NoPortsLeft(Exception):
    """The configured media port range is exhausted."""


class PortPool:
    """Even/odd port pairs from a range; every pair handed out comes back."""

    def __init__(self, first: int, last: int) -> None:
        self._free = list(range(first + first % 2, last - 1, 2))
        self._used: set[int] = set()

    def allocate(self) -> int:
        """An even port whose odd neighbour is also ours."""
        if not self._free:
            raise NoPortsLeft("no media ports left")
        port = self._free.pop(0)
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        """Give a pair back (a port not handed out is ignored)."""
        if port in self._used:
            self._used.discard(port)
            self._free.append(port)

    @property
    def in_use(self) -> int:
        """Pairs currently handed out."""
        return len(self._used)


class LegSocket:
    """One UDP socket feeding one leg, and what the leg sends going out of it."""

    def __init__(self, reactor: IReactorTime) -> None:
        self.seconds = reactor.seconds
        self.socket: socket.socket | None = None

    def write(self, datagrams: Datagrams) -> None:
        if not datagrams or self.socket is None:
            return
        # Every address here is an IP literal (a packet's source, or an SDP
        # address checked when it was read), so no per-datagram checks.
        send = self.socket.sendto
        for data, address in datagrams:
            try:
                send(data, address)
            except OSError:
                pass  # ICMP-driven send errors and a full buffer: UDP loss, not our fault


    def write_mixed(self, datagrams: Datagrams) -> None:
        """What a leg's timers produce (reports, DTMF events, ...): see :meth:`PlainSocket.write_mixed`."""
        self.write(datagrams)


class WebrtcSocket(LegSocket):
    """The WebRTC leg's one socket (BUNDLE, rtcp-mux)."""

    def __init__(self, leg: WebrtcLeg, reactor: IReactorTime) -> None:
        super().__init__(reactor)
        self.receive = leg.datagram_received
        # Called after STUN/DTLS (not media): their deadlines may have moved.
        self.after_control: Callable[[], None] = lambda: None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.receive(data, addr, self.seconds())
        if out:
            self.write(out)
        if data and data[0] < 128:
            self.after_control()


class PlainSocket(LegSocket):
    """The plain leg's RTP socket, or (``rtcp``) its RTCP socket on the next port."""

    def __init__(self, leg: PlainLeg, reactor: IReactorTime, rtcp: bool = False) -> None:
        super().__init__(reactor)
        self.receive = leg.datagram_received
        self.rtcp = rtcp
        #: The RTCP socket on the next port, beside this RTP one.
        self.rtcp_socket: PlainSocket | None = None

    def write_mixed(self, datagrams: Datagrams) -> None:
        """RTCP goes out of the RTCP socket (symmetric RTCP, RFC 4961: a peer, or
        an echo, answers where it came from, and a strict peer takes RTCP only
        from our RTCP port), RTP out of this one."""
        rtcp_socket = self.rtcp_socket
        if rtcp_socket is None:
            self.write(datagrams)
            return
        for datagram in datagrams:
            (rtcp_socket if classify(datagram[0]) is RTCP else self).write([datagram])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.receive(data, addr, self.seconds(), self.rtcp)
        if out:
            self.write(out)


class MediaBridge:
    """Two legs, their sockets and timers; RTP flows from each to the other."""

    def __init__(
        self,
        reactor: IReactorTime,
        pool: PortPool,
        sockets: UdpSocketSet,
        webrtc: WebrtcLeg,
        plain: PlainLeg,
        interface: str = "127.0.0.1",
        on_end: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.reactor = reactor
        self.pool = pool
        self.sockets = sockets
        self.webrtc, self.plain = webrtc, plain
        self.on_end = on_end
        self.closed = False
        self._ports: list[int] = []
        self._leg_sockets: list[LegSocket] = []
        self._timers: dict[int, DelayedCall] = {}
        self.transcoders: tuple[Transcoder, Transcoder] | None = None
        self.tap: RecordingTap | None = None
        self.digit_catcher: tuple[dict[int, EventReader], Callable[[str, int], None]] | None = None
        self.inband: tuple[InbandDigits, int, int] | None = None
        self.interface = interface
        #: The SIP side's video leg and its sockets, when video is relayed.
        self.video_plain: PlainLeg | None = None
        self.video_port: int | None = None
        self._video_sockets: list[PlainSocket] = []
        self.keyframes: KeyframeRequests | None = None
        self._webrtc_socket = WebrtcSocket(webrtc, reactor)
        self._plain_socket = PlainSocket(plain, reactor)
        try:
            self.webrtc_port = self._bind(interface, [self._webrtc_socket])
            self.plain_port = self._bind(interface, [self._plain_socket, PlainSocket(plain, reactor, rtcp=True)])
        except Exception:
            self.close("could not bind media ports")
            raise
        webrtc.on_rtp = self._to_plain
        plain.on_rtp = self._to_webrtc
        self._webrtc_socket.after_control = lambda: self._after_control(webrtc, self._webrtc_socket)
        now = reactor.seconds()  # type: ignore[attr-defined]
        self._webrtc_socket.write(webrtc.start(now))
        self._plain_socket.write(plain.start(now))
        self._rearm(webrtc, self._webrtc_socket)
        self._rearm(plain, self._plain_socket)

    def _bind(self, interface: str, sockets: Sequence[WebrtcSocket | PlainSocket]) -> int:
        port = self.pool.allocate()
        self._ports.append(port)
        for offset, sock in enumerate(sockets):
            sock.socket = self.sockets.open(interface, port + offset, sock.datagram_received)
            self._leg_sockets.append(sock)
        if len(sockets) == 2 and isinstance(sockets[0], PlainSocket) and isinstance(sockets[1], PlainSocket):
            sockets[0].rtcp_socket = sockets[1]
        return port

    def add_video(self, video: VideoPath, plain: PlainLeg) -> int:
        """Relay the browser's video (``video``, inside its BUNDLE) to and from ``plain``,
        the SIP side's video leg on a port pair of its own; returns that port."""
        webrtc = self.webrtc
        self._video_sockets = [PlainSocket(plain, self.reactor), PlainSocket(plain, self.reactor, rtcp=True)]
        self.video_port = self._bind(self.interface, self._video_sockets)
        video_socket = self._video_sockets[0]
        self.video_plain = plain
        now = self.reactor.seconds()  # type: ignore[attr-defined]
        webrtc.add_video(video, now)
        video_socket.write(plain.start(now))
        video.on_rtp = lambda packet, now: video_socket.write(plain.send_rtp(packet, now))
        plain.on_rtp = lambda packet, now: self._webrtc_socket.write(webrtc.send_video_rtp(packet, now))
        self.keyframes = keyframes = KeyframeRequests(
            lambda: (video.outgoing.rewriter.ssrc, video.rtcp.receive_stats.ssrc),
            lambda: (plain.outgoing.rewriter.ssrc, plain.rtcp.receive_stats.ssrc),
        )

        def from_browser(report: bytes) -> None:
            request = keyframes.from_browser(report, self.reactor.seconds())  # type: ignore[attr-defined]
            if request is not None:
                video_socket.write_mixed(plain.send_rtcp(request))

        def from_sip(report: bytes) -> None:
            request = keyframes.from_sip(report)
            if request is not None:
                self._webrtc_socket.write(webrtc.send_rtcp(request))

        webrtc.on_rtcp, plain.on_rtcp = from_browser, from_sip
        self._rearm(webrtc, self._webrtc_socket)
        self._rearm(plain, video_socket)
        return self.video_port

    def keyframe_from_browser(self) -> bool:
        """Ask the browser's video sender for a keyframe (a SIP INFO asked us); False without video."""
        request = self.keyframes.pli_for_browser() if self.keyframes is not None else None
        if request is None:
            return False
        self._webrtc_socket.write(self.webrtc.send_rtcp(request))
        return True

    def drop_video(self) -> None:
        """The video stream was refused after all: its ports go back now."""
        if self.video_plain is None:
            return
        old = self._timers.pop(id(self.video_plain), None)
        if old is not None and old.active():
            old.cancel()
        self.webrtc.video = None
        self.webrtc.on_rtcp = lambda report: None
        self.video_plain = self.keyframes = None
        for sock in self._video_sockets:
            self._close_socket(sock)
            self._leg_sockets.remove(sock)
        self._video_sockets = []
        if self.video_port is not None:
            self._ports.remove(self.video_port)
            self.pool.release(self.video_port)
            self.video_port = None

    def _close_socket(self, sock: LegSocket) -> None:
        if sock.socket is not None:
            self.sockets.close(sock.socket)
            sock.socket = None

    def _to_plain(self, packet: bytearray, now: float) -> None:
        self._plain_socket.write(self.plain.send_rtp(packet, now))

    def _to_webrtc(self, packet: bytearray, now: float) -> None:
        self._webrtc_socket.write(self.webrtc.send_rtp(packet, now))

    def transcode(self, to_plain: Transcoder, to_webrtc: Transcoder) -> None:
        """Decode and re-encode each way from now on: the legs share no codec."""
        to_plain.on_packet = self._to_plain
        to_webrtc.on_packet = self._to_webrtc
        self.transcoders = (to_plain, to_webrtc)
        self._wire()

    def record(self, tap: RecordingTap) -> None:
        """Let ``tap`` see every packet each side sends (it changes none)."""
        self.tap = tap
        self._wire()

    def catch_digits(self, readers: dict[int, EventReader], on_digit: Callable[[str, int], None]) -> None:
        """The browser's RFC 4733 events (``readers``: one per telephone-event payload
        type, at its clock) stop here and become ``on_digit`` calls (the SIP side
        wants its digits as SIP INFO)."""
        self.digit_catcher = (readers, on_digit)
        self._wire()

    def detect_inband(self, digits: InbandDigits, payload_type: int, clock_rate: int) -> None:
        """Tones in the SIP side's G.711 also reach the browser as RFC 4733 events
        (``payload_type`` at ``clock_rate``: the browser's telephone-event)."""
        self.inband = (digits, payload_type, clock_rate)
        self._wire()

    def _wire(self) -> None:
        """Where each leg's RTP goes: straight to the other leg (the hot path), or
        through a transcoder, with the recording tap in front when there is one."""
        if self.transcoders is None:
            from_webrtc: Callable[[bytearray, float], None] = self._to_plain
            from_plain: Callable[[bytearray, float], None] = self._to_webrtc
        else:
            to_plain, to_webrtc = self.transcoders
            from_webrtc = lambda packet, now: self._into(to_plain, packet, now)  # noqa: E731
            from_plain = lambda packet, now: self._into(to_webrtc, packet, now)  # noqa: E731
        if self.digit_catcher is not None:
            from_webrtc = self._catching(from_webrtc, *self.digit_catcher)
        if self.inband is not None:
            from_plain = self._detecting(from_plain, *self.inband)
        tap = self.tap
        if tap is None:
            self.webrtc.on_rtp, self.plain.on_rtp = from_webrtc, from_plain
            return

        def webrtc_tapped(packet: bytearray, now: float) -> None:
            tap.from_browser(packet, now)
            from_webrtc(packet, now)

        def plain_tapped(packet: bytearray, now: float) -> None:
            tap.from_sip(packet, now)
            from_plain(packet, now)

        self.webrtc.on_rtp, self.plain.on_rtp = webrtc_tapped, plain_tapped

    @staticmethod
    def _catching(
        forward: Callable[[bytearray, float], None], readers: dict[int, EventReader], on_digit: Callable[[str, int], None]
    ) -> Callable[[bytearray, float], None]:
        def catch(packet: bytearray, now: float) -> None:
            reader = readers.get(packet[1] & 0x7F)
            if reader is None:
                forward(packet, now)
                return
            payload = rtp_payload(packet)
            digit = reader.read(payload, int.from_bytes(packet[4:8], "big")) if payload else None
            if digit is not None:
                on_digit(*digit)

        return catch

    def _detecting(
        self, forward: Callable[[bytearray, float], None], digits: InbandDigits, payload_type: int, clock_rate: int
    ) -> Callable[[bytearray, float], None]:
        def detect(packet: bytearray, now: float) -> None:
            found = digits.packet(packet)  # before forwarding: that rewrites the packet
            forward(packet, now)
            for digit, duration_ms in found:
                self.send_dtmf_to_browser(digit, duration_ms, payload_type, clock_rate)

        return detect

    def _into(self, transcoder: Transcoder, packet: bytearray, now: float) -> None:
        transcoder.push(packet, now)
        # The playout clock only needs arming when the stream (re)starts.
        if id(transcoder) not in self._timers:
            self._arm_transcoder(transcoder)

    def _arm_transcoder(self, transcoder: Transcoder) -> None:
        deadline = transcoder.get_timer()
        if deadline is None or self.closed:
            return
        delay = max(0.0, deadline - self.reactor.seconds())  # type: ignore[attr-defined]
        self._timers[id(transcoder)] = self.reactor.callLater(delay, self._play, transcoder)  # type: ignore[attr-defined]

    def _play(self, transcoder: Transcoder) -> None:
        self._timers.pop(id(transcoder), None)
        transcoder.handle_timer(self.reactor.seconds())  # type: ignore[attr-defined]
        self._arm_transcoder(transcoder)

    def _rearm(self, leg: Leg, sock: LegSocket) -> None:
        old = self._timers.pop(id(leg), None)
        if old is not None and old.active():
            old.cancel()
        deadline = leg.get_timer()
        if deadline is None or self.closed:
            return
        delay = max(0.0, deadline - self.reactor.seconds())  # type: ignore[attr-defined]
        self._timers[id(leg)] = self.reactor.callLater(delay, self._fire, leg, sock)  # type: ignore[attr-defined]

    def expect_media(self, expect: bool) -> None:
        """Run (or suspend, while a call rings) both legs' media timeouts."""
        now = self.reactor.seconds() if expect else None  # type: ignore[attr-defined]
        self.webrtc.expect_media(now)
        self.plain.expect_media(now)
        self._rearm(self.webrtc, self._webrtc_socket)
        self._rearm(self.plain, self._plain_socket)

    def follow_plain_direction(self, direction: str, answered: bool) -> None:
        """The SIP side's SDP direction (hold, resume): see :meth:`PlainLeg.follow_direction`."""
        now = self.reactor.seconds() if answered else None  # type: ignore[attr-defined]
        self.plain.follow_direction(direction, now)
        self._rearm(self.plain, self._plain_socket)

    def send_dtmf(self, digit: str, duration_ms: int, payload_type: int, clock_rate: int) -> bool:
        """Play one digit as RFC 4733 events toward the SIP side."""
        queued = self.plain.send_dtmf(digit, duration_ms, payload_type, clock_rate, self.reactor.seconds())  # type: ignore[attr-defined]
        self._rearm(self.plain, self._plain_socket)
        return queued

    def send_dtmf_to_browser(self, digit: str, duration_ms: int, payload_type: int, clock_rate: int) -> bool:
        """Play one digit as RFC 4733 events toward the browser."""
        queued = self.webrtc.send_dtmf(digit, duration_ms, payload_type, clock_rate, self.reactor.seconds())  # type: ignore[attr-defined]
        self._rearm(self.webrtc, self._webrtc_socket)
        return queued

    def _after_control(self, leg: Leg, sock: LegSocket) -> None:
        if leg.ended is not None:
            self.close(leg.ended)
        else:
            self._rearm(leg, sock)

    def _fire(self, leg: Leg, sock: LegSocket) -> None:
        self._timers.pop(id(leg), None)
        sock.write_mixed(leg.handle_timer(self.reactor.seconds()))  # type: ignore[attr-defined]
        if leg.ended is not None:
            self.close(leg.ended)
        else:
            self._rearm(leg, sock)

    def close(self, reason: str) -> None:
        """Stop both legs, give the ports back; idempotent."""
        if self.closed:
            return
        self.closed = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for sock in self._leg_sockets:
            self._close_socket(sock)
        self._leg_sockets.clear()
        for port in self._ports:
            self.pool.release(port)
        self._ports.clear()
        self.on_end(reason)
