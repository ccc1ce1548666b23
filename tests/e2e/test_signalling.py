"""telebridge under twistd, driven by SIPp and raw clients on loopback."""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.request
import ssl
import uuid
from pathlib import Path
from typing import Iterator

import jwt
import pytest

from tests.e2e.harness import (
    LOOPBACK,
    PHONE_PASSWORD,
    PHONE_USER,
    TOKEN_SECRET,
    Gateway,
    options_request,
    options_status,
    run_sipp,
    status_of,
)
from tests.e2e.wsclient import HandshakeRefused, WebSocket

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One telebridge for the module; its log must hold no traceback."""
    with Gateway(tmp_path_factory.mktemp("gateway")).running() as gw:
        yield gw


def app_server_token(user: str, ttl: int = 60, secret: str = TOKEN_SECRET) -> str:
    """A token minted as an app server would, with PyJWT and the shared secret."""
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, secret, algorithm="HS256")


def ws_register_request(user: str, cseq: int = 1, expires: int = 300, call_id: str = "wscall-1") -> str:
    """What JsSIP sends to register over a WebSocket (RFC 7118 §5, RFC 5626)."""
    instance = "<urn:uuid:8c7e8a5e-9c2b-4f2a-9b8e-1d2f3a4b5c6d>"
    return (
        f"REGISTER sip:{LOOPBACK} SIP/2.0\r\n"
        f"Via: SIP/2.0/WSS abcdef.invalid;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 69\r\n"
        f"To: <sip:{user}@{LOOPBACK}>\r\n"
        f"From: <sip:{user}@{LOOPBACK}>;tag=ws{cseq}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f'Contact: <sip:k3j2@abcdef.invalid;transport=ws>;+sip.instance="{instance}";reg-id=1;expires={expires}\r\n'
        "Supported: path, gruu, outbound\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def metric(gateway: Gateway, name: str) -> float:
    """Read a value from /metrics, summed over its labels."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://{LOOPBACK}:{gateway.web_port}/metrics", context=context, timeout=5) as r:
        text = r.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name]
    return sum(values)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_gets_200_over_every_transport(gateway: Gateway, tmp_path: Path, transport: str) -> None:
    """RFC 3261 §11: SIPp's OPTIONS is answered 200 over UDP, TCP and TLS."""
    result = run_sipp(gateway, "options.xml", transport, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_with_digest_gets_401_then_200(gateway: Gateway, tmp_path: Path, transport: str) -> None:
    """RFC 3261 §22: a SIP phone registers to the embedded registrar with digest."""
    result = run_sipp(
        gateway, "register_digest.xml", transport, tmp_path,
        ["-s", PHONE_USER, "-au", PHONE_USER, "-ap", PHONE_PASSWORD],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_register_with_wrong_password_never_gets_200(gateway: Gateway, tmp_path: Path) -> None:
    """A wrong password is challenged, then refused with 403; 200 would fail SIPp."""
    result = run_sipp(
        gateway, "register_wrong_password.xml", "udp", tmp_path,
        ["-s", PHONE_USER, "-au", PHONE_USER, "-ap", "not the password"],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_websocket_with_valid_token_registers_and_close_ends_the_binding(gateway: Gateway) -> None:
    """RFC 7118: REGISTER over wss with a token gets 200; closing the socket ends it."""
    before = metric(gateway, "registrar_bindings")
    ws = WebSocket(LOOPBACK, gateway.web_port, f"/sip?token={app_server_token('alice')}")
    ws.send_text(ws_register_request("alice"))
    reply = ws.recv_message()
    assert status_of(reply) == 200, reply
    assert b"Require: outbound" in reply
    # RFC 7118 §5.3 / RFC 3261 §18.2.1: the Via of a WSS flow records where it came from.
    assert b"Via: SIP/2.0/WSS abcdef.invalid;branch=" in reply and b";received=127.0.0.1" in reply
    assert metric(gateway, "registrar_bindings") == before + 1
    ws.close(1001)
    deadline = time.monotonic() + 5
    while metric(gateway, "registrar_bindings") != before:
        assert time.monotonic() < deadline, "binding outlived its WebSocket"
        time.sleep(0.05)


def test_websocket_register_as_another_user_gets_403(gateway: Gateway) -> None:
    """Issue 2 §6: the token's sub is the only user the browser may register as."""
    ws = WebSocket(LOOPBACK, gateway.web_port, f"/sip?token={app_server_token('alice')}")
    ws.send_text(ws_register_request("mallory"))
    assert status_of(ws.recv_message()) == 403
    ws.close()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        app_server_token("alice", ttl=-30),
        app_server_token("alice", secret="some other secret of a decent length"),
    ],
    ids=["missing", "garbage", "expired", "bad-signature"],
)
def test_websocket_upgrade_with_bad_token_is_refused_with_401(gateway: Gateway, token: str) -> None:
    """Issue 2 §6: no valid token, no WebSocket: HTTP 401."""
    with pytest.raises(HandshakeRefused) as refused:
        WebSocket(LOOPBACK, gateway.web_port, f"/sip?token={token}")
    assert refused.value.status == 401


def test_websocket_upgrade_without_sip_subprotocol_is_refused(gateway: Gateway) -> None:
    """RFC 7118 §4.1: the sip subprotocol is required."""
    with pytest.raises(HandshakeRefused) as refused:
        WebSocket(LOOPBACK, gateway.web_port, f"/sip?token={app_server_token('alice')}", protocol=None)
    assert refused.value.status == 400


def test_malformed_request_over_tcp_gets_400_with_reason(gateway: Gateway) -> None:
    """DESIGN.md "Bad input": a malformed request over a stream gets 400 and a reason."""
    bad = options_request(gateway.sip_port, "TCP").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    with socket.create_connection((LOOPBACK, gateway.sip_port), timeout=5) as sock:
        sock.sendall(bad)
        reply = sock.recv(65536)
    assert reply.startswith(b"SIP/2.0 400 Bad Request (CSeq method does not match"), reply


def test_malformed_request_over_websocket_gets_400_with_reason(gateway: Gateway) -> None:
    """The same over a WebSocket frame (RFC 7118 §5.2: one message per frame)."""
    ws = WebSocket(LOOPBACK, gateway.web_port, f"/sip?token={app_server_token('alice')}")
    ws.send_text(ws_register_request("alice").replace("CSeq: 1 REGISTER", "CSeq: x REGISTER"))
    reply = ws.recv_message()
    assert reply.startswith(b"SIP/2.0 400 Bad Request (bad CSeq"), reply
    ws.close()


def _mutations(rng: random.Random, seed_messages: list[bytes], count: int) -> Iterator[bytes]:
    for i in range(count):
        if i % 4 == 0:
            yield rng.randbytes(rng.randrange(1, 1400))
            continue
        data = bytearray(rng.choice(seed_messages))
        for _ in range(rng.randrange(1, 8)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data))
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                del data[pos : pos + rng.randrange(1, 20)]
            else:
                data[pos:pos] = rng.randbytes(rng.randrange(1, 20))
            if not data:
                data = bytearray(b"x")
        yield bytes(data)


def test_1000_random_and_mutated_datagrams_leave_the_service_answering(gateway: Gateway) -> None:
    """Issue 2 acceptance: garbage on the UDP port changes nothing else."""
    rng = random.Random(20261124)
    seeds = [options_request(gateway.sip_port), ws_register_request("bob").encode()]
    errors_before = metric(gateway, "sip_parse_errors_total")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, datagram in enumerate(_mutations(rng, seeds, 1000)):
            sock.sendto(datagram, (LOOPBACK, gateway.sip_port))
            if i % 20 == 19:
                time.sleep(0.005)  # pace it, so the kernel does not drop most of it
    assert options_status(gateway.sip_port) == 200
    assert gateway.alive()
    # The garbage really reached the parser (and was refused there).
    assert metric(gateway, "sip_parse_errors_total") - errors_before > 500


def test_100_garbage_frames_on_a_websocket_leave_the_service_answering(gateway: Gateway) -> None:
    """Issue 2 acceptance: garbage frames get 400s; the same socket still works."""
    rng = random.Random(7118)
    ws = WebSocket(LOOPBACK, gateway.web_port, f"/sip?token={app_server_token('carol')}")
    seeds = [ws_register_request("carol").encode()]
    for frame in _mutations(rng, seeds, 100):
        ws.send_frame(frame, opcode=2)
    ws.send_text(ws_register_request("carol", cseq=2, call_id="wscall-final"))
    # Every reply before ours is a 400 (or a 4xx for a mutated but valid REGISTER).
    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline
        reply = ws.recv_message()
        if b"CSeq: 2 REGISTER" in reply and b"tag=ws2" in reply:
            break
    assert status_of(reply) == 200
    ws.close()
    assert options_status(gateway.sip_port) == 200


def test_dev_token_is_served_to_loopback_and_works(gateway: Gateway) -> None:
    """GET /api/dev-token hands out a token the WebSocket accepts."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"https://{LOOPBACK}:{gateway.web_port}/api/dev-token?user=dave"
    with urllib.request.urlopen(url, context=context, timeout=5) as r:
        token = json.loads(r.read())["token"]
    ws = WebSocket(LOOPBACK, gateway.web_port, f"/sip?token={token}")
    ws.send_text(ws_register_request("dave"))
    assert status_of(ws.recv_message()) == 200
    ws.close()
