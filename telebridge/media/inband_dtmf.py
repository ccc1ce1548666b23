"""DTMF tones inside the SIP side's G.711 audio, found and reported as digits, sans-I/O.

Many PBXs and IVRs (and every analogue gateway) play digits as tones in
the voice. A browser cannot read tones as key presses, so the gateway can
detect them (``[media] inband_dtmf``) and send the browser RFC 4733
events as well.

Rules of operation:

* A tap: each G.711 packet from the SIP side is decoded and fed to the
  Goertzel detector (``media/dtmf_detect.py``); the audio itself is
  forwarded untouched, tones included.
* A digit is reported once, when it ends, with the duration it lasted,
  so the regenerated event lasts as long as the tone did.
* Other codecs are not looked at: G.711 is what in-band digits survive
  in (compressed codecs distort them).
"""

from __future__ import annotations

from telebridge.media import g711
from telebridge.media.dtmf_detect import DtmfDetector
from telebridge.media.transcode import rtp_payload

DECODERS = {"pcmu": g711.decode_ulaw, "pcma": g711.decode_alaw}


class InbandDigits:
    """Digits in one stream of G.711 RTP packets."""

    def __init__(self, codecs: dict[int, str]) -> None:
        self._decoders = {pt: DECODERS[name] for pt, name in codecs.items() if name in DECODERS}
        self._detector = DtmfDetector()
        self.digits = 0

    @property
    def usable(self) -> bool:
        """Whether the stream has a G.711 codec to look into at all."""
        return bool(self._decoders)

    def packet(self, packet: bytearray) -> list[tuple[str, int]]:
        """The digits (and their durations in ms) that this packet completes."""
        decode = self._decoders.get(packet[1] & 0x7F)
        payload = rtp_payload(packet) if decode is not None else None
        if not payload:
            return []
        timestamp = int.from_bytes(packet[4:8], "big")
        ended = [(e.digit, e.duration_ms) for e in self._detector.process(decode(payload), timestamp) if e.end]  # type: ignore[misc]
        self.digits += len(ended)
        return ended
