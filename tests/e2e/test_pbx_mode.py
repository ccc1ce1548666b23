"""PBX mode ([upstream]) of a real telebridge process, with SIPp playing the PBX.

The PBX challenges everything telebridge sends it and checks the digest
with the server-side credentials of ``[accounts.alice]`` (SIPp's
``verifyauth``): a scenario only completes when telebridge answered the
challenge correctly and, for calls, when its BYE arrived. Browsers are
tests/e2e/ws_ua.py user agents with aiortc media.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Generator, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.defer import Deferred

from telebridge.sip.message import Request
from tests.e2e.harness import LOOPBACK, Gateway, free_port, start_sipp, stunnel_server
from tests.e2e.peer_process import AIORTC_PEER, LinePeer, start_peer
from tests.e2e.test_calls import answered_call, assert_released, metrics
from tests.e2e.ws_ua import WsUserAgent, answer_request

pytestmark = pytest.mark.e2e

PBX_TIMEOUT = 2.0
APP_SECRET = "telebridge-to-app-server-secret"


@pytest.fixture(scope="module")
def pbx_port() -> int:
    return free_port()


class AppServer(http.server.BaseHTTPRequestHandler):
    """The customer's app server: PBX credentials for bob, none for others, a fault for zed."""

    asked: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        AppServer.asked.append((self.path, self.headers.get("Authorization")))
        user = parse_qs(urlsplit(self.path).query).get("user", [""])[0]
        status, body = {"bob": (200, b'{"username": "1001", "password": "pbx-secret-1001"}'), "zed": (500, b"")}.get(user, (404, b""))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet: the test asserts on what was asked instead."""


@pytest.fixture(scope="module")
def app_server(loopback_only: None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), AppServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_address[1]}/pbx-account"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pbx_port: int, app_server: str) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("gateway")).running(
        "[media]\nport_min = 43200\nport_max = 43299\n"
        f'[upstream]\nproxy = "udp:{LOOPBACK}:{pbx_port}"\ndomain = "pbx.test"\ntimeout = {PBX_TIMEOUT}\n'
        f'accounts_url = "{app_server}"\naccounts_secret = "{APP_SECRET}"\n'
        '[accounts.alice]\nusername = "1001"\npassword = "pbx-secret-1001"\n'
    ) as gw:
        yield gw


def start_pbx(gateway: Gateway, scenario: str, pbx_port: int, workdir: Path, *extra: str) -> subprocess.Popen[str]:
    """SIPp as the PBX, listening on the port telebridge's [upstream] names (waited for: a
    slow start would look like a PBX that is down)."""
    sipp = start_sipp(gateway, scenario, workdir, ["-p", str(pbx_port), "-timeout", "40s", *extra])
    wait_listening(sipp, lambda: udp_port_taken(pbx_port))
    return sipp


def wait_listening(sipp: subprocess.Popen[str], listening: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not listening():
        assert sipp.poll() is None and time.monotonic() < deadline, "SIPp did not start listening"
        time.sleep(0.05)


def call_parties(gateway: Gateway, scenario: str, pbx_port: int, workdir: Path) -> tuple[subprocess.Popen[str], LinePeer, WsUserAgent]:
    """A SIPp PBX echoing RTP, an aiortc browser media peer, and alice's WebSocket UA."""
    pbx = start_pbx(gateway, scenario, pbx_port, workdir, "-mi", LOOPBACK, "-mp", str(free_port()), "-rtp_echo")
    return pbx, start_peer(), WsUserAgent("alice", gateway.web_port)


def hang_up(pbx: subprocess.Popen[str], peer: LinePeer, ua: WsUserAgent) -> Deferred[None]:
    """Whatever a test left running: the UA's socket, the PBX, the media peer."""
    ua.close()
    if pbx.poll() is None:
        pbx.kill()
    return peer.stop()


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def finish(sipp: subprocess.Popen[str], timeout: float = 15.0) -> tuple[int, str]:
    try:
        output, _ = sipp.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        sipp.kill()
        output, _ = sipp.communicate()
    return sipp.returncode, output


def wait_for_gauge(gateway: Gateway, name: str, value: float, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    while (current := metrics(gateway).get(name)) != value and time.monotonic() < deadline:
        time.sleep(0.05)
    return current  # type: ignore[return-value]


def test_browser_registration_is_mirrored_to_the_pbx_with_server_side_credentials(
    gateway: Gateway, pbx_port: int, tmp_path: Path
) -> None:
    """Issue 4 §3: the browser's REGISTER gets 200 only after the PBX's
    (challenged, answered with [accounts.alice]); un-registering the browser
    un-registers upstream (the PBX scenario ends only on Expires: 0)."""
    pbx = start_pbx(gateway, "pbx_registrar.xml", pbx_port, tmp_path)
    ua = WsUserAgent("alice", gateway.web_port)
    try:
        response = ua.register()
        assert response.status == 200, response
        assert "pbx-secret" not in response.to_bytes().decode()
        assert metrics(gateway)["upstream_registrations"] == 1
        assert ua.register(expires=0).status == 200
        code, output = finish(pbx)
        assert code == 0, output
        assert wait_for_gauge(gateway, "upstream_registrations", 0) == 0
        assert metrics(gateway)["upstream_timers"] == 0
    finally:
        ua.close()
        if pbx.poll() is None:
            pbx.kill()


def test_closing_the_last_tab_unregisters_upstream(gateway: Gateway, pbx_port: int, tmp_path: Path) -> None:
    pbx = start_pbx(gateway, "pbx_registrar.xml", pbx_port, tmp_path)
    ua = WsUserAgent("alice", gateway.web_port)
    try:
        assert ua.register().status == 200
        ua.close(1001)
        code, output = finish(pbx)
        assert code == 0, output
        assert wait_for_gauge(gateway, "upstream_registrations", 0) == 0
    finally:
        if pbx.poll() is None:
            pbx.kill()


def test_user_without_pbx_account_is_refused(gateway: Gateway) -> None:
    """Not in [accounts] and the app server says 404: 403, nothing registered anywhere."""
    ua = WsUserAgent("mallory", gateway.web_port)
    try:
        response = ua.register()
        assert response.status == 403 and "no PBX account" in response.reason, response
        assert metrics(gateway)["registrar_bindings"] == 0
        assert AppServer.asked[-1] == ("/pbx-account?user=mallory", f"Bearer {APP_SECRET}")
    finally:
        ua.close()


def test_credentials_from_the_app_server_register_the_user_upstream(gateway: Gateway, pbx_port: int, tmp_path: Path) -> None:
    """Issue 4 §3: bob has no [accounts.bob]; the app server's callback gives his PBX
    credentials (the PBX checks them), and the browser never sees them."""
    pbx = start_pbx(gateway, "pbx_registrar.xml", pbx_port, tmp_path)
    ua = WsUserAgent("bob", gateway.web_port)
    try:
        response = ua.register()
        assert response.status == 200, response
        assert ("/pbx-account?user=bob", f"Bearer {APP_SECRET}") in AppServer.asked
        assert "pbx-secret" not in response.to_bytes().decode()
        assert ua.register(expires=0).status == 200
        code, output = finish(pbx)
        assert code == 0, output
    finally:
        ua.close()
        if pbx.poll() is None:
            pbx.kill()


def test_an_account_service_fault_is_503_not_a_missing_account(gateway: Gateway) -> None:
    ua = WsUserAgent("zed", gateway.web_port)
    try:
        response = ua.register()
        assert response.status == 503 and "account service" in response.reason, response
        assert metrics(gateway)["registrar_bindings"] == 0
    finally:
        ua.close()


@pytest_twisted.inlineCallbacks
def test_browser_call_through_the_pbx_answers_its_challenge_and_audio_flows(
    gateway: Gateway, pbx_port: int, tmp_path: Path
) -> Generator[Any, Any, None]:
    """Issue 4 §3: the call goes to the PBX, whose 401 telebridge answers with
    the user's PBX credentials; audio both ways; the BYE reaches the PBX."""
    pbx, peer, ua = call_parties(gateway, "pbx_answers.xml", pbx_port, tmp_path)
    try:
        offer = yield peer.receive()
        call = answered_call(ua, "1002", offer, peer, 3)
        result = yield peer.receive(timeout=30)
        assert result["connection"] == "connected", result
        assert result["frames"] > 80 and result["rms"] > 300, result
        assert call.bye().status == 200
        code, output = finish(pbx)
        assert code == 0, output
        assert_released(gateway)
    finally:
        yield hang_up(pbx, peer, ua)


@pytest_twisted.inlineCallbacks
def test_pbx_call_rings_every_tab_first_answer_wins_the_other_is_cancelled(
    gateway: Gateway, pbx_port: int, tmp_path: Path
) -> Generator[Any, Any, None]:
    """Issue 4 §3: the PBX's INVITE for alice reaches both of her tabs; the
    first to answer gets the call with audio both ways, the other gets
    CANCEL; the PBX's BYE ends it; closing the tabs un-registers upstream."""
    pbx = start_pbx(gateway, "pbx_calls_browser.xml", pbx_port, tmp_path, "-mi", LOOPBACK, "-mp", str(free_port()), "-rtp_echo")
    first, second = WsUserAgent("alice", gateway.web_port), WsUserAgent("alice", gateway.web_port)
    peer = start_peer(AIORTC_PEER, "answer")
    try:
        assert first.register().status == 200
        assert second.register().status == 200
        assert metrics(gateway)["upstream_registrations"] == 1
        invites = [tab.receive() for tab in (first, second)]
        for tab, invite in zip((first, second), invites):
            assert isinstance(invite, Request) and invite.method == "INVITE", invite
            assert b"UDP/TLS/RTP/SAVPF" in invite.body
            tab.send(answer_request(invite, 180, f"tab{id(tab)}"))
        peer.send({"offer": invites[0].body.decode(), "seconds": 3})
        answer = yield peer.receive(timeout=30)
        first.send(answer_request(invites[0], 200, f"tab{id(first)}", answer["answer"]))
        cancel = second.receive()
        assert isinstance(cancel, Request) and cancel.method == "CANCEL" and cancel.branch == invites[1].branch, cancel
        second.send(answer_request(cancel, 200, f"tab{id(second)}"))
        second.send(answer_request(invites[1], 487, f"tab{id(second)}"))
        ack = first.receive()
        assert isinstance(ack, Request) and ack.method == "ACK", ack
        result = yield peer.receive(timeout=30)
        assert result["connection"] == "connected", result
        assert result["frames"] > 80 and result["rms"] > 300, result
        bye = first.receive()
        assert isinstance(bye, Request) and bye.method == "BYE", bye
        first.send(answer_request(bye, 200, f"tab{id(first)}"))
        assert_released(gateway)
        first.close(1001)
        second.close(1001)
        code, output = finish(pbx)
        assert code == 0, output
        assert wait_for_gauge(gateway, "upstream_registrations", 0) == 0
    finally:
        first.close()
        second.close()
        if pbx.poll() is None:
            pbx.kill()
        yield peer.stop()


@pytest_twisted.inlineCallbacks
def test_telebridge_refreshes_the_session_toward_the_pbx_itself(
    gateway: Gateway, pbx_port: int, tmp_path: Path
) -> Generator[Any, Any, None]:
    """INTEROP.md session timers: the PBX's 2xx makes telebridge the refresher
    (4 s here); its UPDATEs reach the PBX while the browser sends nothing."""
    pbx, peer, ua = call_parties(gateway, "pbx_session_refresh.xml", pbx_port, tmp_path)
    try:
        offer = yield peer.receive()
        call = answered_call(ua, "1002", offer, peer, 5)
        assert "Session-Expires" not in call.answer.to_bytes().decode()  # the browser did not ask
        yield peer.receive(timeout=30)
        assert call.bye().status == 200
        code, output = finish(pbx)
        assert code == 0, output
        assert_released(gateway)
    finally:
        yield hang_up(pbx, peer, ua)


@pytest_twisted.inlineCallbacks
def test_a_pbx_that_stops_refreshing_has_its_call_ended_on_both_sides(
    gateway: Gateway, pbx_port: int, tmp_path: Path
) -> Generator[Any, Any, None]:
    """RFC 4028 §10: the PBX said it refreshes (3 s) and never does: the call
    ends, with BYE to the PBX and to the browser."""
    pbx, peer, ua = call_parties(gateway, "pbx_session_expires.xml", pbx_port, tmp_path)
    try:
        offer = yield peer.receive()
        answered_call(ua, "1002", offer, peer, 1)
        bye = ua.receive()
        assert isinstance(bye, Request) and bye.method == "BYE", bye
        ua.send(answer_request(bye, 200, "alicetag"))
        code, output = finish(pbx)
        assert code == 0, output
        assert_released(gateway)
        assert "session timer expired" in gateway.log_text()
    finally:
        yield hang_up(pbx, peer, ua)


@pytest_twisted.inlineCallbacks
def test_browser_hold_and_resume_reach_the_pbx(gateway: Gateway, pbx_port: int, tmp_path: Path) -> Generator[Any, Any, None]:
    """Issue 4 §1: the browser's hold (re-INVITE a=sendonly) and resume go on to
    the PBX as re-INVITEs of its own dialog, so the PBX can play music on
    hold; the browser gets its answers from telebridge."""
    pbx, peer, ua = call_parties(gateway, "pbx_hold.xml", pbx_port, tmp_path)
    try:
        offer = yield peer.receive()
        call = answered_call(ua, "1002", offer, peer, 1)
        yield peer.receive(timeout=30)
        held = _next_version(offer["offer"]).replace("a=sendrecv", "a=sendonly")
        response = call.reinvite(held)
        assert response.status == 200 and b"a=recvonly" in response.body, response
        response = call.reinvite(_next_version(held).replace("a=sendonly", "a=sendrecv"))
        assert response.status == 200 and b"a=sendrecv" in response.body, response
        assert call.bye().status == 200
        code, output = finish(pbx)
        assert code == 0, output
        assert_released(gateway)
    finally:
        yield hang_up(pbx, peer, ua)


def _next_version(sdp: str) -> str:
    """The same SDP with its o= version one higher, as a browser's re-offer has."""
    lines = sdp.split("\r\n")
    for i, line in enumerate(lines):
        if line.startswith("o="):
            fields = line.split()
            fields[2] = str(int(fields[2]) + 1)
            lines[i] = " ".join(fields)
    return "\r\n".join(lines)


# The PBX-down tests come last: telebridge keeps retransmitting the requests
# nobody answered (Timers E and A, up to 32 s), which a SIPp "PBX" started
# later on the same port would receive as strays.


def test_pbx_down_gives_503_to_register(gateway: Gateway) -> None:
    """Issue 4 acceptance: the PBX is down -> 503 within the configured timeout; nothing is left."""
    ua = WsUserAgent("alice", gateway.web_port)
    try:
        started = time.monotonic()
        response = ua.register()
        assert response.status == 503, response
        assert time.monotonic() - started < PBX_TIMEOUT + 2
    finally:
        ua.close()
    assert metrics(gateway)["registrar_bindings"] == 0
    assert wait_for_gauge(gateway, "upstream_timers", 0) == 0
    assert_released(gateway)


@pytest_twisted.inlineCallbacks
def test_pbx_down_gives_503_to_a_real_call(gateway: Gateway) -> Generator[Any, Any, None]:
    peer = start_peer()
    ua = WsUserAgent("alice", gateway.web_port)
    try:
        offer = yield peer.receive()
        started = time.monotonic()
        ua.invite("1002", offer["offer"])
        response = ua.final_response()
        assert response.status == 503, response
        assert time.monotonic() - started < PBX_TIMEOUT + 2
        assert_released(gateway)
    finally:
        ua.close()
        yield peer.stop()


@pytest.fixture
def tcp_pbx(tmp_path: Path) -> Iterator[tuple[Gateway, int]]:
    """A gateway whose PBX link is TCP, and the port its SIPp PBX listens on."""
    port = free_port(both=False)
    gw = Gateway(tmp_path / "gateway-tcp")
    gw.workdir.mkdir()
    gw.write_config(
        f'[upstream]\nproxy = "tcp:{LOOPBACK}:{port}"\ndomain = "pbx.test"\ntimeout = {PBX_TIMEOUT}\n'
        '[accounts.alice]\nusername = "1001"\npassword = "pbx-secret-1001"\n'
    )
    gw.start()
    yield gw, port
    gw.stop()
    assert "Traceback" not in gw.log_text()


@pytest_twisted.inlineCallbacks
def test_pbx_link_over_tcp_registers_and_calls(tcp_pbx: tuple[Gateway, int], tmp_path: Path) -> Generator[Any, Any, None]:
    """[upstream] proxy = "tcp:...": telebridge connects to the PBX (RFC 3261
    §18.1.1), registers over the connection and places the call on it."""
    gateway, port = tcp_pbx
    yield _register_then_call(gateway, port, tmp_path, "pbx_answers.xml")


def tcp_port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((LOOPBACK, port)) == 0


@pytest.fixture
def tls_pbx(tmp_path: Path) -> Iterator[tuple[Gateway, int]]:
    """A gateway whose PBX link is TLS (stunnel in front of a TCP SIPp PBX) with
    [media] sip_srtp = "tls", and the port that SIPp PBX listens on behind stunnel."""
    port = free_port(both=False)
    with stunnel_server(tmp_path, port) as tls_port:
        gw = Gateway(tmp_path / "gateway-tls")
        gw.workdir.mkdir()
        gw.write_config(
            f'[upstream]\nproxy = "tls:{LOOPBACK}:{tls_port}"\ndomain = "pbx.test"\ntimeout = {PBX_TIMEOUT}\n'
            '[accounts.alice]\nusername = "1001"\npassword = "pbx-secret-1001"\n'
            '[media]\nsip_srtp = "tls"\n'
        )
        gw.start()
        yield gw, port
        gw.stop()
    assert "Traceback" not in gw.log_text()


@pytest_twisted.inlineCallbacks
def test_pbx_link_over_tls_carries_sdes_srtp(tls_pbx: tuple[Gateway, int], tmp_path: Path) -> Generator[Any, Any, None]:
    """[upstream] proxy = "tls:..." with sip_srtp = "tls": telebridge registers and calls over
    TLS, offers the PBX RTP/SAVP with an SDES key (the scenario fails otherwise), and the
    PBX's SRTP echo of the browser's audio is unprotected and reaches the browser."""
    gateway, port = tls_pbx
    yield _register_then_call(gateway, port, tmp_path, "pbx_answers_srtp.xml")


@defer.inlineCallbacks
def _register_then_call(gateway: Gateway, port: int, tmp_path: Path, scenario: str) -> Generator[Any, Any, None]:
    """Over a TCP-based PBX link (SIPp on ``port``): alice registers and unregisters through
    telebridge, then calls 1002, whom ``scenario`` answers with an RTP echo; the browser
    (aiortc) must hear its own audio back, and the call must end cleanly."""
    registrar = start_sipp(gateway, "pbx_registrar.xml", tmp_path, ["-t", "t1", "-p", str(port), "-timeout", "40s"])
    ua = WsUserAgent("alice", gateway.web_port)
    peer = start_peer()
    try:
        wait_listening(registrar, lambda: tcp_port_listening(port))
        assert ua.register().status == 200
        assert ua.register(expires=0).status == 200
        code, output = finish(registrar)
        assert code == 0, output
        pbx = start_sipp(gateway, scenario, tmp_path, [
            "-t", "t1", "-p", str(port), "-timeout", "40s", "-mi", LOOPBACK, "-mp", str(free_port()), "-rtp_echo",
        ])
        wait_listening(pbx, lambda: tcp_port_listening(port))
        offer = yield peer.receive()
        call = answered_call(ua, "1002", offer, peer, 2)
        result = yield peer.receive(timeout=30)
        assert result["frames"] > 50 and result["rms"] > 300, result
        assert call.bye().status == 200
        code, output = finish(pbx)
        assert code == 0, output
        assert_released(gateway)
    finally:
        yield hang_up(registrar, peer, ua)
