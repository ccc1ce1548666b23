"""The two systems under test, each started in the foreground on loopback and pinned to one core.

* telebridge: ``twistd -n telebridge --config FILE`` with a bench
  configuration (loopback listeners on free ports, one SIP user for the
  phone process, a token secret for the browsers, a large media port
  range, media timeout long enough for slow set-ups).
* rtpengine: Debian's ``rtpengine`` daemon in userspace (``--table=-1``),
  ng control on loopback UDP, ``--delete-delay=0`` so that repeated ramps
  get their ports back at once, no config file.

Both run as ``nice -n 10 taskset -c CORE ...``. :class:`ProcStat` reads
``/proc/PID/stat`` (utime + stime, all threads) and ``VmRSS``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

# Loopback ports the same way the test suite finds them.
from tests.e2e.harness import free_port

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
TOKEN_SECRET = "loadgen-token-secret-0123456789abcdef"
PHONE_USER = "phone"
PHONE_PASSWORD = "loadgen-phone-password"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


NICENESS = 10


def run_on_load_core() -> None:
    """This (orchestrating) process at niceness 10 (this machine is shared) and, with two
    cores or more, on core 1, the load's core: it sleeps off the system's core 0."""
    if os.nice(0) < NICENESS:
        os.nice(NICENESS - os.nice(0))
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})


def pinned(core: int | None, command: list[str]) -> list[str]:
    """``nice [taskset -c CORE] COMMAND``, so that COMMAND runs at niceness 10 (this machine is shared)."""
    increment = max(0, NICENESS - os.nice(0))
    prefix = ["nice", "-n", str(increment)] if increment else []
    if core is not None and shutil.which("taskset"):
        prefix += ["taskset", "-c", str(core)]
    return prefix + command


class ProcStat:
    """CPU seconds and resident memory of a process (all its threads)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # fields[0] is state (field 3); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def runqueue_wait(self) -> float:
        """Seconds its threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat)."""
        total = 0
        for task in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return total / 1e9


def core_busy(core: int | None) -> float:
    """Seconds core ``core`` (or all cores) has been busy since boot (/proc/stat: all but idle and iowait)."""
    name = "cpu" if core is None else f"cpu{core}"
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == name:
                values = [int(v) for v in fields[1:9]]
                return (sum(values) - values[3] - values[4]) / CLOCK_TICKS
    return 0.0


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass
class Telebridge:
    """A telebridge process with the bench configuration."""

    workdir: Path
    core: int | None = 0
    sip_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=lambda: free_port(both=False))
    # Below the kernel's ephemeral range (32768-60999), where the generators' sockets are.
    port_min: int = 20000
    port_max: int = 25999
    process: subprocess.Popen[bytes] | None = None
    name: str = "telebridge"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "telebridge.toml"
        config.write_text(
            f"""state_dir = "{self.workdir / 'state'}"

[sip]
listen = ["udp:{LOOPBACK}:{self.sip_port}", "tcp:{LOOPBACK}:{self.sip_port}"]
domain = ["{LOOPBACK}", "localhost"]

[web]
listen = "{LOOPBACK}:{self.web_port}"

[auth]
token_secret = "{TOKEN_SECRET}"

[users.{PHONE_USER}]
password = "{PHONE_PASSWORD}"

[media]
port_min = {self.port_min}
port_max = {self.port_max}
media_timeout = 600.0
transcoding = true

[calls]
ring_timeout = 60.0
"""
        )
        self.log = (self.workdir / "telebridge.log").open("wb")
        twistd = str(Path(sys.executable).parent / "twistd")
        self.process = subprocess.Popen(
            pinned(self.core, [twistd, "-n", "--pidfile=", "telebridge", "--config", str(config)]),
            cwd=self.workdir,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"telebridge exited at start-up:\n{self.log_tail()}")
            if _options_ok(self.sip_port):
                return
        raise RuntimeError(f"telebridge did not answer OPTIONS in 30 s:\n{self.log_tail()}")

    @property
    def stat(self) -> ProcStat:
        assert self.process is not None
        return ProcStat(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        text = (self.workdir / "telebridge.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def tracebacks(self) -> int:
        return (self.workdir / "telebridge.log").read_text(errors="replace").count("Traceback")

    def stop(self) -> None:
        _stop(self.process)
        if self.process is not None:
            self.log.close()


def _options_ok(port: int) -> bool:
    request = (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:9;branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag=probe\r\nTo: <sip:{LOOPBACK}:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.bind((LOOPBACK, 0))
        sock.sendto(request, (LOOPBACK, port))
        try:
            data, _ = sock.recvfrom(65536)
        except (socket.timeout, ConnectionRefusedError):
            return False
        return data.startswith(b"SIP/2.0 200")


@dataclass
class Rtpengine:
    """rtpengine in the foreground, userspace forwarding, ng on loopback UDP."""

    workdir: Path
    core: int | None = 0
    ng_port: int = field(default_factory=free_port)
    # Below the ephemeral range, and apart from a packaged rtpengine service's 30000-40000.
    port_min: int = 26000
    port_max: int = 31999
    process: subprocess.Popen[bytes] | None = None
    name: str = "rtpengine"
    log_level: int = 5

    def start(self) -> None:
        binary = shutil.which("rtpengine") or "/usr/bin/rtpengine"
        if not os.path.exists(binary):
            raise RuntimeError("rtpengine is not installed: apt-get install -y rtpengine-daemon")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = (self.workdir / "rtpengine.log").open("wb")
        self.process = subprocess.Popen(
            pinned(
                self.core,
                [
                    binary, "--config-file=none", "--foreground", "--log-stderr", "--log-level=" + str(self.log_level),
                    "--table=-1", f"--interface={LOOPBACK}", f"--listen-ng={LOOPBACK}:{self.ng_port}",
                    f"--port-min={self.port_min}", f"--port-max={self.port_max}", "--delete-delay=0",
                    "--timeout=600", "--silent-timeout=600", "--pidfile=" + str(self.workdir / "rtpengine.pid"),
                ],
            ),
            cwd=self.workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rtpengine exited at start-up:\n{self.log_tail()}")
            if _ng_ping(self.ng_port):
                return
        raise RuntimeError(f"rtpengine did not answer ng ping in 20 s:\n{self.log_tail()}")

    @property
    def stat(self) -> ProcStat:
        assert self.process is not None
        # nice/taskset exec the daemon, so the pid is rtpengine's own.
        return ProcStat(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        text = (self.workdir / "rtpengine.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def tracebacks(self) -> int:
        return 0

    def stop(self) -> None:
        _stop(self.process)
        if self.process is not None:
            self.log.close()


def _ng_ping(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.sendto(b"probe d7:command4:pinge", (LOOPBACK, port))
        try:
            data, _ = sock.recvfrom(65536)
        except (socket.timeout, ConnectionRefusedError):
            return False
        return b"pong" in data
