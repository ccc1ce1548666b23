"""CPU cost of G.711 and G.722 per 20 ms frame, for each implementation measured.

G.711 (160 samples at 8 kHz): telebridge.media.g711 (numpy lookup tables)
against CPython 3.11's audioop (C, deprecated, gone in 3.13), as a floor.
G.722 (320 samples at 16 kHz, 64 kbit/s): telebridge.media.g722 (sippy's
libg722, PyPI g722), libg722's extension called bare, the same with its
optional G722-numpy backend if importable, and Debian's libspandsp2 through
cffi with every buffer made beforehand, as a wrapper of ours would call it.
Each G.722 candidate's bitstream and decoded PCM are also compared with
telebridge.media.g722's, on voice and on random payloads.
Each figure is process CPU time per frame, best of --repeats runs, every
run timing every case in turn so that other load falls on all alike.
Writes bench/results/<date>-g7xx-codecs.md.

    .venv/bin/python bench/g7xx_codecs.py [--frames N] [--repeats N]
    # G722-numpy is not a dependency; to measure it too:
    .venv/bin/pip install --target /tmp/g722np --no-deps g722-numpy==1.2.8
    PYTHONPATH=/tmp/g722np .venv/bin/python bench/g7xx_codecs.py
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cffi import FFI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from G722 import G722  # noqa: E402

from telebridge.media import g711  # noqa: E402
from telebridge.media.g722 import G722Decoder, G722Encoder  # noqa: E402
from cpu_timing import Case, cpu_us, fmt, frame_arguments, voice_frames  # noqa: E402


SPANDSP = "libspandsp.so.2"
SPANDSP_CDEF = """
typedef struct g722_encode_state_s g722_encode_state_t;
typedef struct g722_decode_state_s g722_decode_state_t;
g722_encode_state_t *g722_encode_init(g722_encode_state_t *s, int rate, int options);
int g722_encode(g722_encode_state_t *s, uint8_t g722_data[], const int16_t amp[], int len);
g722_decode_state_t *g722_decode_init(g722_decode_state_t *s, int rate, int options);
int g722_decode(g722_decode_state_t *s, int16_t amp[], const uint8_t g722_data[], int len);
"""


class Spandsp:
    """G.722 in Debian's libspandsp2 through cffi, buffers made once per object."""

    def __init__(self) -> None:
        self.ffi = FFI()
        self.ffi.cdef(SPANDSP_CDEF)
        self.lib = self.ffi.dlopen(SPANDSP)
        # A leak of two small states per object: fine for a benchmark.
        self.encoder_state = self.lib.g722_encode_init(self.ffi.NULL, 64000, 0)
        self.decoder_state = self.lib.g722_decode_init(self.ffi.NULL, 64000, 0)
        self.out = self.ffi.new("uint8_t[]", 4096)
        self.out_view = self.ffi.buffer(self.out)
        self.pcm = self.ffi.new("int16_t[]", 8192)
        self.pcm_array = np.frombuffer(self.ffi.buffer(self.pcm), dtype=np.int16)

    def encode(self, pcm: np.ndarray) -> bytes:
        if len(pcm) > 2 * len(self.out):
            raise ValueError("frame too long for the output buffer")
        written = self.lib.g722_encode(self.encoder_state, self.out, self.ffi.from_buffer("int16_t[]", pcm), len(pcm))
        return self.out_view[:written]

    def decode(self, payload: bytes) -> np.ndarray:
        if 2 * len(payload) > len(self.pcm_array):
            raise ValueError("payload too long for the PCM buffer")
        samples = self.lib.g722_decode(self.decoder_state, self.pcm, payload, len(payload))
        return self.pcm_array[:samples].copy()


def g722_candidates() -> list[tuple[str, Callable[[], Callable[[np.ndarray], bytes]], Callable[[], Callable[[bytes], np.ndarray]]]]:
    """(name, make an encode function, make a decode function returning int16 PCM) for each G.722 implementation."""
    version = importlib.metadata.version("g722")
    candidates = [
        (f"telebridge.media.g722 (libg722 {version})", lambda: G722Encoder().encode, lambda: G722Decoder().decode),
        (
            f"libg722 {version} extension, bare (decode gives array('h'))",
            lambda: G722(16000, 64000, use_numpy=False).encode,
            lambda: G722(16000, 64000, use_numpy=False).decode,
        ),
    ]
    if importlib.util.find_spec("G722_numpy") is not None:
        candidates.append(
            (
                f"libg722 {version} + G722-numpy {importlib.metadata.version('g722-numpy')}, bare",
                lambda: G722(16000, 64000, use_numpy=True).encode,
                lambda: G722(16000, 64000, use_numpy=True).decode,
            )
        )
    try:
        Spandsp()
    except OSError:
        print(f"{SPANDSP} missing: spandsp not measured (apt-get install libspandsp2)")
    else:
        candidates.append((f"libspandsp2 {spandsp_version()} via cffi", lambda: Spandsp().encode, lambda: Spandsp().decode))
    return candidates


def spandsp_version() -> str:
    """The installed Debian package's version, e.g. 0.0.6+dfsg-2+b1."""
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libspandsp2"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def main() -> None:
    args = frame_arguments()
    frames8, frames16 = voice_frames(8000, args.frames), voice_frames(16000, args.frames)

    # G.711: the same frames and the bytes they encode to, for every implementation.
    g711_rows: list[tuple[str, list[Case]]] = [
        (
            "telebridge.media.g711 (numpy tables)",
            [
                (g711.encode_ulaw, frames8),
                (g711.decode_ulaw, [g711.encode_ulaw(f) for f in frames8]),
                (g711.encode_alaw, frames8),
                (g711.decode_alaw, [g711.encode_alaw(f) for f in frames8]),
            ],
        )
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # Python 3.13 dropped it
            audioop = None
    if audioop is not None:
        raw = [f.tobytes() for f in frames8]
        g711_rows.append(
            (
                "audioop (CPython C, as bytes; removed in 3.13)",
                [
                    (lambda b: audioop.lin2ulaw(b, 2), raw),
                    (lambda b: audioop.ulaw2lin(b, 2), [audioop.lin2ulaw(b, 2) for b in raw]),
                    (lambda b: audioop.lin2alaw(b, 2), raw),
                    (lambda b: audioop.alaw2lin(b, 2), [audioop.lin2alaw(b, 2) for b in raw]),
                ],
            )
        )

    # G.722: everyone decodes the packets telebridge's encoder made of the voice.
    reference_encoder = G722Encoder()
    packets = [reference_encoder.encode(f) for f in frames16]
    reference_decoder = G722Decoder()
    reference_pcm = np.concatenate([reference_decoder.decode(p) for p in packets])
    garbage = np.random.default_rng(3).integers(0, 256, 160 * 500, dtype=np.uint8).tobytes()
    garbage_payloads = [garbage[i : i + 160] for i in range(0, len(garbage), 160)]
    reference_garbage = G722Decoder().decode(garbage)
    g722_rows: list[tuple[str, list[Case], str, str]] = []
    for name, make_encoder, make_decoder in g722_candidates():
        encode, decode = make_encoder(), make_decoder()
        same_bits = b"".join(encode(f) for f in frames16) == b"".join(packets)
        same_pcm = np.array_equal(np.concatenate([np.asarray(decode(p), dtype=np.int16) for p in packets]), reference_pcm)
        garbage_decode = make_decoder()
        heard = np.concatenate([np.asarray(garbage_decode(p), dtype=np.int16) for p in garbage_payloads])
        wrong = int(np.count_nonzero(heard != reference_garbage))
        garbage_note = "same" if wrong == 0 else f"{wrong} of {len(heard)} samples differ"
        agreement = f"{'same' if same_bits else 'DIFFERENT'} bits, {'same' if same_pcm else 'DIFFERENT'} PCM"
        g722_rows.append((name, [(make_encoder(), frames16), (make_decoder(), packets)], agreement, garbage_note))

    cases = [case for _, row in g711_rows for case in row] + [case for _, row, _, _ in g722_rows for case in row]
    times = iter(cpu_us(cases, args.repeats))
    g711_times = [(name, [next(times) for _ in row]) for name, row in g711_rows]
    g722_times = [(name, next(times), next(times), agreement, note) for name, _, agreement, note in g722_rows]
    g711_lines = [f"| {name} | " + " | ".join(fmt(t) for t in cells) + " |" for name, cells in g711_times]
    g722_lines = [f"| {name} | {fmt(enc)} | {fmt(dec)} | {agreement} | {note} |" for name, enc, dec, agreement, note in g722_times]
    own711 = g711_times[0][1]
    floor711 = g711_times[1][1] if len(g711_times) > 1 else None
    _, own_enc, own_dec, _, _ = g722_times[0]
    _, bare_enc, bare_dec, _, _ = g722_times[1]
    numpy_row = next((row for row in g722_times if "G722-numpy" in row[0]), None)
    spandsp = next((row for row in g722_times if row[0].startswith("libspandsp2")), None)
    floor711_text = (
        f"against audioop's C loop at {fmt(min(floor711))}-{fmt(max(floor711))} µs (and audioop leaves Python in 3.13)"
        if floor711
        else "(audioop, the C floor, is gone from this Python)"
    )
    numpy_text = (
        f"The optional G722-numpy backend decodes in {fmt(numpy_row[2])} µs against the bare extension's {fmt(bare_dec)}: "
        "not worth a second binary dependency."
        if numpy_row
        else "G722-numpy was not importable for this run."
    )
    spandsp_text = (
        f"Debian's libspandsp2 through cffi costs {fmt(spandsp[1])} and {fmt(spandsp[2])} µs, the same within this "
        f"shared machine's noise, and encodes bit for bit alike, but its decoder ({spandsp[4]} on random payloads) "
        "wraps around where libg722 and the ITU-T G.191 reference saturate: a loud or corrupt stream clicks at full "
        "scale through it."
        if spandsp
        else "libspandsp2 was not installed for this run."
    )
    today = datetime.date.today().isoformat()
    report = f"""# G.711 and G.722 codecs, {today}

Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, one process, CPU time (time.process_time).
Frames: {args.frames} × 20 ms mono int16 of a voice-like signal (160 samples at 8 kHz for G.711, 320 at 16 kHz for G.722),
best of {args.repeats} runs after a warm-up. Every figure is µs of CPU per 20 ms frame, call included.
G.722 decoders all decode the packets telebridge.media.g722 made of the voice; "agrees" compares each candidate's
bitstream and decoded PCM with telebridge.media.g722's on that voice, "random payloads" its decoding of
{len(garbage)} random bytes.

| G.711 | µ-law enc | µ-law dec | A-law enc | A-law dec |
|---|---|---|---|---|
{chr(10).join(g711_lines)}

| G.722, 64 kbit/s | enc µs | dec µs | agrees with telebridge.media.g722 | random payloads |
|---|---|---|---|---|
{chr(10).join(g722_lines)}

Conclusion: G.711 stays in numpy: one lookup in a table built at import costs {fmt(own711[0])} µs to encode and
{fmt(own711[1])} µs to decode a µ-law frame, {floor711_text}, and the tables match ITU-T G.191's reference G.711 on
all 65536 samples (tests/unit/test_g711.py). G.722 runs on sippy's libg722 (PyPI g722): {fmt(own_enc)} µs to encode
and {fmt(own_dec)} µs to decode a frame through telebridge.media.g722 (the bare extension: {fmt(bare_enc)} and
{fmt(bare_dec)}), {(own_enc + own_dec) * 50 / 1000:.2f} ms of CPU per call-second for G.722's part of a transcoded call.
{spandsp_text} libg722 matched the G.191 reference G.722 bit for bit on the reference's own speech files and, by the
digests in tests/unit/test_g722.py, matches it on noise, a square wave and random payloads, decoder included; libg722
was split out of spandsp, so the two agreeing elsewhere checks our binding more than the algorithm. {numpy_text}
Repeated runs on this shared 2-core machine moved the G.722 figures by 1-3 µs.
"""
    out = Path(__file__).parent / "results" / f"{today}-g7xx-codecs.md"
    out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
