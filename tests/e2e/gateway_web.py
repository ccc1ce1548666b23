"""What a browser-side test needs from a running gateway's web side: tokens, URLs and /metrics gauges."""

from __future__ import annotations

import ssl
import time
import urllib.request

import jwt

from tests.e2e.harness import LOOPBACK, TOKEN_SECRET, Gateway

# The gauges a call holds while it lives; all are 0 once it is gone.
CALL_GAUGES = ("calls", "call_timers", "media_port_pairs")


def token(user: str, ttl: int = 300) -> str:
    """A JWT for ``user`` as an app server mints it (HS256, the gateway's secret)."""
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, TOKEN_SECRET, algorithm="HS256")


def page_url(gateway: Gateway, query: str = "") -> str:
    """The softphone page (or any path under the gateway's https origin)."""
    return f"https://{LOOPBACK}:{gateway.web_port}/?{query}"


def websocket_url(gateway: Gateway, user: str) -> str:
    """The SIP WebSocket with a token for ``user`` in ``?token=``."""
    return f"wss://{LOOPBACK}:{gateway.web_port}/sip?token={token(user)}"


def gauges(gateway: Gateway) -> dict[str, float]:
    """Every /metrics sample by name, labels summed."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"https://{LOOPBACK}:{gateway.web_port}/metrics", context=context, timeout=5) as r:
        text = r.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            name = sample.split("{")[0]
            values[name] = values.get(name, 0.0) + float(value)
    return values


def call_gauges(gateway: Gateway) -> dict[str, float]:
    """The gauges of CALL_GAUGES only."""
    values = gauges(gateway)
    return {name: values.get(name, 0.0) for name in CALL_GAUGES}


def assert_calls_released(gateway: Gateway, timeout: float = 5.0) -> None:
    """Within ``timeout``, no call, call timer or media port pair is left."""
    deadline = time.monotonic() + timeout
    while (values := call_gauges(gateway)) != dict.fromkeys(CALL_GAUGES, 0.0):
        assert time.monotonic() < deadline, f"still held {timeout} s after the call: {values}"
        time.sleep(0.1)
