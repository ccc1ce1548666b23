"""The ``echo`` extension: a plain RTP peer that sends every packet back.

It sits on the SIP side of the relay like any PBX would, so an echo call
exercises the whole media path (ICE, DTLS-SRTP, SRTP, rewriting, the
plain leg's strict source) and a newcomer hears themselves through it.
One socket serves every echo call: each call's plain leg has its own port,
and the echo goes back to whichever port sent it.
"""

from __future__ import annotations

from twisted.internet import protocol

from telebridge.sdp import Media, SessionDescription, parse_sdp

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


def echo_answer(plain_offer: bytes, host: str, port: int) -> bytes:
    """Our answer to a plain offer: the first codec of each stream (and telephone-event), on the echo socket."""
    offer = parse_sdp(plain_offer)
    ip = "IP6" if ":" in host else "IP4"
    answer = SessionDescription(
        [("v", "0"), ("o", f"- 1 1 IN {ip} {host}"), ("s", "echo"), ("c", f"IN {ip} {host}"), ("t", "0 0")]
    )
    for media in offer.media:
        codecs = media.codecs()
        voice = [c for c in codecs if c.name.lower() != "telephone-event"]
        if media.kind != "audio" or not media.port or not voice:
            answer.media.append(Media(media.kind, 0, media.proto, list(media.formats)))
            continue
        first = voice[0]
        channels = f"/{first.channels}" if first.channels != 1 else ""
        echoed = Media("audio", port, media.proto, [str(first.payload_type)])
        echoed.lines.append(("a", f"rtpmap:{first.payload_type} {first.name}/{first.clock_rate}{channels}"))
        if first.fmtp:
            echoed.lines.append(("a", f"fmtp:{first.payload_type} {first.fmtp}"))
        # RFC 4733 events at the voice codec's rate come back too, so the
        # keypad can be tried on an echo call.
        events = [c for c in codecs if c.name.lower() == "telephone-event" and c.clock_rate == first.clock_rate]
        for event in events[:1]:
            echoed.formats.append(str(event.payload_type))
            echoed.lines.append(("a", f"rtpmap:{event.payload_type} telephone-event/{event.clock_rate}"))
            if event.fmtp:
                echoed.lines.append(("a", f"fmtp:{event.payload_type} {event.fmtp}"))
        echoed.lines.append(("a", "sendrecv"))
        answer.media.append(echoed)
    return str(answer).encode()
