"""Run the test session in its own network namespace with only ``lo``.

Browsers and aiortc gather ICE candidates on every interface and Chromium
sends mDNS; these machines have a non-loopback interface that tests must
never use. Moving the pytest process into a fresh network namespace before
any socket exists confines it and every peer it starts (they inherit the
namespace) to loopback. Needs root (CAP_SYS_ADMIN), which CI has.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess

CLONE_NEWNET = 0x40000000


def enter_loopback_only_namespace() -> str | None:
    """Unshare the network namespace and bring ``lo`` up; the reason if it failed."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return f"unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())} (run the tests as root)"
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return None


def interfaces() -> list[str]:
    """Names of the interfaces this process can see."""
    return [name for _, name in socket.if_nameindex()]
