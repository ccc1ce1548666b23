"""rtpengine's ng control protocol: bencode over UDP, one request per cookie.

Rules of operation:

* A message is ``COOKIE SPACE BENCODED-DICT``; the reply carries the same
  cookie. Requests are retried every ``timeout`` s up to ``tries`` times
  (rtpengine answers a retransmission from its cookie cache).
* ``result`` other than ``ok``/``pong`` raises :class:`NgError` with
  ``error-reason``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any


class NgError(Exception):
    """rtpengine answered ``error`` (or not at all)."""


def bencode(value: Any) -> bytes:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray)):
        return b"%d:%s" % (len(value), bytes(value))
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(str(k)) + bencode(v) for k, v in value.items()) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value; byte strings become str (UTF-8, replacing errors)."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after bencoded value")
    return value


def _decode(data: bytes, i: int) -> tuple[Any, int]:
    kind = data[i : i + 1]
    if kind == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if kind == b"l":
        i += 1
        items = []
        while data[i : i + 1] != b"e":
            item, i = _decode(data, i)
            items.append(item)
        return items, i + 1
    if kind == b"d":
        i += 1
        out: dict[str, Any] = {}
        while data[i : i + 1] != b"e":
            key, i = _decode(data, i)
            out[key], i = _decode(data, i)
        return out, i + 1
    if kind.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        start = colon + 1
        return data[start : start + n].decode("utf-8", "replace"), start + n
    raise ValueError(f"bad bencode at byte {i}")


class NgClient(asyncio.DatagramProtocol):
    """Talks to one rtpengine over UDP."""

    def __init__(self) -> None:
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def connect(cls, host: str, port: int) -> NgClient:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(cls, remote_addr=(host, port))
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cookie, _, body = data.partition(b" ")
        future = self.pending.get(cookie.decode(errors="replace"))
        if future is None or future.done():
            return
        try:
            future.set_result(bdecode(body))
        except (ValueError, IndexError) as e:
            future.set_exception(NgError(f"undecodable reply: {e}"))

    async def request(self, message: dict[str, Any], timeout: float = 2.0, tries: int = 5) -> dict[str, Any]:
        assert self.transport is not None
        cookie = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[cookie] = future
        data = cookie.encode() + b" " + bencode(message)
        try:
            for _ in range(tries):
                self.transport.sendto(data)
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), timeout)
                    break
                except asyncio.TimeoutError:
                    continue
            else:
                raise NgError(f"no reply to {message.get('command')} after {tries} tries")
        finally:
            self.pending.pop(cookie, None)
        if reply.get("result") not in ("ok", "pong"):
            raise NgError(f"{message.get('command')}: {reply.get('error-reason', reply)}")
        return reply
