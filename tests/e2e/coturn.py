"""Debian's coturn on loopback, as the TURN server telebridge's ``[turn]`` points browsers at.

coturn checks the credentials /api/ice-servers hands out with nothing
shared but ``static-auth-secret`` (``use-auth-secret``: the TURN REST
scheme). ``allow-loopback-peers`` lets it relay to the gateway on
127.0.0.1, which it refuses by default. Its configuration file rejects a
comment after a value, so the file written here has none.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.e2e.harness import LOOPBACK, free_port, require_program, stop_process

# RFC 8489 §5: a Binding request is a 20-byte header with no attributes.
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_MAGIC_COOKIE = 0x2112A442


def stun_binding_answered(port: int, timeout: float) -> bool:
    """Whether a STUN Binding request to 127.0.0.1:``port`` over UDP gets its success response in time."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind((LOOPBACK, 0))
        sock.sendto(request, (LOOPBACK, port))
        try:
            data, _ = sock.recvfrom(2048)
        except (TimeoutError, ConnectionRefusedError):
            return False
    return len(data) >= 20 and struct.unpack("!H", data[:2])[0] == STUN_BINDING_SUCCESS and data[8:20] == transaction


@dataclass
class Coturn:
    """A running ``turnserver`` on a free loopback port, UDP and TCP, without TLS."""

    workdir: Path
    secret: str
    realm: str = "telebridge.test"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "turnserver.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "turnserver.log"

    @property
    def urls(self) -> list[str]:
        """The URLs to put in telebridge's ``[turn] urls``."""
        return [f"turn:{LOOPBACK}:{self.port}?transport=udp"]

    def write_config(self) -> None:
        # no-cli: the CLI would take 127.0.0.1:5766, which two test runs
        # on one machine would fight over. userdb and pidfile stay in the
        # work directory instead of /var.
        lines = [
            f"listening-ip={LOOPBACK}",
            f"relay-ip={LOOPBACK}",
            f"listening-port={self.port}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            "allow-loopback-peers",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-cli",
            "no-rfc5780",
            f"userdb={self.workdir / 'turndb'}",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            "log-file=stdout",
            "simple-log",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, ready_within: float = 15) -> None:
        """Run ``turnserver -c FILE`` and wait until it answers a STUN Binding request."""
        turnserver = require_program("turnserver")
        self.write_config()
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [turnserver, "-c", str(self.config_path)], cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise AssertionError(f"turnserver exited at start-up:\n{self.log_text()}")
            if stun_binding_answered(self.port, timeout=0.2):
                return
        self.stop()
        raise AssertionError(f"turnserver did not answer STUN in {ready_within} s:\n{self.log_text()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is None:
            return
        stop_process(self.process)
        self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
