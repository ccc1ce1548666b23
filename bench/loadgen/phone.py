"""The SIP-side generator process: a UAS that answers every call with plain RTP.

    python -m bench.loadgen.phone --system telebridge --sip-port P --user phone --password PW --codec relay|transcode
    python -m bench.loadgen.phone --system rtpengine

telebridge: registers ``--user`` over UDP with digest (one registration:
the embedded registrar forks each browser's INVITE to its Contact, this
process), then answers every INVITE at once with 200 OK: Opus when the
offer has it (relayed calls), or PCMU alone (``--codec transcode``: the
gateway must transcode). 200 is retransmitted until the ACK; BYE gets 200.
The caller's index comes from the From user (``lgNNNNN``).

rtpengine: no SIP; the plain-side addresses arrive from the orchestrator
(``targets``), as the browser process got them from rtpengine's offers.

Media: one RTP socket (even port, RTCP socket above it) for all calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from telebridge.sip.auth import DigestClient
from telebridge.sip.message import Request, Response, SipParseError, make_response, parse_message
from telebridge.sdp import parse_sdp

from bench.loadgen.webrtc import sdp_address
from bench.loadgen.wire import (
    ANC_SIZE,
    LOOPBACK,
    MARK,
    OPUS_PT,
    PCMU_PT,
    SEQ_TS,
    TS_STEP,
    Records,
    commands,
    cpu_seconds,
    cpu_split,
    emit,
    even_port_pair,
    kernel_time,
    next_command,
    paced,
    raise_fd_limit,
    runqueue_wait,
    tone,
)

Address = tuple[str, int]


@dataclass(eq=False)
class PlainCall:
    index: int  # the caller's index
    remote: Address
    payload_type: int
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    first_ts: int = -1
    packet: bytearray = field(default_factory=bytearray)


class SipUas(asyncio.DatagramProtocol):
    """Registers once, answers INVITEs, BYEs and OPTIONS."""

    def __init__(self, phone: Phone, user: str, password: str, gateway: Address) -> None:
        self.phone = phone
        self.user = user
        self.digest = DigestClient(user, password)
        self.gateway = gateway
        self.transport: asyncio.DatagramTransport | None = None
        self.registered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.cseq = 0
        self.contact, self.expires = "*", 0
        self.answers: dict[str, bytes] = {}
        self.acked: set[str] = set()
        self.byes = 0
        self.invites = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    async def register_alone(self) -> Response:
        """Drop every binding of the user (``Contact: *``: a phone process of an
        earlier step may have left one, and the INVITEs would fork to it), then bind this one."""
        for contact, expires in (("*", 0), (f"<sip:{self.user}@{LOOPBACK}:{self.port}>", 3600)):
            self.registered = asyncio.get_running_loop().create_future()
            self.contact, self.expires = contact, expires
            self.register()
            response = await asyncio.wait_for(self.registered, 10)
            if response.status != 200:
                return response
        return response

    def register(self, authorization: str | None = None) -> None:
        assert self.transport is not None
        self.cseq += 1
        uri = f"sip:{LOOPBACK}"
        text = (
            f"REGISTER {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
            f"From: <sip:{self.user}@{LOOPBACK}>;tag=reg{self.port}\r\n"
            f"To: <sip:{self.user}@{LOOPBACK}>\r\n"
            f"Call-ID: reg-{self.port}@loadgen\r\n"
            f"CSeq: {self.cseq} REGISTER\r\n"
            f"Contact: {self.contact}\r\n"
            + (f"Authorization: {authorization}\r\n" if authorization else "")
            + f"Expires: {self.expires}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        self.transport.sendto(text.encode(), self.gateway)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return
        if isinstance(message, Response):
            if message.cseq[1] != "REGISTER" or self.registered.done():
                return
            if message.status == 401:
                challenge = message.headers.get_all("WWW-Authenticate")
                self.register(self.digest.authorization(challenge, "REGISTER", f"sip:{LOOPBACK}"))
            elif message.status >= 200:
                self.registered.set_result(message)
            return
        assert isinstance(message, Request)
        if message.method == "INVITE":
            self._invite(message, addr)
        elif message.method == "ACK":
            self.acked.add(message.call_id)
        elif message.method == "CANCEL":
            self._reply(message, 200, addr)
        else:
            if message.method == "BYE":
                self.byes += 1
                self.phone.drop(message.call_id)
            self._reply(message, 200, addr)

    def _reply(self, request: Request, status: int, addr: Address, body: bytes = b"", tag: str = "uas") -> bytes:
        assert self.transport is not None
        response = make_response(request, status, to_tag=tag)
        if body:
            response.headers.add("Contact", f"<sip:{self.user}@{LOOPBACK}:{self.port}>")
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        data = response.to_bytes()
        self.transport.sendto(data, addr)
        return data

    def _invite(self, request: Request, addr: Address) -> None:
        call_id = request.call_id
        if call_id in self.answers:  # a retransmission: same answer again
            assert self.transport is not None
            self.transport.sendto(self.answers[call_id], addr)
            return
        self.invites += 1
        try:
            session = parse_sdp(request.body)
            media = session.media[0]
            codecs = media.codecs()
            caller = request.from_.uri.user
            index = int(caller[2:]) if caller and caller.startswith("lg") and caller[2:].isdigit() else 100000 + self.invites
            if self.phone.transcode:
                pt, rtpmap = PCMU_PT, "PCMU/8000"
                if not any(c.payload_type == PCMU_PT for c in codecs):
                    raise ValueError("no PCMU in the offer")
            else:
                opus = next(c for c in codecs if c.name.lower() == "opus")
                pt, rtpmap = opus.payload_type, "opus/48000/2"
            remote = (sdp_address(session, media), media.port)
        except (ValueError, StopIteration, SipParseError) as e:
            self._reply(request, 488, addr)
            emit("log", message=f"488 for {call_id}: {e}")
            return
        self.phone.add(PlainCall(index, remote, pt), call_id)
        body = (
            f"v=0\r\no=phone {self.invites} 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
            f"m=audio {self.phone.port} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\na=sendrecv\r\n"
        ).encode()
        tag = uuid.uuid4().hex[:8]
        self.answers[call_id] = self._reply(request, 200, addr, body, tag)
        asyncio.get_running_loop().create_task(self._retransmit(call_id, addr))

    async def _retransmit(self, call_id: str, addr: Address) -> None:
        """RFC 3261 §13.3.1.4: the 200 again at T1, 2*T1, ... until the ACK."""
        interval = 0.5
        for _ in range(7):
            await asyncio.sleep(interval)
            if call_id in self.acked:
                return
            assert self.transport is not None
            self.transport.sendto(self.answers[call_id], addr)
            interval = min(interval * 2, 4.0)


class Phone:
    """All calls' SIP-side media on one socket."""

    def __init__(self, transcode: bool) -> None:
        self.transcode = transcode
        self.sock, self.rtcp = even_port_pair()
        self.port = self.sock.getsockname()[1]
        self.calls: dict[str, PlainCall] = {}
        self.by_address: dict[Address, PlainCall] = {}
        self.records: Records | None = None
        self.counters = {"rtcp": 0, "stray": 0}
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)
        asyncio.get_running_loop().add_reader(self.rtcp.fileno(), self._drain_rtcp)

    def add(self, call: PlainCall, key: str) -> None:
        self.calls[key] = call
        self.by_address[call.remote] = call

    def drop(self, key: str) -> None:
        call = self.calls.pop(key, None)
        if call is not None:
            self.by_address.pop(call.remote, None)

    @contextlib.contextmanager
    def polled(self) -> Iterator[None]:
        """While streaming, the pacer reads the sockets (:meth:`poll`) instead of readiness callbacks."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.sock.fileno())
        loop.remove_reader(self.rtcp.fileno())
        try:
            yield
        finally:
            loop.add_reader(self.sock.fileno(), self._readable)
            loop.add_reader(self.rtcp.fileno(), self._drain_rtcp)

    def poll(self) -> None:
        self._readable()
        self._drain_rtcp()

    def _drain_rtcp(self) -> None:
        while True:
            try:
                self.rtcp.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self.counters["rtcp"] += 1

    def _readable(self) -> None:
        recvmsg = self.sock.recvmsg
        rows = self.records.rx if self.records is not None else None
        transcode = self.transcode
        by_address = self.by_address
        unpack_mark = MARK.unpack_from
        unpack_seq_ts = SEQ_TS.unpack_from
        step = TS_STEP[PCMU_PT]
        while True:
            try:
                data, ancdata, _, address = recvmsg(2048, ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if len(data) < 20 or data[0] < 128 or rows is None:
                self.counters["stray"] += 1
                continue
            if 192 <= data[1] <= 223:
                self.counters["rtcp"] += 1
                continue
            if transcode:
                call = by_address.get(address)
                if call is None:
                    self.counters["stray"] += 1
                    continue
                _, ts = unpack_seq_ts(data, 2)
                if call.first_ts < 0:
                    call.first_ts = ts
                index, k = call.index, ((ts - call.first_ts) & 0xFFFFFFFF) // step
            else:
                index, k = unpack_mark(data, 12)
            rows.extend((index, k, kernel_time(ancdata)))

    def prepare_stream(self, records: Records) -> None:
        self.records = records
        pcmu = None
        if self.transcode:
            from telebridge.media.g711 import encode_ulaw

            pcmu = encode_ulaw(tone(8000, 160, frequency=350.0))
        for call in self.calls.values():
            payload = pcmu if call.payload_type == PCMU_PT and pcmu is not None else bytes(80)
            header = SEQ_TS.size
            call.packet = bytearray(b"\x80" + bytes([call.payload_type]) + bytes(header) + call.ssrc.to_bytes(4, "big") + payload)
            SEQ_TS.pack_into(call.packet, 2, secrets.randbits(16), secrets.randbits(32))

    def sender(self, packets: int, calls: list[PlainCall]):
        sendto = self.sock.sendto
        assert self.records is not None
        tx = self.records.tx
        pack_mark = MARK.pack_into
        pack_seq_ts = SEQ_TS.pack_into
        time_ns = time.time_ns
        bases = {id(c): SEQ_TS.unpack_from(c.packet, 2) for c in calls}
        steps = {id(c): TS_STEP[OPUS_PT if c.payload_type != PCMU_PT else PCMU_PT] for c in calls}
        marked = not self.transcode

        def send(call: PlainCall, k: int) -> None:
            packet = call.packet
            seq0, ts0 = bases[id(call)]
            pack_seq_ts(packet, 2, (seq0 + k) & 0xFFFF, (ts0 + k * steps[id(call)]) & 0xFFFFFFFF)
            if marked:
                pack_mark(packet, 12, call.index, k)
            now = time_ns()
            try:
                sendto(packet, call.remote)
            except OSError:
                return
            tx[call.index * packets + k] = now

        return send


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    control = await commands()
    phone = Phone(args.codec == "transcode")
    uas: SipUas | None = None
    ready: dict[str, Any] = {"rtp_port": phone.port}
    if args.system == "telebridge":
        loop = asyncio.get_running_loop()
        _, uas = await loop.create_datagram_endpoint(
            lambda: SipUas(phone, args.user, args.password, (LOOPBACK, args.sip_port)), local_addr=(LOOPBACK, 0)
        )
        response = await uas.register_alone()
        ready["registered"] = response.status
    emit("ready", **ready)
    while True:
        command = await next_command(control)
        if command["cmd"] == "targets":
            for index, host, port, pt in command["targets"]:
                phone.add(PlainCall(index, (host, port), pt), f"ng-{index}")
            emit("targets", calls=len(phone.calls))
        elif command["cmd"] == "stream":
            packets = int(command["packets"])
            live = set(command.get("live", range(args.calls)))
            calls = [c for c in phone.calls.values() if c.index in live]
            records = Records(args.calls, packets)
            phone.prepare_stream(records)
            gc.collect()
            gc.disable()
            cpu, waited, split = cpu_seconds(), runqueue_wait(), cpu_split()
            with phone.polled():
                await paced(int(command["start_ns"]), packets, calls, phone.sender(packets, calls), records, phone.poll, float(command.get("drain", 0.5)))
            used, waited = cpu_seconds() - cpu, runqueue_wait() - waited
            gc.enable()
            records.save(Path(args.out), "phone")
            emit("streamed", cpu_s=used, runq_wait_s=waited, sys_s=cpu_split()[1] - split[1], calls=len(calls), counters=phone.counters, invites=uas.invites if uas else 0, **records.lag_summary())
        elif command["cmd"] == "exit":
            await asyncio.sleep(float(command.get("linger", 0)))
            emit("done", byes=uas.byes if uas else 0)
            return


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["telebridge", "rtpengine"], required=True)
    parser.add_argument("--codec", choices=["relay", "transcode"], default="relay")
    parser.add_argument("--calls", type=int, required=True, help="caller indexes run 0..calls-1")
    parser.add_argument("--sip-port", type=int)
    parser.add_argument("--user", default="phone")
    parser.add_argument("--password", default="")
    parser.add_argument("--profile", help="write a cProfile of this process here (diagnosis)")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.profile:
        import cProfile

        cProfile.run("asyncio.run(main(arguments))", arguments.profile)
    else:
        asyncio.run(main(arguments))
