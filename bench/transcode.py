"""Transcoding cost: CPU per 20 ms frame per direction, and calls one core sustains.

Runs each direction's :class:`~telebridge.media.transcode.Transcoder` (jitter
buffer, decode, re-encode, RTP packetisation) on a stream of real packets,
as the relay would feed it, and times it with ``time.process_time``. The
relay's own per-packet work (SRTP, rewriting, sockets) comes on top: it is
measured by bench/relay_hot_path.py and added in the "per call-second" row.

    .venv/bin/python bench/transcode.py [--frames 3000] [--out bench/results/DATE-transcode.md]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import platform
import pstats
import struct
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu_timing import voice_frames  # noqa: E402
from telebridge.media.opus import OpusEncoder, libopus_version  # noqa: E402
from telebridge.media.transcode import Transcoder  # noqa: E402
from telebridge.media.voice_codecs import (  # noqa: E402
    RTP_CLOCK,
    TRANSCODING_COMPLEXITY,
    make_decoder,
    make_encoder,
    pcm_rate_between,
)

OPUS_PT = 111
STATIC_PT = {"pcmu": 0, "pcma": 8, "g722": 9}
# What the relay adds per call-second around the codecs (bench/results/2026-11-25-relay.md).
RELAY_MS_PER_CALL_SECOND = 0.65


def packets(codec: str, frames: int) -> list[bytearray]:
    """``frames`` 20 ms RTP packets of ``codec`` as a peer would send them."""
    if codec == "opus":
        encoder = OpusEncoder(48000)
        payloads = [encoder.encode(frame) for frame in voice_frames(48000, frames)]
        pt, ticks = OPUS_PT, 960
    else:
        rate = 16000 if codec == "g722" else 8000
        voice_encoder = make_encoder(codec, rate)
        payloads = [voice_encoder.encode(frame) for frame in voice_frames(rate, frames)]
        pt, ticks = STATIC_PT[codec], 160
    return [bytearray(struct.pack("!BBHII", 0x80, pt, n & 0xFFFF, n * ticks, 7) + p) for n, p in enumerate(payloads)]


def transcoder(source: str, sink: str) -> Transcoder:
    rate = pcm_rate_between(source, sink)
    source_pt = OPUS_PT if source == "opus" else STATIC_PT[source]
    sink_pt = OPUS_PT if sink == "opus" else STATIC_PT[sink]
    return Transcoder(make_decoder(source, rate), make_encoder(sink, rate), source_pt, sink_pt, RTP_CLOCK[source], RTP_CLOCK[sink])


def run(direction: Transcoder, stream: list[bytearray]) -> int:
    """Feed the stream at 20 ms intervals of simulated time; returns packets out."""
    out = 0

    def count(packet: bytearray, now: float) -> None:
        nonlocal out
        out += 1

    direction.on_packet = count
    for n, packet in enumerate(stream):
        now = n * 0.02
        direction.push(bytearray(packet), now)
        due = direction.get_timer()
        while due is not None and due <= now:
            direction.handle_timer(due)
            due = direction.get_timer()
    return out


def cpu_per_frame(source: str, sink: str, stream: list[bytearray], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        direction = transcoder(source, sink)
        start = time.process_time()
        produced = run(direction, stream)
        best = min(best, (time.process_time() - start) / max(produced, 1))
    return best * 1e6


def profile(source: str, sink: str, stream: list[bytearray]) -> str:
    direction = transcoder(source, sink)
    profiler = cProfile.Profile()
    profiler.enable()
    run(direction, stream)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(8)
    lines = [line for line in text.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(lines[start : start + 9])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    today = datetime.date.today().isoformat()
    out = args.out or Path(__file__).parent / "results" / f"{today}-transcode.md"

    streams = {codec: packets(codec, args.frames) for codec in ("opus", "pcmu", "pcma", "g722")}
    rows = []
    for other in ("pcmu", "pcma", "g722"):
        to_sip = cpu_per_frame("opus", other, streams["opus"], args.repeats)
        to_browser = cpu_per_frame(other, "opus", streams[other], args.repeats)
        per_call_second = 50 * (to_sip + to_browser) / 1000 + RELAY_MS_PER_CALL_SECOND
        rows.append((other, to_sip, to_browser, per_call_second, int(1000 / per_call_second)))
        print(f"opus <-> {other}: {to_sip:.1f} / {to_browser:.1f} µs per frame, {per_call_second:.2f} ms per call-second")
    report = [
        f"# Transcoding, {today}",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {libopus_version()}, one process, CPU time "
        f"(time.process_time), best of {args.repeats} runs of {args.frames} frames of a voice-like signal (bench/cpu_timing.voice_frames).",
        "Each direction is a whole Transcoder: jitter buffer, decode, encode (Opus: 32 kbit/s, "
        f"complexity {TRANSCODING_COMPLEXITY}, FEC on, "
        "from or to PCM at the G.7xx side's rate, no resampler of ours), RTP packetisation.",
        f"Per call-second adds the relay's {RELAY_MS_PER_CALL_SECOND} ms (SRTP, rewriting; bench/results/2026-11-25-relay.md).",
        "",
        "| codecs | browser -> SIP µs/frame | SIP -> browser µs/frame | ms CPU per call-second | calls per core |",
        "|---|---|---|---|---|",
        *(f"| Opus <-> {name.upper()} | {a:.1f} | {b:.1f} | {c:.2f} | {n} |" for name, a, b, c, n in rows),
        "",
        "Goal (issue 5): 150 Opus <-> PCMU calls on one core, 6.5 ms per call-second.",
        "",
        "Where the time goes, Opus -> PCMU (cProfile, by own time):",
        "",
        "```",
        profile("opus", "pcmu", streams["opus"]),
        "```",
        "",
        "And PCMU -> Opus:",
        "",
        "```",
        profile("pcmu", "opus", streams["pcmu"]),
        "```",
        "",
    ]
    out.write_text("\n".join(report))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
