"""A small blocking WebSocket client (RFC 6455) over TLS, for tests.

Written out by hand so that tests can also send what a correct library
never would: garbage frames, a wrong subprotocol, a bad token.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct


class HandshakeRefused(Exception):
    """The server answered the upgrade with a non-101 status."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status}")
        self.status = status
        self.head = head


class WebSocket:
    """One client connection; frames are masked as RFC 6455 §5.3 requires."""

    def __init__(self, host: str, port: int, path: str, protocol: str | None = "sip", timeout: float = 5.0) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            self.sock.close()
            raise HandshakeRefused(status, head)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed during handshake")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        """Send one final, masked frame (opcode 1 text, 2 binary, 8 close)."""
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text: str | bytes) -> None:
        """Send one SIP message in one text frame (RFC 7118 §5.2)."""
        self.send_frame(text.encode() if isinstance(text, str) else text, opcode=1)

    def recv_message(self) -> bytes:
        """The next data frame's payload; pings are answered, close raises."""
        while True:
            b0, b1 = self._read_exact(2)
            opcode = b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read_exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read_exact(8))
            payload = self._read_exact(n)
            if opcode == 9:
                self.send_frame(payload, opcode=10)
            elif opcode == 8:
                raise ConnectionError(f"server closed the WebSocket: {payload!r}")
            elif opcode in (1, 2):
                return payload

    def close(self, code: int = 1000) -> None:
        """Send a close frame and drop the connection (once: a second close does nothing)."""
        if self.sock.fileno() == -1:
            return
        try:
            self.send_frame(struct.pack("!H", code), opcode=8)
        finally:
            self.sock.close()
