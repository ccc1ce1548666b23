"""The echo extension's SDP answer and its RTP/RTCP port pair."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError

from telebridge.calls.echo import EchoPorts, echo_answer
from telebridge.sdp import parse_sdp

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 111 0 101 126\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:126 telephone-event/48000\r\n"
    "a=fmtp:126 0-15\r\na=sendrecv\r\n"
    "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
)


def test_echo_answers_the_first_voice_codec_and_its_telephone_event_on_its_socket() -> None:
    """DTMF at the voice codec's rate is echoed too (the keypad works on echo calls), and video (VP8, H.264)."""
    answer = parse_sdp(echo_answer(OFFER.encode(), "127.0.0.1", 5004))
    audio, video = answer.media
    assert (audio.port, audio.formats) == (5004, ["111", "126"])
    assert [c.name for c in audio.codecs()] == ["opus", "telephone-event"]
    assert ("a", "fmtp:126 0-15") in audio.lines
    assert (video.port, video.formats) == (5004, ["96"]) and video.direction == "sendrecv"


def test_echo_refuses_video_it_does_not_relay() -> None:
    offer = OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 AV1/90000")
    assert parse_sdp(echo_answer(offer.encode(), "127.0.0.1", 5004)).media[1].port == 0


def test_echo_refuses_a_stream_with_only_events() -> None:
    offer = OFFER.replace("m=audio 40000 RTP/AVP 111 0 101 126", "m=audio 40000 RTP/AVP 101")
    offer = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith(("a=rtpmap:111", "a=fmtp:111", "a=rtpmap:0 ")))
    assert parse_sdp(echo_answer(offer.encode(), "127.0.0.1", 5004)).media[0].port == 0


class BoundPort:
    def __init__(self, port: int, protocol: object) -> None:
        self.port, self.protocol, self.listening = port, protocol, True

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        self.listening = False


class BusyAbove:
    """A UDP reactor handing out the ports in ``free`` for port 0; a port in ``taken`` cannot be bound."""

    def __init__(self, free: list[int], taken: set[int]) -> None:
        self.free, self.taken = free, taken
        self.bound: list[BoundPort] = []

    def listenUDP(self, port: int, protocol: object, interface: str = "", maxPacketSize: int = 8192) -> BoundPort:
        if port in self.taken:
            raise CannotListenError(interface, port, "taken")
        self.bound.append(BoundPort(port or self.free.pop(0), protocol))
        return self.bound[-1]


def test_echo_takes_the_next_port_for_rtcp_and_tries_again_when_it_is_taken() -> None:
    """A plain leg sends RTCP to the port above the answered one: the echo listens there too;
    when that port is taken it lets the RTP port go and picks another pair."""
    reactor = BusyAbove(free=[41000, 41010], taken={41001})
    echo = EchoPorts().listen(reactor, "127.0.0.1")  # type: ignore[arg-type]
    assert echo.port == 41010
    assert [(b.port, b.protocol, b.listening) for b in reactor.bound] == [
        (41000, echo.rtp, False), (41010, echo.rtp, True), (41011, echo.rtcp, True)
    ]
    echo.stopListening()
    assert not any(b.listening for b in reactor.bound)


def test_echo_gives_up_when_no_pair_is_free() -> None:
    reactor = BusyAbove(free=[41000, 41002], taken={41001, 41003})
    with pytest.raises(CannotListenError):
        EchoPorts().listen(reactor, "127.0.0.1", attempts=2)  # type: ignore[arg-type]
