"""Where the SIP side's media goes: an IP literal from its SDP, or a clear 488."""

from __future__ import annotations

import pytest

from telebridge.calls.call_media import MediaRefused, _address
from telebridge.sdp import parse_sdp


def _sdp(connection: str) -> str:
    return f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc={connection}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


@pytest.mark.parametrize("connection, address", [
    ("IN IP4 192.0.2.7", ("192.0.2.7", 4000)),
    ("IN IP4 233.252.0.1/127", ("233.252.0.1", 4000)),
    ("IN IP6 2001:db8::7", ("2001:db8::7", 4000)),
])
def test_an_ip_literal_is_where_media_goes(connection: str, address: tuple[str, int]) -> None:
    session = parse_sdp(_sdp(connection))
    assert _address(session, session.media[0]) == address


def test_a_name_is_refused_with_488_rather_than_looked_up_on_the_packet_path() -> None:
    session = parse_sdp(_sdp("IN IP4 pbx.example.com"))
    with pytest.raises(MediaRefused) as refused:
        _address(session, session.media[0])
    assert refused.value.status == 488 and "not an IP address" in refused.value.reason
