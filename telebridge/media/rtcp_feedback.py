"""Keyframe requests in RTCP (PLI, RFC 4585 §6.3.1; FIR, RFC 5104 §4.3.1), sans-I/O.

A relayed video stream needs the receiver's "send me a keyframe" to reach
the sender, or a picture that broke on loss stays broken. The two legs
number their streams differently, so a request is read on one leg and
written anew on the other with that leg's SSRCs (rewriting in place would
leave the other side's SSRCs in it).

Rules of operation:

* Reading is total: any bytes give a (possibly empty) list; a compound
  packet may carry several requests among reports.
* FIR carries a sequence number per request (RFC 5104 §4.3.1.2): a new
  request has a new one, a repeat the same. The writer keeps its own
  count per leg, so the far sender sees each new request once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PSFB = 206  # payload-specific feedback
PLI_FMT = 1
FIR_FMT = 4
_HEADER = struct.Struct("!BBH")
_SSRCS = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    """One PLI or FIR: who asks (``sender``) for a keyframe of which stream (``media``)."""

    kind: str  # "pli" or "fir"
    sender: int
    media: int
    fir_seq: int = 0


def keyframe_requests(compound: bytes) -> list[KeyframeRequest]:
    """Every PLI and FIR entry in a compound RTCP packet (nothing for anything else)."""
    out: list[KeyframeRequest] = []
    offset = 0
    while offset + 4 <= len(compound):
        first, pt, words = _HEADER.unpack_from(compound, offset)
        end = offset + 4 * (words + 1)
        if first >> 6 != 2 or end > len(compound):
            break
        fmt = first & 0x1F
        if pt == PSFB and end - offset >= 12:
            sender, media = _SSRCS.unpack_from(compound, offset + 4)
            if fmt == PLI_FMT:
                out.append(KeyframeRequest("pli", sender, media))
            elif fmt == FIR_FMT:
                # FCI entries: SSRC of the stream asked, sequence number, 3 reserved bytes.
                for entry in range(offset + 12, end - 7, 8):
                    target, seq = struct.unpack_from("!IB", compound, entry)
                    out.append(KeyframeRequest("fir", sender, target, seq))
        offset = end
    return out


def build_pli(sender: int, media: int) -> bytes:
    """A Picture Loss Indication from ``sender`` about stream ``media``."""
    return _HEADER.pack(0x80 | PLI_FMT, PSFB, 2) + _SSRCS.pack(sender, media)


def build_fir(sender: int, media: int, seq: int) -> bytes:
    """A Full Intra Request from ``sender`` for stream ``media`` (media SSRC field 0, §4.3.1.1)."""
    return _HEADER.pack(0x80 | FIR_FMT, PSFB, 4) + _SSRCS.pack(sender, 0) + struct.pack("!IB3x", media, seq & 0xFF)


class KeyframeRelay:
    """Turns requests read on one leg into requests for the other leg's sender."""

    def __init__(self) -> None:
        self._fir_seq = 0
        self._last_fir: dict[int, int] = {}

    def translate(self, request: KeyframeRequest, our_ssrc: int, their_ssrc: int) -> bytes | None:
        """The request to send: from ``our_ssrc`` about ``their_ssrc`` (the far sender's stream);
        ``None`` for a repeated FIR (same sequence number: already passed on)."""
        if request.kind == "pli":
            return build_pli(our_ssrc, their_ssrc)
        if self._last_fir.get(request.sender) == request.fir_seq:
            return None
        self._last_fir[request.sender] = request.fir_seq
        self._fir_seq = (self._fir_seq + 1) & 0xFF
        return build_fir(our_ssrc, their_ssrc, self._fir_seq)
