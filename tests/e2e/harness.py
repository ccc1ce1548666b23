"""Start telebridge under twistd on loopback, and small real clients for it.

The gateway runs as users run it (``twistd -n telebridge --config PATH``) in
its own process, on free loopback ports, with its log captured so tests
can assert that nothing in it is a traceback.
"""

from __future__ import annotations

import contextlib
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
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
TOKEN_SECRET = "e2e-shared-secret-for-tests-only-0123456789"
PHONE_USER = "phone100"
PHONE_PASSWORD = "correct horse battery staple"


def free_port(both: bool = True) -> int:
    """A loopback port free for TCP and (if ``both``) UDP at once."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            if not both:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port found")


def free_media_ports(count: int = 2) -> int:
    """An even loopback port with ``count`` UDP ports from it free (RTP on even ports,
    RTCP on the next, RFC 3550 §11; audio and video side by side for SIPp's -mp)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            first = probe.getsockname()[1] & ~1
        held = []
        try:
            for port in range(first, first + count):
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(udp)
                udp.bind((LOOPBACK, port))
            return first
        except OSError:
            continue
        finally:
            for udp in held:
                udp.close()
    raise RuntimeError("no free run of loopback UDP ports found")


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0, process_group: bool = False) -> None:
    """SIGTERM, then SIGKILL (to its whole process group if asked) after ``timeout`` s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        if process_group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(5)


def require_program(name: str) -> str:
    """The path of a real peer; a missing peer fails the test, never skips it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: run `sh scripts/install.sh --test`")
    return path


@dataclass
class Gateway:
    """A running telebridge process and the addresses it listens on."""

    workdir: Path
    sip_port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=lambda: free_port(both=False))
    web_port: int = field(default_factory=lambda: free_port(both=False))
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "telebridge.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "telebridge.log"

    def write_config(self, extra: str = "", sip: str = "") -> None:
        """A configuration with every listener on a free loopback port (``sip``: more lines of [sip])."""
        self.config_path.write_text(
            f"""
state_dir = "{self.workdir / 'state'}"

[sip]
listen = ["udp:{LOOPBACK}:{self.sip_port}", "tcp:{LOOPBACK}:{self.sip_port}", "tls:{LOOPBACK}:{self.tls_port}"]
domain = ["{LOOPBACK}", "localhost"]
{sip}

[web]
listen = "{LOOPBACK}:{self.web_port}"
dev_tokens = true

[auth]
token_secret = "{TOKEN_SECRET}"

[users.{PHONE_USER}]
password = "{PHONE_PASSWORD}"
{extra}
"""
        )

    @contextlib.contextmanager
    def running(self, extra: str = "", sip: str = "") -> Iterator[Gateway]:
        """Configured with ``extra`` (and ``sip`` in [sip]) and started; stopped afterwards, its log free of tracebacks."""
        self.write_config(extra, sip)
        self.start()
        try:
            yield self
        finally:
            self.stop()
        assert "Traceback" not in self.log_text()

    def start(self) -> None:
        """Run ``twistd -n telebridge`` and wait until it answers OPTIONS."""
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            twistd_command("--config", str(self.config_path)),
            cwd=self.workdir,
            env=twistd_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"telebridge exited at start-up:\n{self.log_text()}")
            if options_status(self.sip_port, timeout=0.2) == 200:
                return
        raise AssertionError(f"telebridge did not answer OPTIONS in 20 s:\n{self.log_text()}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        stop_process(self.process)
        self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def options_request(port: int, transport: str = "UDP", branch: str | None = None) -> bytes:
    """A minimal, valid OPTIONS request."""
    branch = branch or "z9hG4bK" + uuid.uuid4().hex
    return (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {LOOPBACK}:9;branch={branch};rport\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{LOOPBACK}:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def status_of(data: bytes) -> int:
    """The status code of a response's bytes (0 if it is not a response)."""
    parts = data.split(b" ", 2)
    if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit():
        return int(parts[1])
    return 0


def options_status(port: int, timeout: float = 2.0) -> int:
    """Send OPTIONS over UDP and return the status of the reply (0 for none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind((LOOPBACK, 0))
        sock.sendto(options_request(port), (LOOPBACK, port))
        try:
            data, _ = sock.recvfrom(65536)
        except (socket.timeout, ConnectionRefusedError):
            return 0
        return status_of(data)


def run_sipp(
    gateway: Gateway,
    scenario: str,
    transport: str,
    workdir: Path,
    extra: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one SIPp scenario from tests/e2e/sipp once; bounded to 30 s."""
    sipp = require_program("sipp")
    if transport == "tls":
        # Debian's SIPp is built without TLS: it speaks TCP to a local
        # stunnel client, which carries the scenario over TLS to telebridge
        # and verifies telebridge's certificate on the way.
        with stunnel_client(gateway, workdir) as port:
            return _sipp(sipp, port, "t1", scenario, workdir, extra)
    return _sipp(sipp, gateway.sip_port, "u1" if transport == "udp" else "t1", scenario, workdir, extra)


def _sipp(
    sipp: str, port: int, flag: str, scenario: str, workdir: Path, extra: list[str] | None
) -> subprocess.CompletedProcess[str]:
    args = _sipp_args(sipp, port, flag, scenario, extra)
    return subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=30)


def start_sipp(gateway: Gateway, scenario: str, workdir: Path, extra: list[str]) -> subprocess.Popen[str]:
    """Start one UDP SIPp scenario in the background (a phone that waits for calls, say)."""
    args = _sipp_args(require_program("sipp"), gateway.sip_port, "u1", scenario, extra)
    return subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _sipp_args(sipp: str, port: int, flag: str, scenario: str, extra: list[str] | None) -> list[str]:
    args = [
        sipp,
        f"{LOOPBACK}:{port}",
        "-sf", str(REPO / "tests/e2e/sipp" / scenario),
        "-t", flag,
        "-i", LOOPBACK,
        "-p", str(free_port()),
        "-m", "1",
        "-timeout", "20s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-trace_msg",
    ]
    return args + (extra or [])


@contextlib.contextmanager
def stunnel_client(gateway: Gateway, workdir: Path) -> Iterator[int]:
    """A stunnel TLS client: plain TCP in on the yielded port, TLS out to the gateway."""
    port = free_port(both=False)
    cert = gateway.workdir / "state" / "telebridge-cert.pem"
    yield from _stunnel(workdir / "stunnel.conf", port, f"""[sip-tls]
client = yes
accept = {LOOPBACK}:{port}
connect = {LOOPBACK}:{gateway.tls_port}
CAfile = {cert}
verifyPeer = yes
checkHost = localhost
""")


@contextlib.contextmanager
def stunnel_server(workdir: Path, connect_port: int) -> Iterator[int]:
    """A stunnel TLS server (a self-signed certificate of its own): TLS in on the yielded
    port, plain TCP out to ``connect_port`` (a SIPp PBX that speaks TCP)."""
    from telebridge.tls import ensure_self_signed

    port = free_port(both=False)
    cert, key = ensure_self_signed(workdir / "stunnel-server")
    yield from _stunnel(workdir / "stunnel-server.conf", port, f"""[pbx-tls]
accept = {LOOPBACK}:{port}
connect = {LOOPBACK}:{connect_port}
cert = {cert}
key = {key}
""")


def _stunnel(conf: Path, port: int, service: str) -> Iterator[int]:
    """Run stunnel on ``service`` until the caller is done; ready once ``port`` accepts."""
    stunnel = require_program("stunnel")
    conf.write_text(f"foreground = yes\npid =\n{service}")
    process = subprocess.Popen([stunnel, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("stunnel did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def twistd_command(*args: str) -> list[str]:
    """``twistd -n telebridge ARGS`` from this virtualenv."""
    return [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "telebridge", *args]


def twistd_env() -> dict[str, str]:
    """The environment twistd runs in: this checkout importable."""
    return dict(os.environ, PYTHONPATH=str(REPO))
