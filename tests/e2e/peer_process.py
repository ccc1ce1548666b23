"""Peers that run as child processes speaking JSON lines (aiortc_peer.py, chromium_peer.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Generator

from twisted.internet import defer, protocol, reactor

AIORTC_PEER = Path(__file__).with_name("aiortc_peer.py")
CHROMIUM_PEER = Path(__file__).with_name("chromium_peer.py")


class LinePeer(protocol.ProcessProtocol):
    """The aiortc script: JSON lines in and out."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: defer.DeferredQueue[bytes] = defer.DeferredQueue()
        self.stderr = b""
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.finished = False

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.lines.put(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self.finished = True
        self.lines.put(b"")
        self.ended.callback(None)

    def stop(self) -> defer.Deferred[None]:
        """Kill the peer if it is still running (a failed test never answered it); fires when it is gone."""
        if not self.finished:
            try:
                self.transport.signalProcess("KILL")  # type: ignore[union-attr]
            except Exception:
                pass  # it ended on its own meanwhile
        return self.ended

    def send(self, obj: dict[str, Any]) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def receive(self, timeout: float = 20.0) -> Generator[Any, Any, dict[str, Any]]:
        line = yield self.lines.get().addTimeout(timeout, reactor)
        if not line:
            raise AssertionError(f"aiortc peer ended early:\n{self.stderr.decode(errors='replace')}")
        return json.loads(line)


def start_peer(script: Path = AIORTC_PEER, *args: str) -> LinePeer:
    peer = LinePeer()
    reactor.spawnProcess(peer, sys.executable, [sys.executable, str(script), *args], env=None)  # type: ignore[attr-defined]
    return peer
