"""A browser's SIP over WebSocket (RFC 7118) on asyncio: WSS with a token, REGISTER, INVITE, ACK, BYE.

Rules of operation:

* One TLS connection and one WebSocket per user, with ``?token=JWT`` on the
  upgrade and the ``sip`` subprotocol, as JsSIP does; the self-signed
  certificate is not checked (loopback).
* Requests look like JsSIP's: ``.invalid`` Via/Contact hosts, outbound
  ``+sip.instance`` and ``reg-id``. Each request waits for its final
  response (matched by Call-ID and CSeq); provisional ones are skipped.
* Requests from the gateway (BYE, OPTIONS, re-INVITE) get 200; pings get pongs.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import struct
import time
import uuid

import jwt

from telebridge.sip.message import Request, Response, SipParseError, make_response, parse_message

LOOPBACK = "127.0.0.1"


def _client_context() -> ssl.SSLContext:
    """One context for every connection: loading a CA store per connection costs ~40 ms."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


CLIENT_CONTEXT = _client_context()


def token_for(user: str, secret: str, ttl: int = 3600) -> str:
    """An HS256 token as an app server would mint it."""
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, secret, algorithm="HS256")


def _masked(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


class WebSocketClosed(Exception):
    pass


class WsSipUser:
    """One browser user: its WebSocket, its registration and its calls' dialogs."""

    def __init__(self, user: str, port: int, token: str) -> None:
        self.user = user
        self.port = port
        self.token = token
        self.host = f"{uuid.uuid4().hex[:10]}.invalid"
        self.instance = f"<urn:uuid:{uuid.uuid4()}>"
        self.cseq = 0
        self.pending: dict[tuple[str, int], asyncio.Future[Response]] = {}
        self.incoming_byes = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(LOOPBACK, self.port, ssl=CLIENT_CONTEXT)
        key = base64.b64encode(os.urandom(16)).decode()
        self._writer.write(
            (
                f"GET /sip?token={self.token} HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
            ).encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"101":
            raise ConnectionError(f"WebSocket upgrade refused: {head[:60]!r}")
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    def _send_frame(self, payload: bytes, opcode: int) -> None:
        assert self._writer is not None
        key = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        self._writer.write(head + key + _masked(payload, key))

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                b0, b1 = await self._reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self._reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self._reader.readexactly(8))
                payload = await self._reader.readexactly(n)
                opcode = b0 & 0x0F
                if opcode == 9:
                    self._send_frame(payload, 10)
                elif opcode == 8:
                    break
                elif opcode in (1, 2):
                    self._dispatch(payload)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        for future in self.pending.values():
            if not future.done():
                future.set_exception(WebSocketClosed(self.user))

    def _dispatch(self, data: bytes) -> None:
        try:
            message = parse_message(data, stream=False)
        except SipParseError:
            return
        if isinstance(message, Response):
            number, _ = message.cseq
            future = self.pending.get((message.call_id, number))
            if future is not None and message.status >= 200 and not future.done():
                future.set_result(message)
            return
        assert isinstance(message, Request)
        if message.method == "ACK":
            return
        if message.method == "BYE":
            self.incoming_byes += 1
        response = make_response(message, 200, to_tag=uuid.uuid4().hex[:8])
        self._send_frame(response.to_bytes(), 1)

    def _headers(self, method: str, call_id: str, to: str, from_tag: str, to_tag: str | None, cseq: int) -> str:
        to_value = f"<{to}>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"Via: SIP/2.0/WSS {self.host};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
            "Max-Forwards: 70\r\n"
            f"To: {to_value}\r\n"
            f"From: <sip:{self.user}@{LOOPBACK}>;tag={from_tag}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f'Contact: <sip:{self.user}@{self.host};transport=ws;ob>;+sip.instance="{self.instance}";reg-id=1\r\n'
        )

    async def request(
        self, method: str, uri: str, call_id: str, from_tag: str, to_tag: str | None = None,
        extra: str = "", body: str = "", cseq: int | None = None, timeout: float = 30.0,
    ) -> Response:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to = uri if method != "REGISTER" else f"sip:{self.user}@{LOOPBACK}"
        text = (
            f"{method} {uri} SIP/2.0\r\n"
            + self._headers(method, call_id, to, from_tag, to_tag, cseq)
            + extra
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.pending[(call_id, cseq)] = future
        self._send_frame(text.encode(), 1)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop((call_id, cseq), None)

    async def register(self, expires: int = 600) -> Response:
        return await self.request(
            "REGISTER", f"sip:{LOOPBACK}", f"reg-{self.instance[10:22]}", "regtag",
            extra=f"Expires: {expires}\r\nSupported: path, outbound\r\n",
        )

    def ack(self, uri: str, call_id: str, from_tag: str, to_tag: str | None, cseq: int) -> None:
        text = f"ACK {uri} SIP/2.0\r\n" + self._headers("ACK", call_id, uri, from_tag, to_tag, cseq) + "Content-Length: 0\r\n\r\n"
        self._send_frame(text.encode(), 1)

    async def close(self) -> None:
        if self._writer is None:
            return
        try:
            self._send_frame(struct.pack("!H", 1000), 8)
            await self._writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        self._writer.close()
        if self._task is not None:
            self._task.cancel()


class Dialog:
    """A call this user placed."""

    def __init__(self, user: WsSipUser, target: str) -> None:
        self.user = user
        self.uri = f"sip:{target}@{LOOPBACK}"
        self.call_id = f"{uuid.uuid4().hex}@loadgen"
        self.local_tag = uuid.uuid4().hex[:8]
        self.remote_tag: str | None = None
        self.invite_cseq = 0

    async def invite(self, sdp: str, timeout: float = 30.0) -> Response:
        self.user.cseq += 1
        self.invite_cseq = self.user.cseq
        response = await self.user.request("INVITE", self.uri, self.call_id, self.local_tag, body=sdp, cseq=self.invite_cseq, timeout=timeout)
        if response.status == 200:
            self.remote_tag = response.to_tag
            self.user.ack(self.uri, self.call_id, self.local_tag, self.remote_tag, self.invite_cseq)
        return response

    async def bye(self) -> Response:
        return await self.user.request("BYE", self.uri, self.call_id, self.local_tag, self.remote_tag)
