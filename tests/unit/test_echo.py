"""The echo extension's SDP answer."""

from __future__ import annotations

from telebridge.calls.echo import echo_answer
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
