"""An RTP receiver standing in for a SIP phone's media port, decoding RFC 4733 events."""

from __future__ import annotations

import socket
import struct
import threading

from tests.e2e.harness import LOOPBACK


class RtpEvents:
    """A SIP phone's media port: collects the RFC 4733 events that arrive.

    An event packet is told from voice by its size (a 4-byte payload,
    RFC 4733 §2.3) and a dynamic payload type; whatever else arrives counts
    as voice."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.ends: list[tuple[int, int]] = []  # (timestamp, event) of each end packet, in arrival order
        self.other_packets = 0
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(2048)
            except OSError:
                continue
            if len(data) != 16 or data[1] & 0x7F < 96:
                self.other_packets += 1
                continue
            timestamp = struct.unpack_from("!I", data, 4)[0]
            if data[13] & 0x80:
                self.ends.append((timestamp, data[12]))

    def digits(self) -> str:
        """Each event once (its three end packets share a timestamp), in order."""
        seen: list[tuple[int, int]] = []
        for end in self.ends:
            if end not in seen:
                seen.append(end)
        return "".join("0123456789*#ABCD"[event] for _, event in seen)

    def close(self) -> None:
        self._running = False
        self._thread.join(2)
        self.sock.close()
