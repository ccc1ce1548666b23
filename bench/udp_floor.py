"""bench/udp_floor: what forwarding one UDP packet costs before any relay logic.

    .venv/bin/python bench/udp_floor.py                 N = 50, 200, 500: writes bench/results/DATE-udp-floor.md
    .venv/bin/python bench/udp_floor.py --n 200 --seconds 5

The same load as bench/relay.py (N calls, 50 packets/s each way, 92-byte
packets) goes through three forwarders that do nothing but forward: every
datagram on one of a call's two ports is sent on to a fixed address. No
SRTP, no rewriting, no checks, so the figures are a floor under any relay
built the same way:

* ``c``: a C loop, ``epoll_wait`` + ``recvfrom`` + ``sendto`` per packet: the
  kernel's own cost, which rtpengine's userspace relay also pays.
* ``python``: the same loop in Python (``select.epoll``, ``socket.recvfrom``,
  ``socket.sendto``): what Python adds to each system call.
* ``twisted``: telebridge's own socket set (telebridge.media.udp_sockets)
  inside Twisted's reactor, handlers that only ``sendto``: what telebridge's
  relay costs before its legs do any work.

Each forwarder runs pinned to core 0 under ``nice -n 10``, the generator
(this process) on core 1. CPU is the forwarder's utime + stime over the
window divided by the packets it forwarded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.capacity import machine  # noqa: E402
from bench.loadgen.systems import ProcStat, pinned, run_on_load_core  # noqa: E402

PACKET = bytes([0x80, 0x60]) + bytes(90)  # an RTP header and an 80-byte payload
RATE = 50  # packets per second per port, as a 20 ms voice stream
SLOTS = 20
FORWARDERS = ("c", "python", "twisted")

C_FORWARDER = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* argv: ports sink_a sink_b. Ports 2i forward to sink_a, 2i+1 to sink_b. */
int main(int argc, char **argv) {
    int ports = atoi(argv[1]);
    struct sockaddr_in sink[2];
    for (int s = 0; s < 2; s++) {
        sink[s].sin_family = AF_INET;
        sink[s].sin_port = htons(atoi(argv[2 + s]));
        inet_pton(AF_INET, "127.0.0.1", &sink[s].sin_addr);
    }
    int ep = epoll_create1(0);
    for (int i = 0; i < ports; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        socklen_t len = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, len) || getsockname(fd, (struct sockaddr *)&a, &len)) return 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((unsigned long)fd << 1) | (i & 1)};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        printf("%d\n", ntohs(a.sin_port));
    }
    fflush(stdout);
    struct epoll_event events[256];
    char buffer[8192];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int e = 0; e < n; e++) {
            int fd = events[e].data.u64 >> 1, side = events[e].data.u64 & 1;
            struct sockaddr_in from;
            socklen_t len = sizeof from;
            ssize_t got = recvfrom(fd, buffer, sizeof buffer, 0, (struct sockaddr *)&from, &len);
            if (got > 0) sendto(fd, buffer, got, 0, (struct sockaddr *)&sink[side], sizeof sink[side]);
        }
    }
}
"""


def python_forwarder(ports: int, sinks: tuple[tuple[str, int], tuple[str, int]]) -> None:
    poller = select.epoll()
    route = {}
    for i in range(ports):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        poller.register(sock.fileno(), select.EPOLLIN)
        route[sock.fileno()] = (sock.recvfrom, sock.sendto, sinks[i % 2])
        print(sock.getsockname()[1])
    sys.stdout.flush()
    while True:
        for fd, _ in poller.poll():
            receive, send, sink = route[fd]
            data, _source = receive(8192)
            send(data, sink)


class Forward:
    """A handler for the socket set that sends every datagram on to ``sink``."""

    def __init__(self, sink: tuple[str, int]) -> None:
        self.sink = sink
        self.send: Any = None  # the socket's sendto, once it is open

    def __call__(self, data: bytes, source: tuple[str, int]) -> None:
        self.send(data, self.sink)


def twisted_forwarder(ports: int, sinks: tuple[tuple[str, int], tuple[str, int]]) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    from telebridge.media.udp_sockets import UdpSocketSet

    sockets = UdpSocketSet(reactor)  # type: ignore[arg-type]
    for i in range(ports):
        forward = Forward(sinks[i % 2])
        sock = sockets.open("127.0.0.1", 0, forward)
        forward.send = sock.sendto
        print(sock.getsockname()[1])
    sys.stdout.flush()
    reactor.run()  # type: ignore[attr-defined]


def start_forwarder(kind: str, ports: int, sinks: list[socket.socket], workdir: Path) -> tuple[subprocess.Popen[str], list[int]]:
    sink_ports = [str(s.getsockname()[1]) for s in sinks]
    if kind == "c":
        source, binary = workdir / "forward.c", workdir / "forward"
        if not binary.exists():
            source.write_text(C_FORWARDER)
            subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
        command = [str(binary), str(ports), *sink_ports]
    else:
        command = [sys.executable, __file__, "--forwarder", kind, str(ports), *sink_ports]
    process = subprocess.Popen(pinned(0, command), stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    listening = [int(process.stdout.readline()) for _ in range(ports)]
    return process, listening


def drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


def step(kind: str, n: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """N calls through one forwarder: 2N ports, each sent RATE packets a second."""
    sinks = []
    for _ in range(2):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        sinks.append(sink)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    process, ports = start_forwarder(kind, 2 * n, sinks, workdir)
    targets = [("127.0.0.1", p) for p in ports]
    stat = ProcStat(process.pid)
    # As bench/loadgen paces: 20 slots of 1 ms, each port's packet in its slot, sent in a
    # burst; the sinks are read once per slot, not on readiness (no wake-up per packet).
    groups = [targets[s::SLOTS] for s in range(SLOTS)]
    slot = 1.0 / RATE / SLOTS
    try:
        warmup = 2.0
        start = time.monotonic()
        sent = received = 0
        measured: dict[str, float] = {}
        j = 0
        while True:
            target = start + j * slot
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            now = time.monotonic()
            if "cpu0" not in measured and now >= start + warmup:
                measured.update(cpu0=stat.cpu(), t0=now, sent0=sent, received0=received)
            if now >= start + warmup + seconds:
                measured.update(cpu1=stat.cpu(), t1=now, sent1=sent, received1=received)
                break
            received += drain(sinks[0]) + drain(sinks[1])
            for address in groups[j % SLOTS]:
                sender.sendto(PACKET, address)
            sent += len(groups[j % SLOTS])
            j += 1
        time.sleep(0.2)
        received += sum(drain(s) for s in sinks)
    finally:
        process.terminate()
        process.wait(5)
        for s in (*sinks, sender):
            s.close()
    packets = measured["received1"] - measured["received0"]
    offered = measured["sent1"] - measured["sent0"]
    cpu = measured["cpu1"] - measured["cpu0"]
    wall = measured["t1"] - measured["t0"]
    return {
        "forwarder": kind,
        "n": n,
        "offered_pps": offered / wall,
        "loss_pct": 100.0 * max(0, sent - received) / max(sent, 1),
        "cpu_pct": 100.0 * cpu / wall,
        "us_per_packet": cpu / max(packets, 1) * 1e6,
    }


def render(rows: list[dict[str, Any]], date: str, elapsed: float, argv: str) -> str:
    m = machine()
    lines = [
        f"# bench/udp_floor: forwarding alone, {date}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python {m['python']}; "
        f"telebridge {m['telebridge']}. Run took {elapsed / 60:.1f} min: `bench/udp_floor.py {argv}`.",
        "",
        "Each forwarder only forwards (no SRTP, no rewriting, no checks) the load of bench/relay.py:",
        "N calls, two ports each, 50 packets/s on every port. The forwarder is pinned to core 0,",
        "the generator to core 1. CPU is the forwarder's utime + stime over the window divided by the",
        "packets it forwarded. `c`: epoll_wait + recvfrom + sendto in C (the kernel's part, which",
        "rtpengine also pays); `python`: the same loop in Python; `twisted`: telebridge's media",
        "socket set in Twisted's reactor with handlers that only send.",
        "",
        "| forwarder | N | offered pkt/s | loss % | CPU % | µs/pkt |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['forwarder']} | {r['n']} | {r['offered_pps']:.0f} | {r['loss_pct']:.2f} | {r['cpu_pct']:.0f} | {r['us_per_packet']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="50,200,500")
    parser.add_argument("--forwarders", default=",".join(FORWARDERS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--forwarder", nargs="+", help=argparse.SUPPRESS)  # KIND PORTS SINK_A SINK_B, in the child
    args = parser.parse_args(argv)
    if args.forwarder:
        kind, ports, sink_a, sink_b = args.forwarder
        sinks = (("127.0.0.1", int(sink_a)), ("127.0.0.1", int(sink_b)))
        (python_forwarder if kind == "python" else twisted_forwarder)(int(ports), sinks)
        return 0
    run_on_load_core()
    date = datetime.date.today().isoformat()
    out = args.out or REPO / "bench" / "results" / f"{date}-udp-floor.md"
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="udp-floor-") as workdir:
        for n in [int(x) for x in args.n.split(",")]:
            for kind in args.forwarders.split(","):
                row = step(kind, n, args.seconds, Path(workdir))
                print(json.dumps(row))
                rows.append(row)
    out.write_text(render(rows, date, time.monotonic() - started, " ".join(argv if argv is not None else sys.argv[1:])))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
