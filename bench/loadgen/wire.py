"""What both generator processes share: media sockets, packet marks, pacing, records, control lines.

Rules of operation:

* One UDP socket per process carries the media of all its calls; calls are
  told apart by the peer's address (the relay gives every leg its own
  port). The socket has large buffers and kernel receive timestamps
  (SO_TIMESTAMPNS, CLOCK_REALTIME), so a late read by this process never
  counts as latency through the relay.
* Send times are ``time.time_ns()`` taken right before ``sendto``: the same
  clock as the kernel's receive stamps, on the same machine.
* Packet k of call i is sent at ``start + k * 20 ms + phase(i)``: calls are
  spread over the 20 ms in 1 ms slots, as independent browsers would be,
  instead of arriving at the relay in one burst.
* Records are flat ``array('q')`` rows written to ``.npy`` files: sends as
  ``tx[i, k]`` (0 = not sent), receives as rows ``(i, k, rx_ns)``.
* Control: one JSON object per line on stdin (commands) and stdout (events).
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import struct
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

PTIME = 0.020
SLOTS = 20
#: Payload mark of relayed packets: caller's call index, packet number.
MARK = struct.Struct("!II")
SEQ_TS = struct.Struct("!HI")
TIMESPEC = struct.Struct("@qq")
SO_TIMESTAMPNS = 35
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
ANC_SIZE = socket.CMSG_SPACE(TIMESPEC.size)
LOOPBACK = "127.0.0.1"
OPUS_PT = 111
PCMU_PT = 0
#: RTP timestamp units per 20 ms packet.
TS_STEP = {OPUS_PT: 960, PCMU_PT: 160}


def media_socket(port: int = 0, buffer_bytes: int = 32 << 20) -> socket.socket:
    """A non-blocking loopback UDP socket with big buffers and kernel receive timestamps."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, port))
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, buffer_bytes)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, buffer_bytes)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    return sock


def even_port_pair() -> tuple[socket.socket, socket.socket]:
    """A media socket on an even port and a plain socket on the odd port above (RTCP)."""
    for _ in range(100):
        probe = media_socket()
        port = probe.getsockname()[1]
        if port % 2 == 0:
            try:
                rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rtcp.bind((LOOPBACK, port + 1))
            except OSError:
                probe.close()
                continue
            rtcp.setblocking(False)
            return probe, rtcp
        probe.close()
    raise RuntimeError("no even/odd port pair found")


def kernel_time(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The SO_TIMESTAMPNS receive time in ns, or now when the kernel gave none."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanos = TIMESPEC.unpack_from(data)
            return seconds * 1_000_000_000 + nanos
    return time.time_ns()


def rtp_header(payload_type: int, seq: int, timestamp: int, ssrc: int, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def cpu_seconds() -> float:
    """This process's user + system CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_split() -> tuple[float, float]:
    """This process's (user, system) CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def runqueue_wait() -> float:
    """Seconds this process's threads were runnable but waited for a CPU."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Records:
    """Send times ``tx[i, k]`` and receive rows ``(i, k, rx_ns)`` of one process."""

    def __init__(self, calls: int, packets: int) -> None:
        self.calls = calls
        self.packets = packets
        self.tx = array("q", bytes(8 * calls * packets))
        self.rx = array("q")
        self.lag = array("q")  # how late each 1 ms send slot ran, ns

    def save(self, directory: Path, side: str) -> None:
        np.save(directory / f"tx-{side}.npy", np.frombuffer(self.tx, dtype=np.int64).reshape(self.calls, self.packets))
        np.save(directory / f"rx-{side}.npy", np.frombuffer(self.rx, dtype=np.int64).reshape(-1, 3))

    def lag_summary(self) -> dict[str, float]:
        lag = np.frombuffer(self.lag, dtype=np.int64) / 1e6 if len(self.lag) else np.zeros(1)
        return {"send_lag_p99_ms": float(np.percentile(lag, 99)), "send_lag_max_ms": float(lag.max())}


async def paced(
    start_ns: int, packets: int, calls: Sequence[Any], send: Callable[[Any, int], None], records: Records,
    poll: Callable[[], None], drain: float,
) -> None:
    """Call ``send(call, k)`` for k in range(packets), each call at its phase in the 20 ms.

    ``poll()`` (read everything the socket holds) runs at every 1 ms slot
    instead of on socket readiness, for ``drain`` s past the last send:
    one wake-up per slot, not one per packet. The kernel's receive stamps
    keep the 0-1 ms wait out of the latency.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + (start_ns - time.time_ns()) / 1e9
    groups = [list(calls[s::SLOTS]) for s in range(SLOTS)]
    slot = PTIME / SLOTS
    lag = records.lag
    for j in range(packets * SLOTS):
        target = start + j * slot
        delay = target - loop.time()
        if delay > 0.0002:
            await asyncio.sleep(delay)
        elif j % SLOTS == 0:
            await asyncio.sleep(0)  # let receives in even when behind
        lag.append(int((loop.time() - target) * 1e9))
        poll()
        k = j // SLOTS
        for call in groups[j % SLOTS]:
            send(call, k)
    end = loop.time() + drain
    while loop.time() < end:
        await asyncio.sleep(slot)
        poll()


def emit(event: str, **fields: Any) -> None:
    """One event line to the orchestrator."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def commands() -> asyncio.StreamReader:
    """Stdin as a stream of command lines."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def next_command(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise SystemExit("orchestrator went away")
    return json.loads(line)


def tone(rate: int, samples: int, frequency: float = 440.0, amplitude: float = 8000.0) -> np.ndarray:
    """A sine tone as int16 PCM."""
    t = np.arange(samples) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
