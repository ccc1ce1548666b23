"""CPU cost of Opus through each candidate Python binding, per 20 ms frame.

Candidates (issue 5 §2): telebridge.media.opus (our cffi binding to Debian's
libopus.so.0), opuslib (ctypes, same library), PyAV (FFmpeg's libopus wrapper
on the libopus its wheel bundles; FFmpeg's own Opus decoder too). Each is
timed with process CPU time over the same frames, best of --repeats runs.
A "bare" row per library calls libopus through cffi with every buffer made
beforehand: the least a Python caller can pay, so a binding's per-call
overhead is its time minus the bare time on the same library.
Writes bench/results/<date>-opus-bindings.md.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/opus_bindings.py [--frames N] [--repeats N]
"""

from __future__ import annotations

import datetime
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import opuslib
from cffi import FFI

from cpu_timing import cpu_us, fmt, frame_arguments, voice_frames
from telebridge.media import opus

BITRATE = 32000
MAX_PACKET = 1275


def paired_overhead_us(floor: tuple[Callable[[Any], object], list[Any]], wrapped: tuple[Callable[[Any], object], list[Any]], repeats: int) -> float:
    """Mean over calls of (binding's CPU time − bare call's), the two
    called in turn on twin codec states fed the same item, so that load from
    other processes and the codec's own frame-to-frame variation cancel.
    Which goes first alternates: the second finds the input and libopus's
    code already in cache."""
    (bare, bare_items), (call, items) = floor, wrapped
    clock, differences = time.process_time_ns, []
    for _ in range(repeats):
        for index, (bare_item, item) in enumerate(zip(bare_items, items)):
            first, second, sign = (bare, call, 1) if index % 2 else (call, bare, -1)
            first_item, second_item = (bare_item, item) if index % 2 else (item, bare_item)
            start = clock()
            first(first_item)
            middle = clock()
            second(second_item)
            differences.append(sign * ((clock() - middle) - (middle - start)))
    return statistics.fmean(differences) / 1000


class Bare:
    """libopus through cffi with nothing around the call."""

    def __init__(self, path: str) -> None:
        self.ffi = FFI()
        self.ffi.cdef(opus._CDEF)
        self.lib = self.ffi.dlopen(path)
        self.version = self.ffi.string(self.lib.opus_get_version_string()).decode()

    def encoder(self, rate: int, complexity: int, frames: list[np.ndarray]) -> tuple[Callable[[Any], object], list[Any]]:
        ffi, lib = self.ffi, self.lib
        state = lib.opus_encoder_create(rate, 1, opus.APPLICATION_VOIP, ffi.new("int *"))
        lib.opus_encoder_ctl(state, opus._SET_BITRATE, ffi.cast("int32_t", BITRATE))
        lib.opus_encoder_ctl(state, opus._SET_COMPLEXITY, ffi.cast("int32_t", complexity))
        out, n, encode = ffi.new("unsigned char[]", MAX_PACKET), rate // 50, lib.opus_encode
        return (lambda pcm: encode(state, pcm, n, out, MAX_PACKET)), [ffi.from_buffer("int16_t[]", f) for f in frames]

    def decoder(self, rate: int, packets: list[bytes]) -> tuple[Callable[[Any], object], list[Any]]:
        ffi, lib = self.ffi, self.lib
        state = lib.opus_decoder_create(rate, 1, ffi.new("int *"))
        pcm, n, decode = ffi.new("int16_t[]", rate * 120 // 1000), rate * 120 // 1000, lib.opus_decode
        items = [(ffi.from_buffer("unsigned char[]", p), len(p)) for p in packets]
        return (lambda item: decode(state, item[0], item[1], pcm, n, 0)), items


def own_encoder(rate: int, complexity: int, frames: list[np.ndarray]) -> tuple[Callable[[Any], object], list[Any]]:
    encoder = opus.OpusEncoder(rate, bitrate=BITRATE, complexity=complexity, fec=False, expected_loss_percent=0)
    return encoder.encode, frames


def own_decoder(rate: int, packets: list[bytes]) -> tuple[Callable[[Any], object], list[Any]]:
    return opus.OpusDecoder(rate).decode, packets


def opuslib_encoder(rate: int, complexity: int, frames: list[np.ndarray]) -> tuple[Callable[[Any], object], list[Any]]:
    encoder = opuslib.Encoder(rate, 1, "voip")
    encoder.bitrate, encoder.complexity = BITRATE, complexity
    n = rate // 50
    return (lambda pcm: encoder.encode(pcm, n)), [f.tobytes() for f in frames]


def opuslib_decoder(rate: int, packets: list[bytes]) -> tuple[Callable[[Any], object], list[Any]]:
    decoder, n = opuslib.Decoder(rate, 1), rate // 50
    return (lambda packet: decoder.decode(packet, n)), packets


def pyav_encoder(rate: int, complexity: int, frames: list[np.ndarray]) -> tuple[Callable[[Any], object], list[Any]]:
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format, context.bit_rate = rate, "mono", "s16", BITRATE
    context.options = {"application": "voip", "compression_level": str(complexity), "frame_duration": "20"}
    pts = iter(range(0, 1 << 62, rate // 50))

    def encode(pcm: np.ndarray) -> list[bytes]:
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, next(pts)
        return [bytes(packet) for packet in context.encode(frame)]

    return encode, [f.reshape(1, -1) for f in frames]


def pyav_decoder(codec: str) -> Callable[[int, list[bytes]], tuple[Callable[[Any], object], list[Any]]]:
    def make(rate: int, packets: list[bytes]) -> tuple[Callable[[Any], object], list[Any]]:
        context = av.CodecContext.create(codec, "r")
        context.sample_rate, context.layout = rate, "mono"
        return (lambda packet: [f.to_ndarray() for f in context.decode(av.Packet(packet))]), packets

    return make


def pyav_libopus_path() -> str:
    libs = Path(av.__file__).parent.parent / "av.libs"
    return str(next(libs.glob("libopus*.so*")))


def main() -> None:
    args = frame_arguments()
    frames48, frames8 = voice_frames(48000, args.frames), voice_frames(8000, args.frames)
    # Everyone decodes the same packets: voice at complexity 10, 32 kbit/s.
    reference = opus.OpusEncoder(48000, bitrate=BITRATE, complexity=10, fec=False, expected_loss_percent=0)
    packets = [reference.encode(f) for f in frames48]
    system, bundled = Bare(opus.LIBRARY), Bare(pyav_libopus_path())

    candidates: list[tuple[str, str, Any, Any, Bare | None]] = [
        ("bare cffi call (floor)", system.version, system.encoder, system.decoder, None),
        ("telebridge.media.opus (cffi)", system.version, own_encoder, own_decoder, system),
        ("opuslib 3.0.1 (ctypes)", system.version, opuslib_encoder, opuslib_decoder, system),
        ("bare cffi call (floor)", bundled.version, bundled.encoder, bundled.decoder, None),
        (f"PyAV {av.__version__}, FFmpeg libopus", bundled.version, pyav_encoder, pyav_decoder("libopus"), bundled),
        (f"PyAV {av.__version__}, FFmpeg native decoder", "FFmpeg opus", None, pyav_decoder("opus"), None),
    ]
    cases, slots = [], []
    for encoder, decoder in (c[2:4] for c in candidates):
        made = [encoder(48000, 5, frames48), encoder(48000, 10, frames48), encoder(8000, 5, frames8)] if encoder else []
        made += [decoder(48000, packets), decoder(8000, packets)]
        slots.append(range(len(cases), len(cases) + len(made)))
        cases += made
    times = cpu_us(cases, args.repeats)
    rows = []
    for (name, version, encoder, _, floor_of), slot in zip(candidates, slots):
        cells: list[float | None] = [times[i] for i in slot]
        rows.append((name, version, cells if encoder else [None] * 3 + cells, floor_of))
    lines, overheads = [], []
    for (name, version, cells, floor_of), (_, _, encoder, decoder, _) in zip(rows, candidates):
        overhead: list[float | None] = [None, None]
        if floor_of is not None:
            overhead = [
                paired_overhead_us(floor_of.encoder(8000, 5, frames8), encoder(8000, 5, frames8), args.repeats),
                paired_overhead_us(floor_of.decoder(48000, packets), decoder(48000, packets), args.repeats),
            ]
        overheads.append(overhead)
        lines.append(f"| {name} | {version} | " + " | ".join(fmt(c) for c in [*cells, *overhead]) + " |")
    floor, own, lib, av_floor, av_ = (rows[i][2] for i in range(5))
    own_over, lib_over, av_over = overheads[1], overheads[2], overheads[4]
    av_floor_version = rows[3][1]
    per_call_second = (own[2] + own[4]) * 50 / 1000  # type: ignore[operator]
    today = datetime.date.today().isoformat()
    report = f"""# Opus bindings, {today}

Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, one process, CPU time (time.process_time).
Frames: {args.frames} × 20 ms mono int16 of a voice-like signal, best of {args.repeats} runs after a warm-up.
Encode: {BITRATE // 1000} kbit/s, OPUS_APPLICATION_VOIP, in-band FEC off, expected loss 0 %, complexity 5 or 10; "8 kHz in" hands the encoder 160-sample frames at an
8 kHz input rate (what PCMU/PCMA decode to). Decode: the same {len(packets)} packets (complexity 10) for every binding, to 48 kHz
and straight to 8 kHz. Overhead: the mean, over every frame, of the binding's CPU time minus the bare cffi call's on the same libopus, the two
called in turn on twin codec states with the same input (encode 8 kHz in c5; decode to 48 kHz), so that other load on the
machine cancels. Repeated runs on this shared 2-core machine moved every figure by a few µs (opuslib's decode overhead more).

| binding | libopus | enc 48k c5 µs | enc 48k c10 µs | enc 8k in c5 µs | dec 48k µs | dec to 8k µs | enc overhead µs | dec overhead µs |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

Conclusion: telebridge.media.opus, our own cffi binding to Debian's libopus0, is the choice. It adds
{fmt(own_over[0])} µs per encode and {fmt(own_over[1])} µs per decode to libopus's own cost, against {fmt(lib_over[0])} and
{fmt(lib_over[1])} µs for opuslib (ctypes; every decode builds a new ctypes array type and buffer) and {fmt(av_over[0])} and
{fmt(av_over[1])} µs for PyAV (an AudioFrame, a Packet and FFmpeg's frame machinery per call), so what is left
is the codec itself. PyAV's bundled {av_floor_version} is faster than Debian's 1.3.1 at complexity 10
({fmt(av_floor[1])} against {fmt(floor[1])} µs bare), but its wrapper gives most of that back and it is no faster at complexity 5
or from 8 kHz, where transcoding runs; it also offers no loss concealment for a packet that never came nor the FEC decode of
the next one (FFmpeg's libopus decoder always passes decode_fec = 0), which the jitter buffer of issue 5 needs. The cffi
binding takes and returns int16 numpy arrays without a conversion, exposes PLC and FEC directly, follows Debian's security
updates of libopus0 rather than a copy frozen inside a wheel, and a newer Debian libopus0 brings the complexity-10 gain to
it unchanged. For Opus <-> PCMU, encoding from 8 kHz PCM at complexity 5 and decoding straight to 8 kHz costs
{fmt(own[2])} + {fmt(own[4])} µs per 20 ms, {per_call_second:.1f} ms of CPU per call-second against issue 5's budget of 6.5 ms for
everything, with no resampler on that path: libopus takes and gives 8 kHz PCM itself.
"""
    out = Path(__file__).parent / "results" / f"{today}-opus-bindings.md"
    out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
