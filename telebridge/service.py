"""Build telebridge's service tree from a :class:`~telebridge.config.Config`.

Wiring only: every object is made here and handed what it needs, so no
module reaches for a global. The MultiService starts the listeners in
order and logs one line per listener with its URL.
"""

from __future__ import annotations

import secrets
from typing import Callable

from twisted.application import service
from twisted.internet import reactor as default_reactor
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from telebridge.calls.accounts import AccountSource, http_fetch
from telebridge.calls.b2bua import CallManager, CallSettings
from telebridge.calls.call_media import CallMedia
from telebridge.calls.recording_policy import RecordingPolicy
from telebridge.calls.echo import EchoPorts, echo_answer
from telebridge.calls.pbx_routing import PbxRouting
from telebridge.calls.registrar import Registrar
from telebridge.calls.routing import EmbeddedRouter
from telebridge.calls.upstream import Upstream
from telebridge.calls.upstream_registrations import UpstreamRegistrations
from telebridge.config import Config
from telebridge.media.dtls import DtlsCertificate
from telebridge.media.relay import PortPool
from telebridge.media.udp_sockets import UdpSocketSet
from telebridge.metrics import Counters
from telebridge.sip.auth import DigestServer
from telebridge.sip.connector import SipConnector
from telebridge.sip.message import Request, Response, make_response
from telebridge.sip.stack import SipStack
from telebridge.sip.transport import SipStreamFactory, SipUdpProtocol, UdpFlow
from telebridge.sip.uri import format_host
from telebridge.tls import ensure_self_signed, server_context_factory
from telebridge.web.http import build_site
from telebridge.web.ice_servers import IceServerList
from telebridge.web.tokens import TokenError, TokenVerifier, mint_token, resolve_token_secret
from telebridge.web.ws import SipWebSocketFactory

log = Logger()


class ListenerService(service.Service):
    """One listening socket, logged with its URL when it starts."""

    def __init__(self, url: str, start: Callable[[], object]) -> None:
        self.url = url
        self._start = start
        self._port: object | None = None

    def startService(self) -> None:
        super().startService()
        self._port = self._start()
        log.info("listening on {url}", url=self.url)

    def stopService(self) -> object:
        super().stopService()
        port, self._port = self._port, None
        if port is not None:
            return port.stopListening()  # type: ignore[attr-defined]
        return None


def make_service(config: Config, reactor: IReactorTime | None = None) -> service.MultiService:
    """Every listener and the objects behind them."""
    reactor = reactor or default_reactor  # type: ignore[assignment]
    top = service.MultiService()
    counters = Counters()

    cert_path, key_path = config.tls.certificate, config.tls.private_key
    if cert_path is None or key_path is None:
        cert_path, key_path = ensure_self_signed(config.state_dir)
    tls_context = server_context_factory(cert_path, key_path)

    registrar = Registrar(
        min_expires=config.registrar.min_expires,
        max_expires=config.registrar.max_expires,
        default_expires=config.registrar.default_expires,
    )
    digest = DigestServer(
        config.registrar.realm,
        nonce_lifetime=config.registrar.nonce_lifetime,
        algorithms=config.registrar.digest_algorithms,
    )
    users = {name: user.password for name, user in config.users.items()}
    secret = resolve_token_secret(config)
    verifier = TokenVerifier.from_config(config, secret)
    calls, echo = _calls(config, reactor, counters)
    udp_listeners: list[SipUdpProtocol] = []
    pbx = _pbx(config, reactor, counters, calls, udp_listeners, registrar)
    router = EmbeddedRouter(
        registrar=registrar,
        digest=digest,
        passwords=users.get,
        dtmf_mode=lambda user: config.users[user].dtmf if user in config.users else "rfc4733",
        domains=frozenset(d.lower() for d in config.sip.domain),
        counters=counters,
        new_tag=lambda: secrets.token_hex(8),
        user_agent=config.sip.user_agent,
        calls=calls,
        loop_flow=lambda: UdpFlow(udp_listeners[0], udp_listeners[0].local) if udp_listeners else None,
        pbx=pbx,
        bearer_subject=lambda token, now: _subject(verifier, token, now),
    )
    stack = SipStack(reactor, router, counters, t1=config.sip.t1, t2=config.sip.t2, t4=config.sip.t4)
    calls.stack = stack
    if pbx is not None:
        pbx.registrations.stack = stack
        if pbx.upstream.connector is not None:
            pbx.upstream.connector.sink = stack
    counters.gauge("sip_transactions", "live SIP transactions", lambda: len(stack.layer))
    counters.gauge("registrar_bindings", "live registrations", lambda: len(registrar))

    for listen in config.sip.listen:
        top.addService(_sip_listener(reactor, listen, stack, counters, tls_context, config.sip.max_message_size, udp_listeners))
    top.addService(ListenerService(
        f"echo media on {config.media.address}",
        lambda: echo.listen(reactor, config.media.address),  # type: ignore[arg-type]
    ))

    web_host, web_port = config.web.listen.host, config.web.listen.port
    base = f"{format_host(web_host)}:{web_port}"
    ws_factory = SipWebSocketFactory(
        f"wss://{base}/sip",
        sink=stack,
        verifier=verifier,
        counters=counters,
        clock=reactor,
        max_message_size=config.sip.max_message_size,
    )
    minter = None
    if config.web.dev_tokens and secret is not None:
        ttl = config.auth.token_ttl

        def minter(user: str) -> str:
            return mint_token(user, ttl, secret, "HS256", reactor.seconds())

    site = build_site(ws_factory, counters, minter, IceServerList.from_config(config))
    top.addService(
        ListenerService(
            f"https://{base}/ (WebSocket wss://{base}/sip)",
            lambda: reactor.listenSSL(web_port, site, tls_context, interface=web_host),  # type: ignore[attr-defined]
        )
    )
    top.addService(_StackService(stack, calls, pbx))
    return top


def _pbx(
    config: Config,
    reactor: IReactorTime,
    counters: Counters,
    calls: CallManager,
    udp_listeners: list[SipUdpProtocol],
    registrar: Registrar,
) -> PbxRouting | None:
    """PBX mode's parts, when ``[upstream]`` is configured (their stack is set once it exists)."""
    if config.upstream is None:
        return None
    connector = None
    if config.upstream.proxy.transport != "udp":
        connector = SipConnector(
            reactor, None, counters, config.sip.max_message_size,  # type: ignore[arg-type]
            verify_tls=config.tls.verify_peer, ca_file=config.tls.ca_file, connect_timeout=config.upstream.timeout,
        )
    settings = config.upstream
    accounts = AccountSource(
        config.accounts, reactor, settings.accounts_url, settings.accounts_secret,
        http_fetch(reactor, settings.timeout), settings.accounts_cache,
    )
    upstream = Upstream(settings, accounts, lambda: udp_listeners[0] if udp_listeners else None, connector)
    registrations = UpstreamRegistrations(None, upstream, reactor, counters)
    counters.gauge("upstream_registrations", "users registered to the PBX", lambda: len(registrations))
    counters.gauge("upstream_timers", "upstream registration timers", lambda: registrations.timers)

    def reply(request: Request, status: int, reason: str | None) -> Response:
        response = make_response(request, status, reason, to_tag=secrets.token_hex(8))
        response.headers.add("Server", config.sip.user_agent)
        return response

    return PbxRouting(upstream, registrations, calls, reply, registrar.has_bindings)


def _subject(verifier: TokenVerifier, token: str, now: float) -> str | None:
    """The user a bearer token names, or ``None`` when it does not verify."""
    try:
        return verifier.verify(token, now).sub
    except TokenError:
        return None


def _calls(config: Config, reactor: IReactorTime, counters: Counters) -> tuple[CallManager, EchoPorts]:
    """The B2BUA, its media port pool and sockets, DTLS certificate and echo sockets."""
    media = config.media
    pool = PortPool(media.port_min, media.port_max)
    sockets = UdpSocketSet(reactor)  # type: ignore[arg-type]
    certificate = DtlsCertificate()
    echo = EchoPorts()

    def new_media(on_end: Callable[[str], None]) -> CallMedia:
        return CallMedia(
            reactor, pool, sockets, certificate, media.address, on_end,  # type: ignore[arg-type]
            media_timeout=media.media_timeout, latch_window=media.latch_window, transcoding=media.transcoding,
            inband_dtmf=media.inband_dtmf, sip_srtp=media.sip_srtp,
        )

    def answer_for_echo(offer: bytes) -> bytes:
        return echo_answer(offer, media.address, echo.port)

    settings = CallSettings(ring_timeout=config.calls.ring_timeout, grace=config.calls.grace, media_timeout=media.media_timeout)
    recording = None
    if config.recording is not None:
        recording = RecordingPolicy(config.recording.folder, frozenset(config.recording.users), config.recording.header)
    calls = CallManager(
        None, reactor, new_media, answer_for_echo, counters, settings, loop_secret=secrets.token_bytes(32), recording=recording
    )
    counters.gauge("calls", "live calls", lambda: len(calls))
    counters.gauge("call_timers", "live call timers", lambda: calls.timers)
    counters.gauge("media_port_pairs", "media port pairs in use", lambda: pool.in_use)
    return calls, echo


class _StackService(service.Service):
    """Stops the SIP stack's timers with the service."""

    def __init__(self, stack: SipStack, calls: CallManager, pbx: PbxRouting | None) -> None:
        self.stack = stack
        self.calls = calls
        self.pbx = pbx

    def stopService(self) -> None:
        super().stopService()
        self.calls.end_all("telebridge is stopping")
        if self.pbx is not None:
            # The PBX stops sending us calls we could no longer take.
            self.pbx.registrations.release_all()
        self.stack.stop()


def _sip_listener(reactor, listen, stack, counters, tls_context, max_size, udp_listeners) -> ListenerService:  # type: ignore[no-untyped-def]
    transport = listen.transport.lower()
    if transport == "udp":
        udp = SipUdpProtocol(stack, counters)
        udp_listeners.append(udp)
        return ListenerService(listen.url, lambda: reactor.listenUDP(listen.port, udp, interface=listen.host))
    factory = SipStreamFactory(stack, counters, transport.upper(), max_size)
    if transport == "tcp":
        return ListenerService(listen.url, lambda: reactor.listenTCP(listen.port, factory, interface=listen.host))
    return ListenerService(
        listen.url, lambda: reactor.listenSSL(listen.port, factory, tls_context, interface=listen.host)
    )
