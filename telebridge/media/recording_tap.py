"""Decodes both directions of a call for its recording, beside the relay, sans-I/O.

Rules of operation:

* A tap, not a stage: it reads each RTP packet before the relay rewrites
  it and never changes what is forwarded, so a relayed call stays
  untouched and a recording fault cannot hurt the call.
* Each side's payload types name its codecs (from the SDP that side
  agreed); every codec is decoded to the recording's 16 kHz, Opus
  straight by libopus, G.711 through the resampler, G.722 natively.
  telephone-event, comfort noise and unknown types are not voice.
* Packets go in as they arrive, stamped with the reactor's time; the
  recording lines the two channels up by that time (a pause or hold on
  one side becomes silence there).
* A payload that does not decode is skipped: the recording gets a gap,
  the call nothing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from telebridge.media.recording import CallRecording
from telebridge.media.resample import Resampler
from telebridge.media.transcode import rtp_payload
from telebridge.media.voice_codecs import NATIVE_PCM_RATE, UndecodablePayload, VoiceDecoder, make_decoder

RECORDING_RATE = 16000


class _SideDecoder:
    """One side's voice, whatever codec each packet carries, at the recording rate."""

    def __init__(self, codecs: dict[int, str]) -> None:
        self.codecs = {pt: name for pt, name in codecs.items() if name in ("opus", *NATIVE_PCM_RATE)}
        self._decoders: dict[int, tuple[VoiceDecoder, Callable[[np.ndarray], np.ndarray] | None]] = {}

    def decode(self, packet: bytearray) -> np.ndarray | None:
        pt = packet[1] & 0x7F
        name = self.codecs.get(pt)
        payload = rtp_payload(packet) if name is not None else None
        if not payload:
            return None
        if pt not in self._decoders:
            decoder = make_decoder(name, RECORDING_RATE)  # type: ignore[arg-type]
            resampler = Resampler(decoder.pcm_rate, RECORDING_RATE).process if decoder.pcm_rate != RECORDING_RATE else None
            self._decoders[pt] = (decoder, resampler)
        decoder, resampler = self._decoders[pt]
        try:
            pcm = decoder.decode(payload)
        except UndecodablePayload:
            return None
        return resampler(pcm) if resampler is not None else pcm


class RecordingTap:
    """Feeds a :class:`CallRecording`: the caller on channel 0, the callee on channel 1."""

    def __init__(self, recording: CallRecording, browser_codecs: dict[int, str], sip_codecs: dict[int, str], caller_is_browser: bool) -> None:
        self.recording = recording
        self._browser = _SideDecoder(browser_codecs)
        self._sip = _SideDecoder(sip_codecs)
        self._browser_channel = 0 if caller_is_browser else 1

    def from_browser(self, packet: bytearray, now: float) -> None:
        pcm = self._browser.decode(packet)
        if pcm is not None:
            self.recording.add(self._browser_channel, pcm, now)

    def from_sip(self, packet: bytearray, now: float) -> None:
        pcm = self._sip.decode(packet)
        if pcm is not None:
            self.recording.add(1 - self._browser_channel, pcm, now)
