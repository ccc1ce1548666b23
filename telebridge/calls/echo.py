"""The ``echo`` extension: a plain RTP peer that sends every packet back.

It sits on the SIP side of the relay like any PBX would, so an echo call
exercises the whole media path (ICE, DTLS-SRTP, SRTP, rewriting, the
plain leg's strict source) and a newcomer hears themselves through it, and
sees themselves when the call has video (VP8 or H.264, as relayed). One
socket serves every echo call and stream: each plain leg has its own port,
and the echo goes back to whichever port sent it. A second socket on the
next port up does the same for RTCP (a plain leg sends its RTCP there, RFC
3550 §11): a browser's keyframe request comes back as the echo side's own,
so the gateway asks the browser for the keyframe its echoed video needs
after a loss.
"""

from __future__ import annotations

from twisted.internet import defer, protocol
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP

from telebridge.sdp import Codec, Media, SessionDescription, parse_sdp
from telebridge.sdp_translation import relayable_video

# Nothing larger than one RTP packet on an Ethernet path is echoed, so the
# socket cannot be used to reflect big datagrams.
MAX_PACKET = 1500


class EchoResponder(protocol.DatagramProtocol):
    """Sends each datagram back where it came from."""

    def __init__(self) -> None:
        self.echoed = 0

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > MAX_PACKET:
            return
        self.echoed += 1
        self.transport.write(data, addr)  # type: ignore[union-attr]


class EchoPorts:
    """The echo's RTP socket, on a port the system picks, and its RTCP socket on the next one up."""

    def __init__(self) -> None:
        self.rtp, self.rtcp = EchoResponder(), EchoResponder()
        self._ports: list[IListeningPort] = []

    @property
    def port(self) -> int:
        """The RTP port (the one echo answers name)."""
        return self._ports[0].getHost().port  # type: ignore[no-any-return,attr-defined]

    def listen(self, reactor: IReactorUDP, interface: str, attempts: int = 20) -> EchoPorts:
        """Bind both, trying again (``attempts`` times) when the port above the RTP one is taken."""
        for _ in range(attempts):
            rtp = reactor.listenUDP(0, self.rtp, interface=interface)
            above = rtp.getHost().port + 1  # type: ignore[attr-defined]
            try:
                if above > 65535:
                    raise CannotListenError(interface, above, "no port above")
                rtcp = reactor.listenUDP(above, self.rtcp, interface=interface)
            except CannotListenError:
                rtp.stopListening()
                continue
            self._ports = [rtp, rtcp]
            return self
        raise CannotListenError(interface, 0, f"no free port pair for the echo in {attempts} attempts")

    def stopListening(self) -> defer.Deferred[object]:
        ports, self._ports = self._ports, []
        return defer.gatherResults([defer.maybeDeferred(port.stopListening) for port in ports])


def echo_answer(plain_offer: bytes, host: str, port: int) -> bytes:
    """Our answer to a plain offer: the first codec of each stream (and telephone-event), on the echo socket;
    the first VP8 or H.264 of a video stream."""
    offer = parse_sdp(plain_offer)
    ip = "IP6" if ":" in host else "IP4"
    answer = SessionDescription(
        [("v", "0"), ("o", f"- 1 1 IN {ip} {host}"), ("s", "echo"), ("c", f"IN {ip} {host}"), ("t", "0 0")]
    )
    for media in offer.media:
        codecs = media.codecs()
        video = [c for c in codecs if relayable_video(c)] if media.kind == "video" else []
        if video and media.port:
            answer.media.append(_echoed(media, port, video[0]))
            continue
        voice = [c for c in codecs if c.name.lower() != "telephone-event"]
        if media.kind != "audio" or not media.port or not voice:
            answer.media.append(Media(media.kind, 0, media.proto, list(media.formats)))
            continue
        first = voice[0]
        echoed = _echoed(media, port, first)
        # RFC 4733 events at the voice codec's rate come back too, so the
        # keypad can be tried on an echo call.
        events = [c for c in codecs if c.name.lower() == "telephone-event" and c.clock_rate == first.clock_rate]
        for event in events[:1]:
            echoed.formats.append(str(event.payload_type))
            echoed.lines.append(("a", f"rtpmap:{event.payload_type} telephone-event/{event.clock_rate}"))
            if event.fmtp:
                echoed.lines.append(("a", f"fmtp:{event.payload_type} {event.fmtp}"))
        answer.media.append(echoed)
    return str(answer).encode()


def _echoed(media: Media, port: int, codec: Codec) -> Media:
    """``media`` answered with ``codec`` on the echo socket."""
    channels = f"/{codec.channels}" if codec.channels != 1 else ""
    echoed = Media(media.kind, port, media.proto, [str(codec.payload_type)])
    echoed.lines.append(("a", f"rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}"))
    if codec.fmtp:
        echoed.lines.append(("a", f"fmtp:{codec.payload_type} {codec.fmtp}"))
    echoed.lines.append(("a", "sendrecv"))
    return echoed
