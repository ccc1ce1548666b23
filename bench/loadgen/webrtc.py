"""The browser's media plane for many calls on one socket: ICE, DTLS-SRTP, SRTP streams.

Rules of operation:

* Each call offers one audio m-line (Opus only, as a browser whose
  preferences keep Opus alone), ``a=setup:actpass``, rtcp-mux, BUNDLE and
  one host candidate: this process's media socket.
* We are the controlling ICE agent: binding requests with USE-CANDIDATE
  toward the relay's candidate until one succeeds; the relay's own checks
  (rtpengine runs full ICE) are answered. A consent check per call goes out
  every 5 s for as long as the call lives (RFC 7675).
* DTLS takes the role the answer leaves us (client when it says passive,
  server when it says active); SRTP keys come from telebridge's own
  DtlsEndpoint. Handshake retransmissions run on a 20 ms timer.
* Received SRTP is unprotected (so a relay sending garbage would show as
  loss) and recorded as ``(caller index, packet number, kernel rx time)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterator

from telebridge.media.dtls import DtlsCertificate, DtlsEndpoint, DtlsState
from telebridge.media.srtp import SrtpError
from telebridge.media.stun import (
    BINDING,
    ICE_CONTROLLING,
    PRIORITY,
    REQUEST,
    SUCCESS,
    USE_CANDIDATE,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    StunError,
    StunMessage,
    encode_xor_address,
    parse_stun,
)
from telebridge.sdp import Media, SessionDescription, fingerprint, ice_credentials, parse_sdp

from bench.loadgen.wire import ANC_SIZE, LOOPBACK, MARK, OPUS_PT, SEQ_TS, TS_STEP, Records, kernel_time

Address = tuple[str, int]
CONSENT_INTERVAL = 5.0


@dataclass(eq=False)
class WebrtcCall:
    """One call's browser side."""

    index: int
    local_ufrag: str = field(default_factory=lambda: secrets.token_hex(4))
    local_pwd: str = field(default_factory=lambda: secrets.token_hex(12))
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    remote: Address | None = None
    remote_ufrag: str = ""
    remote_pwd: str = ""
    payload_type: int = OPUS_PT
    dtls: DtlsEndpoint | None = None
    protect: object = None
    unprotect: object = None
    connected: asyncio.Future[None] | None = None
    ice_done: asyncio.Future[None] | None = None
    first_ts: int = -1
    packet: bytearray = field(default_factory=bytearray)

    def offer(self, port: int, certificate: DtlsCertificate) -> str:
        """A browser's offer: Opus only, ICE with one host candidate, DTLS actpass."""
        return (
            "v=0\r\n"
            f"o=- {secrets.randbits(62)} 2 IN IP4 {LOOPBACK}\r\n"
            "s=-\r\nt=0 0\r\n"
            "a=group:BUNDLE 0\r\n"
            "a=msid-semantic: WMS loadgen\r\n"
            f"m=audio {port} UDP/TLS/RTP/SAVPF {OPUS_PT}\r\n"
            f"c=IN IP4 {LOOPBACK}\r\n"
            f"a=rtcp:{port} IN IP4 {LOOPBACK}\r\n"
            f"a=candidate:1 1 udp 2130706431 {LOOPBACK} {port} typ host\r\n"
            "a=end-of-candidates\r\n"
            f"a=ice-ufrag:{self.local_ufrag}\r\n"
            f"a=ice-pwd:{self.local_pwd}\r\n"
            f"a=fingerprint:sha-256 {certificate.fingerprint}\r\n"
            "a=setup:actpass\r\n"
            "a=mid:0\r\n"
            "a=sendrecv\r\n"
            "a=rtcp-mux\r\n"
            f"a=rtpmap:{OPUS_PT} opus/48000/2\r\n"
            f"a=fmtp:{OPUS_PT} minptime=10;useinbandfec=1\r\n"
            f"a=ssrc:{self.ssrc} cname:loadgen{self.index}\r\n"
        )

    def take_answer(self, sdp: str, certificate: DtlsCertificate) -> None:
        """The relay's answer: its candidate, ICE credentials, fingerprint and DTLS role."""
        session = parse_sdp(sdp)
        media = session.media[0]
        if media.port == 0:
            raise ValueError("the relay rejected the audio stream")
        credentials = ice_credentials(session, media)
        remote_fingerprint = fingerprint(session, media)
        if credentials is None or remote_fingerprint is None:
            raise ValueError("answer without ICE credentials or fingerprint")
        self.remote_ufrag, self.remote_pwd = credentials
        self.remote = None
        for candidate in media.candidates():
            parts = candidate.split()
            if len(parts) >= 8 and parts[2].lower() == "udp" and ":" not in parts[4]:
                self.remote = (parts[4], int(parts[5]))
                break
        if self.remote is None:
            self.remote = (sdp_address(session, media), media.port)
        setup = session.media_attribute(media, "setup") or "passive"
        self.payload_type = int(media.formats[0])
        self.dtls = DtlsEndpoint(certificate, is_client=setup != "active", remote_fingerprint=remote_fingerprint)


def sdp_address(session: SessionDescription, media: Media) -> str:
    """The media's ``c=`` address, or the session's."""
    if media.connection:
        return media.connection
    for kind, value in session.lines:
        if kind == "c" and len(value.split()) == 3:
            return value.split()[2]
    return LOOPBACK


class WebrtcMedia:
    """All calls' browser sides on one socket."""

    def __init__(self, sock: socket.socket, certificate: DtlsCertificate, relay_mode: bool) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.certificate = certificate
        self.relay_mode = relay_mode
        self.by_address: dict[Address, WebrtcCall] = {}
        self.by_ufrag: dict[str, WebrtcCall] = {}
        self.transactions: dict[bytes, asyncio.Future[None]] = {}
        self.early: dict[Address, list[bytes]] = {}
        self.tiebreaker = os.urandom(8)
        self.records: Records | None = None
        self.counters = {"rtcp": 0, "stray": 0, "srtp_errors": 0, "stun": 0, "dtls": 0}
        self.calls: list[WebrtcCall] = []
        self._consent_next = 0
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._readable)
        self._timer_task = loop.create_task(self._timers())

    def add(self, call: WebrtcCall) -> None:
        self.calls.append(call)
        self.by_ufrag[call.local_ufrag] = call

    async def connect(self, call: WebrtcCall, timeout: float = 20.0) -> None:
        """ICE (nominate the relay's candidate), then DTLS; returns when SRTP keys exist."""
        assert call.remote is not None and call.dtls is not None
        loop = asyncio.get_running_loop()
        self.by_address[call.remote] = call
        call.connected = loop.create_future()
        # A relay that ran ICE on its own may have started DTLS before its
        # answer reached us (rtpengine does): handle what it sent so far.
        for data in self.early.pop(call.remote, []):
            self._dtls(data, call.remote)
        deadline = loop.time() + timeout
        while True:
            tid = os.urandom(12)
            done: asyncio.Future[None] = loop.create_future()
            self.transactions[tid] = done
            self.sock.sendto(self._check(call, tid, nominate=True), call.remote)
            try:
                await asyncio.wait_for(asyncio.shield(done), 0.2)
                break
            except asyncio.TimeoutError:
                if loop.time() > deadline:
                    raise TimeoutError(f"call {call.index}: no ICE response from {call.remote}") from None
            finally:
                self.transactions.pop(tid, None)
        if call.dtls.is_client:
            for datagram in call.dtls.start(loop.time()):
                self.sock.sendto(datagram, call.remote)
        await asyncio.wait_for(call.connected, max(deadline - loop.time(), 1.0))

    def _check(self, call: WebrtcCall, tid: bytes, nominate: bool) -> bytes:
        attributes = [
            (USERNAME, f"{call.remote_ufrag}:{call.local_ufrag}".encode()),
            (PRIORITY, struct.pack("!I", 1853824767)),
            (ICE_CONTROLLING, self.tiebreaker),
        ]
        if nominate:
            attributes.append((USE_CANDIDATE, b""))
        return StunMessage(BINDING, REQUEST, tid, attributes).encode(integrity_key=call.remote_pwd.encode())

    @contextlib.contextmanager
    def polled(self) -> Iterator[None]:
        """While streaming, the pacer reads the socket (:meth:`poll`) instead of readiness callbacks."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.sock.fileno())
        try:
            yield
        finally:
            loop.add_reader(self.sock.fileno(), self._readable)

    def poll(self) -> None:
        self._readable()

    def _readable(self) -> None:
        recvmsg = self.sock.recvmsg
        by_address = self.by_address
        rows = self.records.rx if self.records is not None else None
        relay = self.relay_mode
        unpack_mark = MARK.unpack_from
        unpack_seq_ts = SEQ_TS.unpack_from
        counters = self.counters
        while True:
            try:
                data, ancdata, _, address = recvmsg(2048, ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if not data:
                continue
            first = data[0]
            if first >= 128:
                if 192 <= data[1] <= 223:
                    counters["rtcp"] += 1
                    continue
                call = by_address.get(address)
                if call is None or call.unprotect is None or rows is None:
                    counters["stray"] += 1
                    continue
                try:
                    rtp = call.unprotect(data)
                except SrtpError:
                    counters["srtp_errors"] += 1
                    continue
                if relay:
                    index, k = unpack_mark(rtp, 12)
                else:
                    _, ts = unpack_seq_ts(rtp, 2)
                    if call.first_ts < 0:
                        call.first_ts = ts
                    index, k = call.index, ((ts - call.first_ts) & 0xFFFFFFFF) // TS_STEP[OPUS_PT]
                rows.extend((index, k, kernel_time(ancdata)))
            elif first < 4:
                counters["stun"] += 1
                self._stun(data, address)
            elif 20 <= first <= 63:
                counters["dtls"] += 1
                self._dtls(data, address)

    def _stun(self, data: bytes, address: Address) -> None:
        try:
            message = parse_stun(data)
        except StunError:
            return
        if message.method != BINDING:
            return
        if message.cls == SUCCESS:
            future = self.transactions.get(message.transaction_id)
            if future is not None and not future.done():
                future.set_result(None)
        elif message.cls == REQUEST:
            # The relay's own checks (full ICE): "<our ufrag>:<theirs>".
            username = (message.get(USERNAME) or b"").decode(errors="replace")
            call = self.by_ufrag.get(username.split(":", 1)[0])
            if call is None or not message.check_integrity(call.local_pwd.encode()):
                return
            reply = StunMessage(BINDING, SUCCESS, message.transaction_id, [(XOR_MAPPED_ADDRESS, encode_xor_address(address[0], address[1], message.transaction_id))])
            self.sock.sendto(reply.encode(integrity_key=call.local_pwd.encode()), address)

    def _dtls(self, data: bytes, address: Address) -> None:
        call = self.by_address.get(address)
        if call is None or call.dtls is None:
            early = self.early.setdefault(address, [])
            if len(early) < 8:
                early.append(data)
            return
        for datagram in call.dtls.receive(data, asyncio.get_running_loop().time()):
            self.sock.sendto(datagram, address)
        self._check_connected(call)

    def _check_connected(self, call: WebrtcCall) -> None:
        dtls = call.dtls
        assert dtls is not None
        if call.connected is None or call.connected.done():
            return
        if dtls.state is DtlsState.CONNECTED and dtls.srtp is not None:
            call.protect, call.unprotect = dtls.srtp.protect, dtls.srtp.unprotect
            call.connected.set_result(None)
        elif dtls.state is DtlsState.FAILED:
            call.connected.set_exception(RuntimeError(f"call {call.index}: DTLS failed: {dtls.error}"))

    async def _timers(self) -> None:
        """DTLS retransmissions, and consent checks spread evenly over 5 s."""
        loop = asyncio.get_running_loop()
        tick = 0.02
        budget = 0.0
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for call in self.calls:
                dtls = call.dtls
                if dtls is not None and dtls.state is DtlsState.HANDSHAKING and call.remote is not None:
                    deadline = dtls.get_timer()
                    if deadline is not None and now >= deadline:
                        for datagram in dtls.handle_timer(now):
                            self.sock.sendto(datagram, call.remote)
                        self._check_connected(call)
            live = [c for c in self.calls if c.protect is not None]
            if live:
                # Each live call once per CONSENT_INTERVAL, spread evenly over it.
                budget += len(live) * tick / CONSENT_INTERVAL
                while budget >= 1.0:
                    budget -= 1.0
                    call = live[self._consent_next % len(live)]
                    self._consent_next += 1
                    assert call.remote is not None
                    self.sock.sendto(self._check(call, os.urandom(12), nominate=False), call.remote)

    def prepare_stream(self, records: Records, transcode_payload: bytes | None) -> None:
        """Packet templates per call: RTP header + (mark and padding | an Opus frame)."""
        self.records = records
        for call in self.calls:
            payload = transcode_payload if transcode_payload is not None else bytes(80)
            call.packet = bytearray(struct.pack("!BBHII", 0x80, call.payload_type, secrets.randbits(16), secrets.randbits(32), call.ssrc) + payload)

    def sender(self, packets: int):
        """send(call, k) for :func:`~bench.loadgen.wire.paced`."""
        sendto = self.sock.sendto
        tx = self.records.tx if self.records is not None else None
        assert tx is not None
        relay = self.relay_mode
        pack_mark = MARK.pack_into
        pack_seq_ts = SEQ_TS.pack_into
        time_ns = time.time_ns
        step = TS_STEP[OPUS_PT]
        bases = {id(c): SEQ_TS.unpack_from(c.packet, 2) for c in self.calls}

        def send(call: WebrtcCall, k: int) -> None:
            packet = call.packet
            seq0, ts0 = bases[id(call)]
            pack_seq_ts(packet, 2, (seq0 + k) & 0xFFFF, (ts0 + k * step) & 0xFFFFFFFF)
            if relay:
                pack_mark(packet, 12, call.index, k)
            data = call.protect(packet)
            now = time_ns()
            try:
                sendto(data, call.remote)
            except OSError:
                return
            tx[call.index * packets + k] = now

        return send

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self._timer_task.cancel()
