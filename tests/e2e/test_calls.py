"""Calls through the B2BUA of a real telebridge process, with aiortc as the browser.

The browser side speaks SIP over the WebSocket exactly as a browser stack
does (tests/e2e/ws_ua.py) and its media is aiortc's, so ICE, DTLS-SRTP and
the relay are the real thing. What is asserted is what a user would notice:
the caller's own tone comes back from ``echo``; a BYE or a closed page ends
the call; afterwards no call, port pair or timer is left.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Generator, Iterator

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from telebridge.sip.message import Request
from tests.e2e.harness import LOOPBACK, PHONE_PASSWORD, PHONE_USER, Gateway, free_media_ports, free_port, run_sipp, start_sipp
from tests.e2e.peer_process import AIORTC_PEER, LinePeer, start_peer
from tests.e2e.ws_ua import Call, WsUserAgent, answer_request

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = "[media]\nport_min = 43000\nport_max = 43099\n[calls]\nring_timeout = 5\ngrace = 3\n"
    with Gateway(tmp_path_factory.mktemp("gateway")).running(config) as gw:
        yield gw


def metrics(gateway: Gateway) -> dict[str, float]:
    """The gauges of /metrics, by name (labels ignored)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    url = f"https://{LOOPBACK}:{gateway.web_port}/metrics"
    with urllib.request.urlopen(url, context=context, timeout=5) as r:
        text = r.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name.split("{")[0]] = values.get(name.split("{")[0], 0.0) + float(value)
    return values


def wait_idle(gateway: Gateway, timeout: float = 3.0) -> dict[str, float]:
    """Poll until no call, port pair or call timer is left (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        values = metrics(gateway)
        if (values.get("calls"), values.get("media_port_pairs"), values.get("call_timers")) == (0, 0, 0) or time.monotonic() > deadline:
            return values
        time.sleep(0.1)


def assert_released(gateway: Gateway, timeout: float = 3.0) -> None:
    """What a call leaves behind is gone: no call, port pair or call timer."""
    values = wait_idle(gateway, timeout)
    assert (values["calls"], values["media_port_pairs"], values["call_timers"]) == (0, 0, 0), values


def answered_call(ua: WsUserAgent, target: str, offer: dict[str, str], peer: LinePeer, seconds: float, **extra: float) -> Call:
    """INVITE ``target`` with the peer's offer, expect 200, ACK it, and let the peer play for ``seconds``
    (``extra``: more of the peer's instructions)."""
    call = ua.invite(target, offer["offer"])
    answer = ua.final_response()
    assert answer.status == 200, answer
    call.ack(answer)
    peer.send({"answer": answer.body.decode(), "seconds": seconds, **extra})
    call.answer = answer
    return call


@pytest.mark.parametrize("video", [False, True], ids=["audio", "video"])
@pytest_twisted.inlineCallbacks
def test_browser_calls_echo_and_gets_its_own_media_back(gateway: Gateway, loopback_only: None, video: bool) -> Generator[Any, Any, None]:
    """Issue 4 §2: echo answers and loops the caller's audio back through the relay; with a
    camera (aiortc, VP8) the caller sees its own pictures too, and its request for a keyframe
    of the video it gets (a PLI at 1 s) comes back to its own camera: echo reflects RTCP on
    the port above its RTP one, so the gateway asks the browser's sender."""
    peer = start_peer(AIORTC_PEER.with_name("aiortc_video_peer.py"), "VP8") if video else start_peer()
    ua = WsUserAgent("alice", gateway.web_port)
    try:
        assert ua.register().status == 200
        offer = yield peer.receive()
        call = answered_call(ua, "echo", offer, peer, 3, pli_at=1)
        assert b"a=ice-lite" in call.answer.body and b"a=setup:passive" in call.answer.body
        assert metrics(gateway)["calls"] == 1
        result = yield peer.receive(timeout=30)
        assert result["connection"] == "connected", result
        assert result["frames"] > 80 and result["rms"] > 500, result
        if video:
            assert result["video_frames"] > 20 and result["video_size"] == [320, 240], result
            assert result["keyframe_requests"] >= 1, result
        assert call.bye().status == 200
        assert_released(gateway)
    finally:
        ua.close()
        yield peer.stop()


@pytest_twisted.inlineCallbacks
def test_closing_the_page_mid_call_ends_the_call(gateway: Gateway, loopback_only: None) -> Generator[Any, Any, None]:
    """Issue 4 §1: a clean close (1001) ends the browser's calls at once."""
    peer = start_peer()
    ua = WsUserAgent("bob", gateway.web_port)
    try:
        offer = yield peer.receive()
        answered_call(ua, "echo", offer, peer, 1)
        yield peer.receive(timeout=30)
        ua.close(1001)
        assert_released(gateway, timeout=2.0)
    finally:
        yield peer.stop()


def test_call_to_an_unknown_user_gets_404_and_leaves_nothing(gateway: Gateway) -> None:
    ua = WsUserAgent("carol", gateway.web_port)
    try:
        ua.invite("nobody", "v=0\r\n")
        assert ua.final_response().status == 404
        values = wait_idle(gateway)
        assert values["calls"] == 0
    finally:
        ua.close()


def test_offer_without_ice_or_dtls_is_refused_with_488(gateway: Gateway) -> None:
    """A browser-side offer must carry ICE credentials and a fingerprint."""
    plain = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    ua = WsUserAgent("dave", gateway.web_port)
    try:
        ua.invite("echo", plain)
        response = ua.final_response()
        assert response.status == 488, response
        assert wait_idle(gateway)["media_port_pairs"] == 0
    finally:
        ua.close()


def _registered_phone(gateway: Gateway, tmp_path: Path, scenario: str, media_port: int) -> subprocess.Popen[str]:
    """A SIPp phone registered as PHONE_USER, running ``scenario`` with its RTP echoed from ``media_port``."""
    phone_port = free_port()
    registered = run_sipp(gateway, "phone_register.xml", "udp", tmp_path, [
        "-s", PHONE_USER, "-au", PHONE_USER, "-ap", PHONE_PASSWORD, "-key", "contact_port", str(phone_port),
    ])
    assert registered.returncode == 0, registered.stdout + registered.stderr
    return start_sipp(gateway, scenario, tmp_path, [
        "-p", str(phone_port), "-mi", LOOPBACK, "-mp", str(media_port), "-rtp_echo", "-timeout", "40s",
    ])


def _phone_done(sipp: subprocess.Popen[str]) -> None:
    """The phone's scenario ran to its end."""
    code, output = _finish(sipp)
    assert code == 0, output


def _tidy(ua: WsUserAgent, sipp: subprocess.Popen[str], peer: LinePeer) -> defer.Deferred[None]:
    """Whatever a test left running is stopped (a failed test leaves all of it)."""
    ua.close()
    if sipp.poll() is None:
        sipp.kill()
    return peer.stop()


def _finish(sipp: subprocess.Popen[str], timeout: float = 15.0) -> tuple[int, str]:
    try:
        output, _ = sipp.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        sipp.kill()
        output, _ = sipp.communicate()
    return sipp.returncode, output


@pytest_twisted.inlineCallbacks
def test_browser_calls_a_sip_phone_audio_both_ways_and_bye_reaches_it(
    gateway: Gateway, loopback_only: None, tmp_path: Path
) -> Generator[Any, Any, None]:
    """Issue 4 §2: a browser calls a SIP phone registered to telebridge (SIPp,
    PCMU, echoing its RTP); the tone goes out and comes back; the browser's
    BYE reaches the phone (its scenario only completes on a BYE)."""
    sipp = _registered_phone(gateway, tmp_path, "phone_answers.xml", free_port())
    peer = start_peer()
    ua = WsUserAgent("erin", gateway.web_port)
    try:
        offer = yield peer.receive()
        call = answered_call(ua, PHONE_USER, offer, peer, 3)
        result = yield peer.receive(timeout=30)
        assert result["connection"] == "connected", result
        assert result["frames"] > 80 and result["rms"] > 300, result
        received_before = metrics(gateway).get("media_packets_received_total", 0.0)
        assert call.bye().status == 200
        _phone_done(sipp)
        assert_released(gateway)
        # The call's quality: in the log, and its packets counted for /metrics (3 s, both legs, 50 packets/s).
        assert metrics(gateway)["media_packets_received_total"] - received_before > 200
        quality = [line for line in gateway.log_text().splitlines() if f"call {call.call_id}" in line and "quality" in line]
        assert quality and "browser audio: in" in quality[0] and "sip audio: in" in quality[0], quality
    finally:
        yield _tidy(ua, sipp, peer)


@pytest_twisted.inlineCallbacks
def test_browser_video_call_to_a_sip_video_phone_with_keyframes_by_info(
    gateway: Gateway, loopback_only: None, tmp_path: Path
) -> Generator[Any, Any, None]:
    """INTEROP 11, issue 3: a browser (aiortc, audio and VP8 in one BUNDLE) calls a video
    phone (SIPp) that gets audio and video on separate RTP ports and echoes both; the
    browser decodes its own pictures. The phone has no RTCP feedback: its SIP INFO
    picture_fast_update reaches the browser's encoder as a PLI, and the browser's PLI
    reaches the phone as such an INFO (its scenario checks it)."""
    sipp = _registered_phone(gateway, tmp_path, "phone_answers_video.xml", free_media_ports(4))
    peer = start_peer(AIORTC_PEER.with_name("aiortc_video_peer.py"), "VP8")
    ua = WsUserAgent("erin", gateway.web_port)
    try:
        offer = yield peer.receive(timeout=30)
        call = answered_call(ua, PHONE_USER, offer, peer, 6, pli_at=4)
        assert b"m=video" in call.answer.body and b"a=group:BUNDLE 0 1" in call.answer.body, call.answer.body
        result = yield peer.receive(timeout=30)
        assert result["connection"] == "connected", result
        assert result["video_frames"] > 30 and result["video_size"] == [320, 240], result
        assert result["frames"] > 80 and result["rms"] > 300, result
        assert result["keyframe_requests"] == 1, result
        assert call.bye().status == 200
        _phone_done(sipp)
        assert metrics(gateway)["keyframe_requests_total"] >= 1
        assert_released(gateway)
    finally:
        yield _tidy(ua, sipp, peer)


@pytest.mark.parametrize("scenario", ["phone_calls.xml", "phone_calls_delayed_offer.xml"], ids=["offer", "delayed-offer"])
@pytest_twisted.inlineCallbacks
def test_sip_phone_calls_a_browser_audio_both_ways_and_its_bye_ends_the_call(
    gateway: Gateway, loopback_only: None, tmp_path: Path, scenario: str
) -> Generator[Any, Any, None]:
    """Issue 4 §2: a SIP phone (SIPp, digest on the INVITE) calls a registered
    browser; the browser (aiortc) answers; audio flows both ways; the phone's
    BYE reaches the browser and ends the call.
    With a delayed offer (RFC 3261 §13.2.1) the INVITE has no SDP: the
    browser gets a G.711 offer, our 200 carries the offer to the phone (its
    scenario checks it) and the phone's ACK the answer."""
    ua = WsUserAgent("frank", gateway.web_port)
    assert ua.register().status == 200
    peer = start_peer(AIORTC_PEER, "answer")
    sipp = start_sipp(gateway, scenario, tmp_path, [
        "-s", "frank", "-au", PHONE_USER, "-ap", PHONE_PASSWORD,
        "-mi", LOOPBACK, "-mp", str(free_port()), "-rtp_echo", "-timeout", "40s",
    ])
    try:
        invite = ua.receive()
        assert isinstance(invite, Request) and invite.method == "INVITE", invite
        assert b"UDP/TLS/RTP/SAVPF" in invite.body and b"a=setup:actpass" in invite.body
        ua.send(answer_request(invite, 180, "browsertag"))
        peer.send({"offer": invite.body.decode(), "seconds": 4})
        answer = yield peer.receive(timeout=30)
        ua.send(answer_request(invite, 200, "browsertag", answer["answer"]))
        ack = ua.receive()
        assert isinstance(ack, Request) and ack.method == "ACK", ack
        result = yield peer.receive(timeout=30)
        assert result["connection"] == "connected", result
        assert result["frames"] > 80 and result["rms"] > 300, result
        bye = ua.receive()
        assert isinstance(bye, Request) and bye.method == "BYE", bye
        ua.send(answer_request(bye, 200, "browsertag"))
        _phone_done(sipp)
        assert_released(gateway)
    finally:
        yield _tidy(ua, sipp, peer)


@pytest_twisted.inlineCallbacks
def test_a_sip_caller_that_never_acks_the_200_gets_a_bye_and_the_call_is_released(
    loopback_only: None, tmp_path: Path
) -> Generator[Any, Any, None]:
    """RFC 3261 §13.3.1.4: our 200 to a SIP caller is retransmitted for 64*T1; with no ACK
    the call ends: BYE to the caller (its scenario needs it), BYE to the browser, nothing
    left behind. T1 = 50 ms, so the wait is 3.2 s."""
    (tmp_path / "gateway").mkdir()
    with Gateway(tmp_path / "gateway").running("[media]\nport_min = 43400\nport_max = 43499\n", sip="t1 = 0.05") as gateway:
        ua = WsUserAgent("frank", gateway.web_port)
        assert ua.register().status == 200
        peer = start_peer(AIORTC_PEER, "answer")
        sipp = start_sipp(gateway, "phone_calls_no_ack.xml", tmp_path, [
            "-s", "frank", "-au", PHONE_USER, "-ap", PHONE_PASSWORD, "-mi", LOOPBACK, "-mp", str(free_port()), "-timeout", "30s",
        ])
        try:
            invite = ua.receive()
            assert isinstance(invite, Request) and invite.method == "INVITE", invite
            peer.send({"offer": invite.body.decode(), "seconds": 1})
            answer = yield peer.receive(timeout=30)
            answered_at = time.monotonic()
            ua.send(answer_request(invite, 200, "browsertag", answer["answer"]))
            ack = ua.receive()
            assert isinstance(ack, Request) and ack.method == "ACK", ack
            bye = ua.receive()
            assert isinstance(bye, Request) and bye.method == "BYE", bye
            assert time.monotonic() - answered_at >= 3.0  # it waited out 64*T1 first
            ua.send(answer_request(bye, 200, "browsertag"))
            _phone_done(sipp)
            assert_released(gateway)
            assert "no ACK for our 200" in gateway.log_text()
        finally:
            yield _tidy(ua, sipp, peer)


@pytest_twisted.inlineCallbacks
def test_dropped_websocket_parks_the_call_and_the_same_instance_takes_it_back(
    gateway: Gateway, loopback_only: None
) -> Generator[Any, Any, None]:
    """Issue 4 §1 / INTEROP.md 12: an abnormal drop parks the call while media
    flows; the browser reconnects with the same +sip.instance, re-registers,
    and the call goes on (a BYE over the new WebSocket ends it)."""
    peer = start_peer()
    ua = WsUserAgent("grace", gateway.web_port)
    try:
        assert ua.register().status == 200
        offer = yield peer.receive()
        call = answered_call(ua, "echo", offer, peer, 5)
        yield task.deferLater(reactor, 1.0, lambda: None)
        ua.ws.sock.close()  # no close frame: the connection just vanishes
        yield task.deferLater(reactor, 1.0, lambda: None)
        assert metrics(gateway)["calls"] == 1
        back = WsUserAgent("grace", gateway.web_port, instance=ua.instance, cseq=ua.cseq)
        assert back.register().status == 200
        result = yield peer.receive(timeout=30)
        # Media never depended on the WebSocket: the echo kept coming.
        assert result["connection"] == "connected" and result["rms"] > 500, result
        assert metrics(gateway)["calls"] == 1
        call.ua = back
        assert call.bye().status == 200
        assert_released(gateway)
        back.close()
    finally:
        yield peer.stop()


@pytest_twisted.inlineCallbacks
def test_dropped_websocket_that_never_returns_ends_the_call_after_the_grace(
    gateway: Gateway, loopback_only: None
) -> Generator[Any, Any, None]:
    """After the configured grace (3 s here) a parked call is ended and everything released."""
    peer = start_peer()
    ua = WsUserAgent("gone", gateway.web_port)
    try:
        offer = yield peer.receive()
        answered_call(ua, "echo", offer, peer, 1)
        yield peer.receive(timeout=30)
        ua.ws.sock.close()
        yield task.deferLater(reactor, 1.5, lambda: None)
        assert metrics(gateway)["calls"] == 1, "parked, not ended, during the grace"
        yield task.deferLater(reactor, 2.5, lambda: None)
        assert_released(gateway)
    finally:
        yield peer.stop()


@pytest_twisted.inlineCallbacks
def test_browser_calls_a_browser_through_the_relay_audio_both_ways(
    gateway: Gateway, loopback_only: None
) -> Generator[Any, Any, None]:
    """Issue 4 §2: browser to browser, DTLS-SRTP on both legs; each hears the other."""
    callee = WsUserAgent("henry", gateway.web_port)
    caller = WsUserAgent("ida", gateway.web_port)
    caller_peer = start_peer()
    callee_peer = start_peer(AIORTC_PEER, "answer")
    try:
        assert callee.register().status == 200
        offer = yield caller_peer.receive()
        call = caller.invite("henry", offer["offer"])
        invite = callee.receive()
        assert isinstance(invite, Request) and invite.method == "INVITE", invite
        assert b"UDP/TLS/RTP/SAVPF" in invite.body
        assert invite.from_.uri.user == "ida"
        callee.send(answer_request(invite, 180, "henrytag"))
        callee_peer.send({"offer": invite.body.decode(), "seconds": 4})
        callee_answer = yield callee_peer.receive(timeout=30)
        callee.send(answer_request(invite, 200, "henrytag", callee_answer["answer"]))
        answer = caller.final_response()
        assert answer.status == 200, answer
        call.ack(answer)
        caller_peer.send({"answer": answer.body.decode(), "seconds": 4})
        heard_by_caller = yield caller_peer.receive(timeout=30)
        heard_by_callee = yield callee_peer.receive(timeout=30)
        assert heard_by_caller["rms"] > 500 and heard_by_caller["frames"] > 80, heard_by_caller
        assert heard_by_callee["rms"] > 500 and heard_by_callee["frames"] > 80, heard_by_callee
        assert call.bye().status == 200
        assert_released(gateway)
    finally:
        caller.close()
        callee.close()
        yield caller_peer.stop()
        yield callee_peer.stop()


@pytest_twisted.inlineCallbacks
def test_nobody_answers_gives_408_and_the_ringing_browser_gets_cancel(
    gateway: Gateway, loopback_only: None
) -> Generator[Any, Any, None]:
    """Issue 4 §1: 408 after ring_timeout (5 s here); the callee's INVITE is cancelled."""
    callee = WsUserAgent("jack", gateway.web_port)
    caller = WsUserAgent("kate", gateway.web_port)
    peer = start_peer()
    try:
        assert callee.register().status == 200
        offer = yield peer.receive()
        caller.invite("jack", offer["offer"])
        invite = callee.receive()
        assert isinstance(invite, Request) and invite.method == "INVITE"
        callee.send(answer_request(invite, 180, "jacktag"))
        assert caller.receive().status in (100, 180)  # type: ignore[union-attr]
        final = caller.final_response()
        assert final.status == 408, final
        cancel = callee.receive()
        assert isinstance(cancel, Request) and cancel.method == "CANCEL" and cancel.branch == invite.branch, cancel
        callee.send(answer_request(cancel, 200, "jacktag"))
        callee.send(answer_request(invite, 487, "jacktag"))
        assert_released(gateway, timeout=5)
    finally:
        caller.close()
        callee.close()
        yield peer.stop()
