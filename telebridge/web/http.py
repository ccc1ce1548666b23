"""The HTTPS side: the softphone page, the WebSocket endpoint, the APIs and /metrics.

twisted.web resources only; the WebSocket itself lives in :mod:`ws`.
Serving the WebSocket through a ``Site`` (Autobahn's ``WebSocketResource``)
is also what makes TLS work for browsers, which all offer ALPN.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Callable

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import IReactorTime
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request as HttpRequest
from twisted.web.server import Site
from twisted.web.static import File

from telebridge.metrics import Counters
from telebridge.sip.uri import is_token
from telebridge.web.ice_servers import IceServerList
from telebridge.web.tokens import TokenError, TokenVerifier
from telebridge.web.ws import SipWebSocketFactory

STATIC = Path(__file__).with_name("static")


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


def _bearer_token(request: HttpRequest) -> str:
    """The token from ``Authorization: Bearer`` (RFC 6750 §2.1), else from ``?token=`` (§2.3)."""
    header = (request.getHeader(b"authorization") or b"").decode("ascii", "replace").strip()
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return (request.args.get(b"token") or [b""])[0].decode("ascii", "replace")


class IceServersResource(Resource):
    """``GET /api/ice-servers``: ``{"iceServers": [...]}`` for the token's user.

    The token is checked exactly as the WebSocket upgrade checks it, so the
    softphone learns here, with a readable 401, that its token is refused:
    a browser cannot see why a WebSocket handshake failed. Any origin may
    ask (CORS ``*``): the token, not a cookie, is the credential, and apps
    that embed JsSIP or SIP.js on their own origin need the same list.
    """

    isLeaf = True

    def __init__(self, servers: IceServerList, verifier: TokenVerifier, clock: IReactorTime, counters: Counters) -> None:
        super().__init__()
        self.servers = servers
        self.verifier = verifier
        self.clock = clock
        self.counters = counters

    def render_GET(self, request: HttpRequest) -> bytes:
        request.setHeader(b"access-control-allow-origin", b"*")
        token = _bearer_token(request)
        if not token:
            return self._refuse(request, "missing", "a token is required: ?token=JWT or Authorization: Bearer JWT")
        now = self.clock.seconds()
        try:
            claims = self.verifier.verify(token, now)
        except TokenError:
            return self._refuse(request, "token", "invalid or expired token")
        return _json(request, 200, {"iceServers": self.servers.for_user(claims.sub, now)})

    def render_OPTIONS(self, request: HttpRequest) -> bytes:
        """The CORS preflight that ``Authorization`` from another origin needs."""
        request.setResponseCode(204)
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"access-control-allow-methods", b"GET")
        request.setHeader(b"access-control-allow-headers", b"Authorization")
        request.setHeader(b"access-control-max-age", b"600")
        return b""

    def _refuse(self, request: HttpRequest, reason: str, text: str) -> bytes:
        self.counters.inc("http_api_refused_total", path="ice-servers", reason=reason)
        request.setHeader(b"www-authenticate", b'Bearer realm="telebridge"')
        return _json(request, 401, {"error": text})


class SoftphoneFiles(File):
    """The softphone page and its ES modules, from ``static/``.

    No directory listings, and headers that keep a page holding a token
    from being framed, sniffed or cached stale (it is revalidated instead).
    """

    childNotFound = notFound()

    def directoryListing(self) -> IResource:
        return notFound()

    def render(self, request: HttpRequest) -> bytes | int:
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"cache-control", b"no-cache")
        return super().render(request)  # type: ignore[no-any-return]


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
    ice_servers: IceServerList | None = None,
) -> Site:
    """The HTTPS site: ``/`` (softphone), ``/sip`` (WebSocket), ``/api/...``, ``/metrics``."""
    root = SoftphoneFiles(str(STATIC))
    root.putChild(b"sip", WebSocketResource(ws_factory))
    api = Resource()
    root.putChild(b"api", api)
    if dev_token_minter is not None:
        api.putChild(b"dev-token", DevTokenResource(dev_token_minter))
    servers = ice_servers if ice_servers is not None else IceServerList()
    api.putChild(b"ice-servers", IceServersResource(servers, ws_factory.verifier, ws_factory.clock, counters))
    root.putChild(b"metrics", MetricsResource(counters))
    site = Site(root)
    site.displayTracebacks = False
    return site
