"""The browser-side generator process: N WebRTC callers on one event loop.

    python -m bench.loadgen.browser --system telebridge --calls N --web-port P --token-secret S --target phone
    python -m bench.loadgen.browser --system rtpengine --calls N --ng-port P --phone-rtp-port Q

Set-up (timed, reported in the ``ready`` event):

* telebridge: N WSS connections with a token each, N REGISTERs (times
  ``--register-rounds``), then N calls: INVITE (offer), 200 (answer), ACK,
  ICE check with USE-CANDIDATE, DTLS handshake. ``--window`` calls or
  registrations are in flight at once.
* rtpengine: per call, ng ``offer`` (WebRTC -> plain RTP/AVP) and ng
  ``answer`` with the SIP side's plain answer (the phone process's socket),
  then the same ICE and DTLS toward rtpengine. The plain side's addresses go
  to the orchestrator (``targets``) for the phone process.

Then, on ``stream``, every connected call sends 20 ms SRTP packets for the
window and records what comes back; on ``hangup`` it ends the calls (BYE,
or ng ``delete``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from telebridge.media.dtls import DtlsCertificate
from telebridge.sdp import parse_sdp

from bench.loadgen.ng import NgClient
from bench.loadgen.sipws import Dialog, WsSipUser, token_for
from bench.loadgen.webrtc import WebrtcCall, WebrtcMedia, sdp_address
from bench.loadgen.wire import (
    LOOPBACK,
    Records,
    commands,
    cpu_seconds,
    cpu_split,
    emit,
    media_socket,
    next_command,
    paced,
    raise_fd_limit,
    runqueue_wait,
    tone,
)

# ng flags for the same bridge telebridge makes: the browser's WebRTC offer
# becomes a plain RTP/AVP offer (no ICE, no DTLS, no SDES, RTCP on its own
# port); the plain answer becomes an ICE + DTLS-SRTP answer with rtcp-mux.
# "asymmetric": rtpengine sends to the addresses in the SDP instead of
# learning them from the first packets.
NG_OFFER = {
    "flags": ["trust-address", "asymmetric"],
    "replace": ["origin", "session-connection"],
    "transport-protocol": "RTP/AVP",
    "ICE": "remove",
    "DTLS": "off",
    "SDES": ["off"],
    "rtcp-mux": ["demux"],
}
NG_ANSWER = {
    "flags": ["trust-address"],
    "replace": ["origin", "session-connection"],
    "ICE": "force",
    "rtcp-mux": ["require"],
}
# rtpengine 10.5 encodes Opus with the channel count of the offered rtpmap
# (opus/48000/2, as every browser writes it): stereo, at 32 kbit/s (24 for
# mono). telebridge encodes mono at 32 kbit/s; for a like-for-like
# transcoding row rtpengine is offered opus/48000/1 and told the bitrate.
NG_TRANSCODE = {"codec": {"transcode": ["PCMU"], "set": ["opus/48000/1/32000"]}}


async def bounded(window: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run ``jobs`` with at most ``window`` in flight; results or exceptions, in order."""
    semaphore = asyncio.Semaphore(window)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)


def plain_answer(offer_sdp: str, port: int, transcode: bool) -> tuple[str, int, tuple[str, int]]:
    """The SIP side's answer to rtpengine's plain offer; (sdp, payload type, where to send)."""
    session = parse_sdp(offer_sdp)
    media = session.media[0]
    codecs = media.codecs()
    if transcode:
        chosen = next(c for c in codecs if c.name.upper() == "PCMU")
        rtpmap = f"a=rtpmap:{chosen.payload_type} PCMU/8000\r\n"
    else:
        chosen = next(c for c in codecs if c.name.lower() == "opus")
        rtpmap = f"a=rtpmap:{chosen.payload_type} opus/48000/2\r\n"
    sdp = (
        f"v=0\r\no=phone 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {chosen.payload_type}\r\n{rtpmap}a=sendrecv\r\n"
    )
    return sdp, chosen.payload_type, (sdp_address(session, media), media.port)


def opus_frame() -> bytes:
    """One real 20 ms Opus frame (mono 440 Hz), for calls the relay decodes."""
    from telebridge.media.opus import OpusEncoder

    encoder = OpusEncoder(48000, 1)
    pcm = tone(48000, 960 * 5)
    frames = [encoder.encode(pcm[i * 960 : (i + 1) * 960]) for i in range(5)]
    return frames[-1]


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    control = await commands()
    transcode = args.codec == "transcode"
    certificate = DtlsCertificate()
    media = WebrtcMedia(media_socket(), certificate, relay_mode=not transcode)
    calls = [WebrtcCall(i) for i in range(args.calls)]
    for call in calls:
        media.add(call)
    ready: dict[str, Any] = {"calls": args.calls}
    users: list[WsSipUser] = []
    dialogs: dict[int, Dialog] = {}
    targets: list[list[Any]] = []
    setup_times: list[float] = []
    ng: NgClient | None = None

    if args.system == "telebridge":
        users = [WsSipUser(f"lg{i:05d}", args.web_port, token_for(f"lg{i:05d}", args.token_secret)) for i in range(args.calls)]
        started, cpu = time.perf_counter(), cpu_seconds()
        results = await bounded(args.window, [u.connect for u in users])
        ready["wss_connect_s"] = time.perf_counter() - started
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            ready["wss_failures"] = len(failures)
            ready["wss_error"] = repr(failures[0])
        started, cpu = time.perf_counter(), cpu_seconds()
        jobs = [u.register for u in users for _ in range(args.register_rounds)]
        results = await bounded(args.window, jobs)
        elapsed = time.perf_counter() - started
        ok = sum(1 for r in results if not isinstance(r, BaseException) and r.status == 200)
        ready["registers_ok"] = ok
        ready["register_rate"] = ok / elapsed if elapsed > 0 else 0.0
        ready["register_gen_cpu"] = (cpu_seconds() - cpu) / elapsed if elapsed > 0 else 0.0

        async def setup(call: WebrtcCall) -> None:
            begun = time.perf_counter()
            dialog = Dialog(users[call.index], args.target)
            response = await dialog.invite(call.offer(media.port, certificate))
            if response.status != 200:
                raise RuntimeError(f"INVITE got {response.status}")
            dialogs[call.index] = dialog
            call.take_answer(response.body.decode(), certificate)
            await media.connect(call)
            setup_times.append(time.perf_counter() - begun)
    else:
        ng = await NgClient.connect(LOOPBACK, args.ng_port)
        await ng.request({"command": "ping"})

        async def setup(call: WebrtcCall) -> None:
            assert ng is not None
            begun = time.perf_counter()
            offer_sdp = call.offer(media.port, certificate)
            if transcode:
                offer_sdp = offer_sdp.replace("opus/48000/2", "opus/48000/1")
            call_id, from_tag, to_tag = f"lg-{call.index}-{time.time_ns()}", f"f{call.index}", f"t{call.index}"
            call.ng_ids = (call_id, from_tag)  # type: ignore[attr-defined]
            offer = await ng.request({"command": "offer", "call-id": call_id, "from-tag": from_tag, "sdp": offer_sdp, **NG_OFFER, **(NG_TRANSCODE if transcode else {})})
            answer_sdp, payload_type, where = plain_answer(offer["sdp"], args.phone_rtp_port, transcode)
            answer = await ng.request({"command": "answer", "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "sdp": answer_sdp, **NG_ANSWER})
            call.take_answer(answer["sdp"], certificate)
            targets.append([call.index, where[0], where[1], payload_type])
            await media.connect(call)
            setup_times.append(time.perf_counter() - begun)

    started, cpu = time.perf_counter(), cpu_seconds()
    results = await bounded(args.window, [lambda c=c: setup(c) for c in calls])
    elapsed = time.perf_counter() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    live = [c for c, r in zip(calls, results) if not isinstance(r, BaseException)]
    ready.update(
        calls_up=len(live),
        setup_s=elapsed,
        setup_rate=len(live) / elapsed if elapsed > 0 else 0.0,
        setup_gen_cpu=(cpu_seconds() - cpu) / elapsed if elapsed > 0 else 0.0,
        setup_p50_ms=float(np.percentile(setup_times, 50) * 1000) if setup_times else None,
        setup_p95_ms=float(np.percentile(setup_times, 95) * 1000) if setup_times else None,
        setup_errors=len(errors),
        setup_error=repr(errors[0]) if errors else None,
        targets=targets,
        live=[c.index for c in live],
    )
    emit("ready", **ready)

    while True:
        command = await next_command(control)
        if command["cmd"] == "stream":
            packets = int(command["packets"])
            records = Records(args.calls, packets)
            media.prepare_stream(records, opus_frame() if transcode else None)
            gc.collect()
            gc.disable()
            cpu, waited, split = cpu_seconds(), runqueue_wait(), cpu_split()
            with media.polled():
                await paced(int(command["start_ns"]), packets, live, media.sender(packets), records, media.poll, float(command.get("drain", 0.5)))
            used, waited = cpu_seconds() - cpu, runqueue_wait() - waited
            gc.enable()
            records.save(Path(args.out), "browser")
            emit("streamed", cpu_s=used, runq_wait_s=waited, sys_s=cpu_split()[1] - split[1], counters=media.counters, **records.lag_summary())
        elif command["cmd"] == "hangup":
            started = time.perf_counter()
            if args.system == "telebridge":
                byes = await bounded(args.window, [d.bye for d in dialogs.values()])
                ok = sum(1 for r in byes if not isinstance(r, BaseException) and r.status == 200)
                await asyncio.gather(*(u.close() for u in users), return_exceptions=True)
            else:
                assert ng is not None
                deletes = await bounded(args.window, [lambda c=c: ng.request({"command": "delete", "call-id": c.ng_ids[0], "from-tag": c.ng_ids[1]}) for c in live])
                ok = sum(1 for r in deletes if not isinstance(r, BaseException))
            media.close()
            emit("done", ended=ok, hangup_s=time.perf_counter() - started)
            return


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["telebridge", "rtpengine"], required=True)
    parser.add_argument("--codec", choices=["relay", "transcode"], default="relay")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--window", type=int, default=16, help="set-ups in flight at once")
    parser.add_argument("--register-rounds", type=int, default=1)
    parser.add_argument("--web-port", type=int)
    parser.add_argument("--token-secret")
    parser.add_argument("--target", default="phone")
    parser.add_argument("--ng-port", type=int)
    parser.add_argument("--phone-rtp-port", type=int)
    parser.add_argument("--profile", help="write a cProfile of this process here (diagnosis)")
    parser.add_argument("--out", required=True, help="directory for the records")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.profile:
        import cProfile

        cProfile.run("asyncio.run(main(arguments))", arguments.profile)
    else:
        asyncio.run(main(arguments))
