"""The HTTPS side: the WebSocket endpoint, the token API and /metrics.

twisted.web resources only; the WebSocket itself lives in :mod:`ws`.
Serving the WebSocket through a ``Site`` (Autobahn's ``WebSocketResource``)
is also what makes TLS work for browsers, which all offer ALPN.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Callable

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Request as HttpRequest
from twisted.web.server import Site

from telebridge.metrics import Counters
from telebridge.sip.uri import is_token
from telebridge.web.ws import SipWebSocketFactory


def _json(request: HttpRequest, status: int, body: dict[str, object]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode()


def _is_loopback(request: HttpRequest) -> bool:
    host = getattr(request.getClientAddress(), "host", "")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DevTokenResource(Resource):
    """``GET /api/dev-token?user=NAME``: a token for loopback clients.

    Only mounted in the embedded default (or when ``[web] dev_tokens`` is
    on), so that the softphone works without an app server on a developer's
    machine; a request from any other address gets 403.
    """

    isLeaf = True

    def __init__(self, mint: Callable[[str], str]) -> None:
        super().__init__()
        self.mint = mint

    def render_GET(self, request: HttpRequest) -> bytes:
        if not _is_loopback(request):
            return _json(request, 403, {"error": "dev tokens are for loopback clients only"})
        user = (request.args.get(b"user") or [b""])[0].decode("utf-8", "replace")
        if not is_token(user) or len(user) > 64:
            return _json(request, 400, {"error": "user must be a SIP user name (letters, digits, -_.!~*')"})
        return _json(request, 200, {"token": self.mint(user), "user": user})


class MetricsResource(Resource):
    """``GET /metrics`` in the Prometheus text format."""

    isLeaf = True

    def __init__(self, counters: Counters) -> None:
        super().__init__()
        self.counters = counters

    def render_GET(self, request: HttpRequest) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4")
        return self.counters.render().encode()


def build_site(
    ws_factory: SipWebSocketFactory,
    counters: Counters,
    dev_token_minter: Callable[[str], str] | None,
) -> Site:
    """The HTTPS site: ``/sip`` (WebSocket), ``/api/...``, ``/metrics``."""
    root = Resource()
    root.putChild(b"sip", WebSocketResource(ws_factory))
    api = Resource()
    root.putChild(b"api", api)
    if dev_token_minter is not None:
        api.putChild(b"dev-token", DevTokenResource(dev_token_minter))
    root.putChild(b"metrics", MetricsResource(counters))
    site = Site(root)
    site.displayTracebacks = False
    return site
