"""The softphone page (telebridge/web/static) in headless Chromium against a real gateway."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import jwt
import pytest

from tests.e2e.harness import LOOPBACK, PHONE_PASSWORD, PHONE_USER, TOKEN_SECRET, Gateway, free_port, run_sipp, start_sipp
from tests.e2e.rtp_events import RtpEvents
from tests.e2e.softphone import SoftphoneBrowser, SoftphonePage

pytestmark = pytest.mark.e2e

TURN_SECRET = "coturn-static-auth-secret-for-tests"
TURN_URLS = ["turn:127.0.0.1:3478?transport=udp", "turns:localhost:5349?transport=tcp"]

# A desk phone that takes a browser's digits as SIP INFO ([users.NAME] dtmf = "info").
INFO_PHONE_USER = "frank"

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, loopback_only: None) -> Iterator[Gateway]:
    """One telebridge with a [turn] section; its log must hold no traceback."""
    urls = ", ".join(json.dumps(url) for url in TURN_URLS)
    with Gateway(tmp_path_factory.mktemp("gateway")).running(
        f'\n[turn]\nurls = [{urls}]\nsecret = "{TURN_SECRET}"\nttl = 3600\n'
        f'\n[users.{INFO_PHONE_USER}]\npassword = "{PHONE_PASSWORD}"\ndtmf = "info"\n'
    ) as gw:
        yield gw


@pytest.fixture(scope="module")
def browser(loopback_only: None) -> Iterator[SoftphoneBrowser]:
    """One headless Chromium for the module; each page has its own context."""
    with SoftphoneBrowser(tone_hz=440) as b:
        yield b


def _https(gateway: Gateway, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(f"https://{LOOPBACK}:{gateway.web_port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return status, json.loads(body) if body.startswith(b"{") else body.decode()


def _metric(gateway: Gateway, name: str) -> float:
    _, text = _https(gateway, "/metrics")
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name)


def _eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _url(gateway: Gateway, query: str) -> str:
    return f"https://{LOOPBACK}:{gateway.web_port}/?{query}"


def _registers(page: SoftphonePage) -> list[str]:
    return [f["data"] for f in page.frames() if f["dir"] == "sent" and f["data"].startswith("REGISTER ")]


def _header(message: str, name: str) -> str:
    match = re.search(rf"^{name}: ([^\r\n]*)\r?$", message, re.MULTILINE | re.IGNORECASE)
    assert match, (name, message)
    return match.group(1)


def _token(user: str, secret: str = TOKEN_SECRET, ttl: int = 300) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, secret, algorithm="HS256")


def _received_sdp(page: SoftphonePage) -> list[str]:
    """Bodies of the 2xx responses with SDP the page received, oldest first."""
    return [f["data"] for f in page.frames() if f["dir"] == "received" and f["data"].startswith("SIP/2.0 200") and "\r\nv=0" in f["data"]]


def _ufrag(message: str) -> str:
    match = re.search(r"^a=ice-ufrag:(\S+)", message, re.MULTILINE)
    assert match, message
    return match.group(1)


def _no_uncaught_errors(page: SoftphonePage) -> None:
    assert [e for e in page.errors() if e.startswith("uncaught")] == []


def test_dev_token_sign_in_registers_with_outbound(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """?user=NAME&dev=1 signs in; the page shows it and the registrar holds one RFC 5626 binding."""
    _eventually(lambda: _metric(gateway, "registrar_bindings") == 0, 5, "bindings left from before")
    page = browser.open("alice-reg", _url(gateway, "user=alice&dev=1"))
    try:
        page.wait_state(registration="registered")
        assert page.evaluate("document.getElementById('registration').textContent") == "registered"
        assert page.evaluate("document.getElementById('me').textContent") == "alice"
        assert _metric(gateway, "registrar_bindings") == 1
        (register,) = _registers(page)
        instance = page.evaluate("window.softphone.instanceId")
        assert instance == page.evaluate("localStorage.getItem('telebridge.instance-id')")
        assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", instance)
        contact = _header(register, "Contact")
        assert re.match(r"<sip:[a-z0-9]+@[a-z0-9]+\.invalid;transport=ws;ob>", contact), contact
        assert f'+sip.instance="<{instance}>"' in contact and ";reg-id=1" in contact
        assert re.fullmatch(r"SIP/2\.0/WSS [a-z0-9]+\.invalid;branch=z9hG4bK\w+", _header(register, "Via"))
        assert _header(register, "Supported") == "path, outbound"
        assert _header(register, "From").startswith(f"<sip:alice@{LOOPBACK}>;tag=")
        replies = [f["data"] for f in page.frames() if f["dir"] == "received"]
        assert any(r.startswith("SIP/2.0 200") and "Require: outbound" in r for r in replies), replies
        _no_uncaught_errors(page)
    finally:
        page.close()


def test_token_from_the_url_signs_in_and_leaves_the_address_bar(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """?token=JWT (an app server's token) signs in; the token is taken out of the URL."""
    page = browser.open("carol-url", _url(gateway, f"token={_token('carol')}&relay=1"))
    try:
        page.wait_state(registration="registered")
        assert page.evaluate("window.softphone.user") == "carol"
        assert "token=" not in page.evaluate("location.href")
    finally:
        page.close()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: _token("mallory", secret="not-the-gateway-secret-0123456789abcdef"), id="foreign-signature"),
        pytest.param(lambda: _token("mallory", ttl=-60), id="expired"),
    ],
)
def test_refused_token_says_so(gateway: Gateway, browser: SoftphoneBrowser, token: Callable[[], str]) -> None:
    """A token the gateway refuses (401 from /api/ice-servers) reads "the gateway refused your token"."""
    page = browser.open("mallory", _url(gateway, ""))
    try:
        page.sign_in(token())
        page.wait_state(registration="failed")
        assert page.last_error() == "the gateway refused your token"
        assert page.evaluate("document.getElementById('error').textContent") == "the gateway refused your token"
        assert _registers(page) == []
    finally:
        page.close()


def test_dropped_socket_reconnects_with_the_same_instance(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """dropSocket() (close 4000): the page reconnects, re-REGISTERs as the same instance; still one binding."""
    _eventually(lambda: _metric(gateway, "registrar_bindings") == 0, 5, "bindings left from before")
    page = browser.open("dave-drop", _url(gateway, "user=dave&dev=1"))
    try:
        page.wait_state(registration="registered")
        page.drop_socket()
        page.wait_for("window.softphone.state.registration !== 'registered'", timeout=5)
        page.wait_state(registration="registered", timeout=15)
        first, second = _registers(page)
        assert _header(first, "Contact") == _header(second, "Contact")
        assert _header(first, "Call-ID") == _header(second, "Call-ID")
        assert int(_header(second, "CSeq").split()[0]) > int(_header(first, "CSeq").split()[0])
        assert _metric(gateway, "registrar_bindings") == 1
        assert re.search(r"closed \(code 4000, clean True\)", gateway.log_text())
        _no_uncaught_errors(page)
    finally:
        page.close()


def test_closing_the_page_unregisters(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """pagehide sends an un-REGISTER and the browser closes the WebSocket: no binding within 2 s."""
    _eventually(lambda: _metric(gateway, "registrar_bindings") == 0, 5, "bindings left from before")
    page = browser.open("erin-close", _url(gateway, "user=erin&dev=1"))
    page.wait_state(registration="registered")
    assert _metric(gateway, "registrar_bindings") == 1
    going_away = gateway.log_text().count("closed (code 1001, clean True)")
    page.close()
    _eventually(lambda: _metric(gateway, "registrar_bindings") == 0, 2, "binding still there 2 s after the page closed")
    # The un-REGISTER from pagehide reached the gateway (Playwright stops
    # recording a closing page's frames, so the gateway's log is the witness).
    assert gateway.log_text().count("REGISTER erin from") == 2
    _eventually(
        lambda: gateway.log_text().count("closed (code 1001, clean True)") > going_away, 2, "the close was not 1001 (going away)"
    )


def test_sign_out_unregisters_and_closes_cleanly(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """Sign out: REGISTER with expires=0 for our contact only, then close 1000."""
    _eventually(lambda: _metric(gateway, "registrar_bindings") == 0, 5, "bindings left from before")
    page = browser.open("frank-out", _url(gateway, "user=frank&dev=1"))
    try:
        page.wait_state(registration="registered")
        page.sign_out()
        page.wait_state(registration="unregistered")
        assert _metric(gateway, "registrar_bindings") == 0
        last = _registers(page)[-1]
        assert ";expires=0" in _header(last, "Contact") and _header(last, "Expires") == "0"
        assert page.evaluate("document.getElementById('sign-in').hidden") is False
    finally:
        page.close()


def test_call_to_an_unknown_user_says_not_found(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """An INVITE with the complete SDP goes out; the 404 reads "not found" and the call ends."""
    page = browser.open("gina-404", _url(gateway, "user=gina&dev=1"))
    try:
        page.wait_state(registration="registered")
        page.call("nobody-here")
        page.wait_state(call="ended", timeout=20)
        assert page.last_error() == "not found"
        assert page.evaluate("window.softphone.lastStatus") == 404
        invite = next(f["data"] for f in page.frames() if f["dir"] == "sent" and f["data"].startswith("INVITE "))
        assert invite.startswith(f"INVITE sip:nobody-here@{LOOPBACK} SIP/2.0")
        # Complete, not trickled: the candidates are in the INVITE itself.
        assert "a=candidate:" in invite and "udp" in invite
        acks = [f["data"] for f in page.frames() if f["dir"] == "sent" and f["data"].startswith("ACK ")]
        assert len(acks) == 1 and _header(acks[0], "Via") == _header(invite, "Via")
        _no_uncaught_errors(page)
    finally:
        page.close()


def test_ice_servers_hand_out_turn_rest_credentials(gateway: Gateway) -> None:
    """GET /api/ice-servers: coturn use-auth-secret credentials for the token's user; 401 without one."""
    before = int(time.time())
    status, body = _https(gateway, f"/api/ice-servers?token={_token('henry')}")
    assert status == 200
    (turn,) = body["iceServers"]
    assert turn["urls"] == TURN_URLS
    expiry, user = turn["username"].split(":")
    assert user == "henry" and before + 3600 <= int(expiry) <= int(time.time()) + 3600
    expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected
    status, body = _https(gateway, "/api/ice-servers", {"Authorization": f"Bearer {_token('henry')}"})
    assert status == 200 and body["iceServers"][0]["username"].endswith(":henry")
    assert _https(gateway, "/api/ice-servers")[0] == 401
    status, body = _https(gateway, "/api/ice-servers?token=nonsense")
    assert status == 401 and body == {"error": "invalid or expired token"}


def test_static_files_are_served_safely(gateway: Gateway) -> None:
    """The page and its modules are served with JavaScript MIME types; no directory listing."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    base = f"https://{LOOPBACK}:{gateway.web_port}"
    with urllib.request.urlopen(f"{base}/js/sip/message.js", context=context, timeout=5) as r:
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.headers["x-content-type-options"] == "nosniff"
    for path in ("/js/", "/js/sip/", "/missing.js"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{base}{path}", context=context, timeout=5)
        assert error.value.code == 404, path


MESSAGE_CHECKS = """async () => {
  const sip = await import("/js/sip/message.js");
  const results = {};
  const text = [
    "INVITE sip:alice@127.0.0.1 SIP/2.0",
    "v: SIP/2.0/WSS gw.example;branch=z9hG4bKone, SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKtwo",
    "Record-Route: <sip:gw.example;lr>",
    "f: \\"Bob, the builder\\" <sip:bob@example.org>;tag=abc",
    "t: <sip:alice@127.0.0.1>",
    "i: call-1@example",
    "CSeq: 7 INVITE",
    "m: <sip:bob@10.0.0.1;transport=ws;ob>;+sip.instance=\\"<urn:uuid:1234>\\"",
    "Subject: first line",
    "  continued",
    "c: application/sdp",
    "l: 5",
    "",
    "v=0\\r\\nextra bytes beyond Content-Length",
  ].join("\\r\\n");
  const m = sip.parseMessage(text);
  results.method = m.method;
  results.vias = m.headers.getAll("Via").length;
  results.branch = m.branch;
  results.fromDisplay = m.from.display;
  results.fromTag = m.from.params.get("tag");
  results.instance = sip.parseNameAddr(m.headers.get("Contact")).params.get("+sip.instance");
  results.subject = m.headers.get("Subject");
  results.cseq = m.cseq;
  results.sdp = m.sdp;
  const r = sip.buildResponse(m, 180, {toTag: "xyz"});
  results.response = r.toString();
  results.reparsed = sip.parseMessage(r.toString()).to.params.get("tag");
  const errors = [];
  for (const bad of [
    "INVITE sip:a@b SIP/2.0\\r\\n\\r\\n",
    "garbage\\r\\n\\r\\n",
    "INVITE sip:a@b SIP/2.0\\r\\nVia: SIP/2.0/WSS h;branch=z9hG4bKx\\r\\nFrom: <sip:a@b>;tag=1\\r\\nTo: <sip:a@b>\\r\\nCall-ID: c\\r\\nCSeq: 1 BYE\\r\\n\\r\\n",
    "SIP/2.0 200 OK\\r\\nVia: SIP/2.0/WSS h;branch=z9hG4bKx\\r\\nFrom: <sip:a@b>;tag=1\\r\\nTo: <sip:a@b>\\r\\nCall-ID: c\\r\\nCSeq: 1 INVITE\\r\\nContent-Length: 10\\r\\n\\r\\nshort",
  ]) {
    try { sip.parseMessage(bad); errors.push(null); } catch (e) { errors.push(e instanceof sip.SipParseError ? e.message : "other: " + e); }
  }
  results.errors = errors;
  results.uri = sip.parseUri("sip:bob@[::1]:5061;transport=tls;lr");
  results.uri.params = Object.fromEntries(results.uri.params);
  return results;
}"""


def test_sip_message_module_parses_and_builds(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """The page's own SIP parser: compact forms, folding, quoted commas, Content-Length, typed errors."""
    page = browser.open("parser", _url(gateway, ""))
    try:
        r = page.evaluate(MESSAGE_CHECKS)
    finally:
        page.close()
    assert r["method"] == "INVITE" and r["vias"] == 2 and r["branch"] == "z9hG4bKone"
    assert r["fromDisplay"] == "Bob, the builder" and r["fromTag"] == "abc"
    assert r["instance"] == "<urn:uuid:1234>"
    assert r["subject"] == "first line continued"
    assert r["cseq"] == {"seq": 7, "method": "INVITE"}
    assert r["sdp"] == "v=0\r\n"
    assert r["response"].startswith("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/WSS gw.example;branch=z9hG4bKone\r\n")
    assert "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKtwo\r\n" in r["response"]
    assert "Record-Route: <sip:gw.example;lr>\r\n" in r["response"]
    assert "To: <sip:alice@127.0.0.1>;tag=xyz\r\n" in r["response"]
    assert r["response"].endswith("Content-Length: 0\r\n\r\n")
    assert r["reparsed"] == "xyz"
    assert all(e is not None and not e.startswith("other") for e in r["errors"]), r["errors"]
    assert r["uri"] == {"scheme": "sip", "user": "bob", "host": "[::1]", "port": 5061, "params": {"transport": "tls", "lr": None}}


@pytest.fixture(scope="module")
def second_browser(loopback_only: None) -> Iterator[SoftphoneBrowser]:
    """A second Chromium whose microphone plays 660 Hz, for browser-to-browser calls."""
    with SoftphoneBrowser(tone_hz=660) as b:
        yield b


def _sent(page: SoftphonePage, start: str) -> list[str]:
    return [f["data"] for f in page.frames() if f["dir"] == "sent" and f["data"].startswith(start)]


def test_echo_call_hears_its_own_tone_through_hold_and_mute(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """Calling echo: 440 Hz comes back over ICE+DTLS-SRTP; hold and resume are re-INVITEs; BYE ends it."""
    page = browser.open("ivan-echo", _url(gateway, "user=ivan&dev=1"))
    try:
        page.wait_state(registration="registered")
        page.call("echo")
        page.wait_state(call="connected", timeout=20)
        heard = page.frequency(1.5)
        assert abs(heard["hz"] - 440) < 10 and heard["level"] > -60, heard
        stats = page.stats()
        assert stats["inbound"]["ssrc"] and stats["inbound"]["audioLevel"] > 0, stats
        assert stats["pair"]["localType"] == "host" and stats["pair"]["localProtocol"] == "udp", stats
        assert page.evaluate("document.getElementById('call-status').textContent").startswith("Connected")
        assert re.fullmatch(r"\d+:\d\d", page.evaluate("document.getElementById('call-timer').textContent"))
        page.hold()
        assert page.state()["held"] is True and page.state()["call"] == "connected"
        reinvite = _sent(page, "INVITE ")[-1]
        assert "a=sendonly" in reinvite and _header(reinvite, "CSeq") == "2 INVITE"
        page.resume()
        assert page.state()["held"] is False
        assert "a=sendrecv" in _sent(page, "INVITE ")[-1]
        assert page.send_dtmf("1#") is True  # echo takes RFC 4733 events too
        page.mute(True)
        assert page.state()["muted"] is True
        page.mute(False)
        page.hangup()
        page.wait_state(call="ended")
        assert page.last_error() == ""
        (bye,) = _sent(page, "BYE ")
        assert _header(bye, "CSeq") == "4 BYE"
        _eventually(lambda: "ended: BYE from the caller" in gateway.log_text(), 5, "the gateway never saw the BYE")
        _no_uncaught_errors(page)
    finally:
        page.close()


VIDEO_IN = """async () => {
  const report = await window.softphone.pc.getStats();
  let video = null;
  report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") video = s; });
  const element = document.getElementById("remote-video");
  return {framesDecoded: video ? video.framesDecoded : 0, width: element.videoWidth, shown: !element.hidden};
}"""


def test_camera_on_an_echo_call_shows_your_own_video_and_hold_holds_it_too(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """With "Camera" ticked the page offers audio and video in one BUNDLE; echo sends both back:
    the page shows its own (fake) camera and still hears its tone; hold makes both m-lines sendonly."""
    page = browser.open("kate-camera", _url(gateway, "user=kate&dev=1"))
    try:
        page.wait_state(registration="registered")
        page.evaluate("window.softphone.setCamera(true)")
        page.call("echo")
        page.wait_state(call="connected", timeout=20)
        invite = _sent(page, "INVITE ")[0]
        assert "m=video" in invite and "a=group:BUNDLE 0 1" in invite
        page.wait_for("document.getElementById('remote-video').videoWidth > 0", timeout=10)
        heard = page.frequency(1.5)
        assert abs(heard["hz"] - 440) < 10 and heard["level"] > -60, heard
        seen = page.evaluate(VIDEO_IN)
        assert seen["framesDecoded"] > 10 and seen["width"] > 0 and seen["shown"], seen
        page.hold()
        reinvite = _sent(page, "INVITE ")[-1]
        assert reinvite.count("a=sendonly") == 2, reinvite
        page.resume()
        page.hangup()
        page.wait_state(call="ended")
        assert page.evaluate("document.getElementById('remote-video').hidden") is True
        _no_uncaught_errors(page)
    finally:
        page.close()


def test_call_survives_a_dropped_socket(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """A drop mid-call: the page re-registers as the same instance, the gateway hands it the parked call, media goes on, BYE still works."""
    page = browser.open("judy-park", _url(gateway, "user=judy&dev=1"))
    try:
        page.wait_state(registration="registered")
        page.call("echo")
        page.wait_state(call="connected", timeout=20)
        page.drop_socket()
        page.wait_for("window.softphone.state.registration !== 'registered'", timeout=5)
        assert page.state()["call"] == "connected"
        page.wait_state(registration="registered", timeout=15)
        assert page.state()["call"] == "connected"
        heard = page.frequency(1.0)
        assert abs(heard["hz"] - 440) < 10, heard
        # An ICE restart in the parked-and-resumed dialog (RFC 8445 §9): both
        # sides change credentials and the audio goes on.
        first_answer = _received_sdp(page)[0]
        page.restart_ice()
        invites = _sent(page, "INVITE ")
        assert _ufrag(invites[-1]) != _ufrag(invites[0])
        restart_answer = _received_sdp(page)[-1]
        assert _ufrag(restart_answer) != _ufrag(first_answer)
        heard = page.frequency(1.0)
        assert abs(heard["hz"] - 440) < 10, heard
        assert page.stats()["connection"] == "connected"
        page.hangup()
        page.wait_state(call="ended")
        log = gateway.log_text()
        assert "resumed on a new WebSocket" in log
        _eventually(lambda: gateway.log_text().count("ended: BYE from the caller") >= 1, 5, "no BYE after the reconnect")
    finally:
        page.close()


def test_browser_to_browser_ring_answer_reject_cancel_and_bye(
    gateway: Gateway, browser: SoftphoneBrowser, second_browser: SoftphoneBrowser
) -> None:
    """Incoming calls: 180 then answer (200 with SDP), each side hears the other's tone; reject (486: busy), CANCEL while ringing, BYE from the callee."""
    alice = browser.open("alice-b2b", _url(gateway, "user=alice&dev=1"))
    bob = second_browser.open("bob-b2b", _url(gateway, "user=bob&dev=1"))
    try:
        alice.wait_state(registration="registered")
        bob.wait_state(registration="registered")

        alice.call("bob")
        bob.wait_state(call="incoming")
        alice.wait_state(call="ringing")
        assert "alice" in bob.evaluate("document.getElementById('call-status').textContent")
        bob.answer()
        bob.wait_state(call="connected")
        alice.wait_state(call="connected")
        heard_by_alice, heard_by_bob = alice.frequency(1.5), bob.frequency(1.5)
        assert abs(heard_by_alice["hz"] - 660) < 10 and heard_by_alice["level"] > -60, heard_by_alice
        assert abs(heard_by_bob["hz"] - 440) < 10 and heard_by_bob["level"] > -60, heard_by_bob
        assert alice.send_dtmf("12#") is True
        bob.hangup()
        alice.wait_state(call="ended")
        assert alice.last_error() == ""
        assert alice.evaluate("document.getElementById('call-status').textContent") == "Call ended: the other side hung up"

        alice.call("bob")
        bob.wait_state(call="incoming")
        bob.reject()
        alice.wait_state(call="ended")
        assert alice.last_error() == "the number is busy"
        assert alice.evaluate("window.softphone.lastStatus") == 486

        alice.call("bob")
        bob.wait_state(call="incoming")
        alice.wait_state(call="ringing")
        alice.hangup()
        bob.wait_state(call="ended")
        assert bob.evaluate("document.getElementById('call-status').textContent") == "Call ended: the caller hung up"
        assert _header(_sent(alice, "CANCEL ")[-1], "CSeq") == "1 CANCEL"
        _no_uncaught_errors(alice)
        _no_uncaught_errors(bob)
    finally:
        alice.close()
        bob.close()


# The page's user agent against a scripted far side, inside one page: the
# far side's SDP comes from a second RTCPeerConnection, its SIP is written
# here, and everything the user agent sends is captured. This covers what
# the gateway does not send today: a re-INVITE putting the call on hold.
FAR_SIDE = """async () => {
  const { UserAgent } = await import("/js/sip/ua.js");
  const { Call } = await import("/js/call.js");
  const { MediaSession } = await import("/js/media.js");
  const sent = [];
  const ua = new UserAgent({
    user: "alice", domain: "127.0.0.1", instanceId: "urn:uuid:00000000-0000-4000-8000-000000000000",
    transmit: (text) => { sent.push(text); return true; },
  });
  ua.setReady(true);
  let call = null;
  ua.onInvite = (request, entry) => {
    call = new Call(ua, new MediaSession(), () => {});
    call.receiveInvite(request, entry);
  };
  const far = new RTCPeerConnection();
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  far.addTrack(stream.getAudioTracks()[0], stream);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const until = async (check) => { for (let i = 0; i < 200 && !check(); i++) await sleep(25); return check(); };
  const body = (text) => text.slice(text.indexOf("\\r\\n\\r\\n") + 4);
  const startsWith = (prefix) => sent.filter((t) => t.startsWith(prefix));
  let toTag = "";
  const request = (method, cseq, { sdp = "", branch = `z9hG4bK${method}${cseq}`, tag = toTag, callId = "far-1" } = {}) =>
    `${method} sip:alice@x.invalid;transport=ws SIP/2.0\\r\\n` +
    `Via: SIP/2.0/WSS gw.example;branch=${branch}\\r\\n` +
    "From: <sip:bob@127.0.0.1>;tag=far\\r\\n" +
    `To: <sip:alice@127.0.0.1>${tag ? ";tag=" + tag : ""}\\r\\n` +
    `Call-ID: ${callId}\\r\\nCSeq: ${cseq} ${method}\\r\\n` +
    "Contact: <sip:gw@127.0.0.1;transport=ws>\\r\\n" +
    (sdp ? "Content-Type: application/sdp\\r\\n" : "") +
    `Content-Length: ${new TextEncoder().encode(sdp).length}\\r\\n\\r\\n${sdp}`;
  const offer = async (direction) => {
    far.getTransceivers()[0].direction = direction;
    await far.setLocalDescription(await far.createOffer());
    await until(() => far.iceGatheringState === "complete");
    return far.localDescription.sdp;
  };
  const results = {};

  ua.receive(request("INVITE", 1, { sdp: await offer("sendrecv"), tag: "" }));
  results.ringing = startsWith("SIP/2.0 180").length;
  results.state = call.state;
  await call.answer();
  const ok = startsWith("SIP/2.0 200")[0];
  toTag = /^To: .*;tag=([^;\\r]+)/m.exec(ok)[1];
  await far.setRemoteDescription({ type: "answer", sdp: body(ok) });
  ua.receive(request("ACK", 1, { branch: "z9hG4bKack1" }));
  results.answered = call.state;

  sent.length = 0;
  ua.receive(request("INVITE", 2, { sdp: await offer("sendonly") }));
  await until(() => startsWith("SIP/2.0 200").length > 0);
  const reanswer = startsWith("SIP/2.0 200")[0];
  results.reanswerDirection = /a=(sendrecv|sendonly|recvonly|inactive)/.exec(body(reanswer))[1];
  await far.setRemoteDescription({ type: "answer", sdp: body(reanswer) });
  ua.receive(request("ACK", 2, { branch: "z9hG4bKack2" }));
  results.remoteHeld = call.remoteHeld;

  sent.length = 0;
  ua.receive(request("INFO", 3));
  ua.receive(request("OPTIONS", 4));
  ua.receive(request("FROB", 5));
  ua.receive(request("BYE", 1, { callId: "no-such-call" }));
  ua.receive(request("INVITE", 1, { branch: "z9hG4bKINVITE1" }));
  ua.receive(request("CANCEL", 1, { branch: "z9hG4bKnothing", tag: "" }));
  ua.receive(request("BYE", 6));
  results.replies = sent.map((t) => t.split("\\r\\n")[0] + " / " + /^CSeq: (.*)$/m.exec(t)[1].trim());
  results.final = call.state;
  results.note = call.note;
  far.close();
  for (const track of stream.getTracks()) track.stop();
  return results;
}"""


def test_user_agent_answers_a_far_side_reinvite_and_odd_requests(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """RFC 3264 §8.4: a far-side hold re-INVITE gets a fresh answer (recvonly); a repeated INVITE its old
    response (§17.2.1); 405/501/481 as RFC 3261 §8.2.1 and §12.2.2 say."""
    page = browser.open("far-side", _url(gateway, ""))
    try:
        r = page.evaluate(FAR_SIDE, timeout=60)
        _no_uncaught_errors(page)
    finally:
        page.close()
    assert r["ringing"] == 1 and r["state"] == "incoming"
    assert r["answered"] == "connected"
    assert r["reanswerDirection"] == "recvonly"
    assert r["remoteHeld"] is True
    assert r["replies"] == [
        "SIP/2.0 405 Method Not Allowed / 3 INFO",
        "SIP/2.0 200 OK / 4 OPTIONS",
        "SIP/2.0 501 Not Implemented / 5 FROB",
        "SIP/2.0 481 Call/Transaction Does Not Exist / 1 BYE",
        "SIP/2.0 200 OK / 1 INVITE",
        "SIP/2.0 481 Call/Transaction Does Not Exist / 1 CANCEL",
        "SIP/2.0 200 OK / 6 BYE",
    ]
    assert r["final"] == "ended" and r["note"] == "the other side hung up"


@contextlib.contextmanager
def _keypad_call(
    gateway: Gateway, browser: SoftphoneBrowser, tmp_path: Path, phone_user: str, scenario: str, page_user: str
) -> Iterator[tuple[SoftphonePage, RtpEvents]]:
    """A page in a call with a SIPp phone (``scenario``) registered as ``phone_user``, whose RTP
    goes to an RFC 4733 receiver; on leaving, the page hangs up and the scenario must pass."""
    phone_port = free_port()
    registered = run_sipp(gateway, "phone_register.xml", "udp", tmp_path, [
        "-s", phone_user, "-au", phone_user, "-ap", PHONE_PASSWORD, "-key", "contact_port", str(phone_port),
    ])
    assert registered.returncode == 0, registered.stdout + registered.stderr
    events = RtpEvents()
    phone = start_sipp(gateway, scenario, tmp_path, [
        "-p", str(phone_port), "-key", "rtp_port", str(events.port), "-timeout", "40s",
    ])
    page = browser.open(f"{page_user}-keypad", _url(gateway, f"user={page_user}&dev=1"))
    try:
        page.wait_state(registration="registered")
        page.call(phone_user)
        page.wait_state(call="connected", timeout=20)
        yield page, events
        page.hangup()
        page.wait_state(call="ended")
        output, _ = phone.communicate(timeout=15)
        assert phone.returncode == 0, output
    finally:
        page.close()
        events.close()
        if phone.poll() is None:
            phone.kill()


def test_keypad_digits_reach_a_phone_configured_for_info_as_info_requests(
    gateway: Gateway, browser: SoftphoneBrowser, tmp_path: Path
) -> None:
    """Issue 5 acceptance: with dtmf = "info" for the phone, 159#*0 on the page's keypad
    reach it as six INFO requests (application/dtmf-relay), in order, each exactly once
    (the scenario fails on any other request), and no RFC 4733 event reaches its RTP port."""
    with _keypad_call(gateway, browser, tmp_path, INFO_PHONE_USER, "phone_answers_dtmf_info.xml", "erin") as (page, events):
        before = _metric(gateway, "dtmf_digits_total")
        assert page.send_dtmf("159#*0") is True
        _eventually(lambda: _metric(gateway, "dtmf_digits_total") >= before + 6, 15, "six digits sent as INFO")
    assert events.digits() == "", events.ends


def test_keypad_digits_reach_a_sip_phone_as_rfc4733_events(gateway: Gateway, browser: SoftphoneBrowser, tmp_path: Path) -> None:
    """Issue 5 acceptance: 159#*0 on the page's keypad (RTCDTMFSender) reach a SIPp phone
    that negotiated telephone-event as RFC 4733 events, in order, each exactly once."""
    with _keypad_call(gateway, browser, tmp_path, PHONE_USER, "phone_answers_dtmf.xml", "dave") as (page, events):
        assert page.send_dtmf("159#*0") is True
        _eventually(lambda: len(events.digits()) >= 6, 15, f"events so far: {events.digits()!r}")
        assert events.digits() == "159#*0", events.ends
