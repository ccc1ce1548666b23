"""Keyframe requests across the gateway: asked on one leg, asked again of the other leg's sender."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from telebridge.media.rtcp_feedback import build_fir, build_pli, keyframe_requests
from telebridge.media.video import KeyframeRequests

BROWSER_OURS, BROWSER_THEIRS = 0x1000, 0x2000  # we send the browser 0x1000, it sends us 0x2000
SIP_OURS, SIP_THEIRS = 0x3000, 0x4000
RECEIVER_REPORT = bytes.fromhex("81c90007") + (1).to_bytes(4, "big") + bytes(24)


def requests(sip_theirs: int | None = SIP_THEIRS, browser_theirs: int | None = BROWSER_THEIRS) -> KeyframeRequests:
    return KeyframeRequests(lambda: (BROWSER_OURS, browser_theirs), lambda: (SIP_OURS, sip_theirs))


def test_a_browser_pli_about_our_video_asks_the_sip_sender() -> None:
    relay = requests()
    out = relay.from_browser(RECEIVER_REPORT + build_pli(BROWSER_THEIRS, BROWSER_OURS), 0.0)
    assert out is not None and keyframe_requests(out)[0].kind == "pli"
    assert (keyframe_requests(out)[0].sender, keyframe_requests(out)[0].media) == (SIP_OURS, SIP_THEIRS)
    assert relay.to_sip == 1


def test_a_browser_fir_stays_a_fir_and_a_repeat_is_passed_on_once() -> None:
    relay = requests()
    fir = build_fir(BROWSER_THEIRS, BROWSER_OURS, 7)
    first = relay.from_browser(fir, 0.0)
    assert first is not None and keyframe_requests(first)[0].kind == "fir" and keyframe_requests(first)[0].media == SIP_THEIRS
    assert relay.from_browser(fir, 0.0) is None and relay.to_sip == 1


def test_a_sip_fir_becomes_a_pli_for_the_browser_sender() -> None:
    relay = requests()
    out = relay.from_sip(build_fir(SIP_THEIRS, SIP_OURS, 1))
    assert out is not None
    (request,) = keyframe_requests(out)
    assert (request.kind, request.sender, request.media) == ("pli", BROWSER_OURS, BROWSER_THEIRS)
    assert relay.to_browser == 1


def test_requests_about_other_streams_or_before_the_sender_is_known_go_nowhere() -> None:
    assert requests().from_browser(build_pli(BROWSER_THEIRS, 0x9999), 0.0) is None  # about our audio, say
    assert requests().from_sip(RECEIVER_REPORT) is None
    assert requests(sip_theirs=None).from_browser(build_pli(BROWSER_THEIRS, BROWSER_OURS), 0.0) is None
    assert requests(browser_theirs=None).from_sip(build_pli(SIP_THEIRS, SIP_OURS)) is None


@given(st.binary(max_size=120))
def test_any_bytes_are_read_without_raising(data: bytes) -> None:
    relay = requests()
    relay.from_browser(data, 0.0)
    relay.from_sip(data)


def test_a_sip_side_without_rtcp_feedback_is_also_asked_by_info_at_most_once_a_second() -> None:
    relay = requests()
    asked: list[int] = []
    relay.ask_sip_by_info = lambda: asked.append(1)
    pli = build_pli(BROWSER_THEIRS, BROWSER_OURS)
    for now in (10.0, 10.3, 10.9, 11.0, 11.5):
        assert relay.from_browser(pli, now) is not None  # RTCP goes every time
    assert len(asked) == 2 and relay.to_sip == 5
