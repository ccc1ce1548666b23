"""A relayed video stream inside the browser leg's BUNDLE, and its keyframe requests, sans-I/O.

The browser sends audio and video on one transport with one SRTP context;
the SIP side has a plain leg per stream. Video is relayed untouched (VP8,
H.264: the codec both sides share), only renumbered like audio.

Rules of operation:

* Demultiplexing by payload type: every payload type of the browser's video
  m-line is video (a BUNDLE's payload types are unique across its m-lines,
  RFC 9143 §7.5.1); the audio path and its RTCP statistics never see a
  video packet.
* Video has its own outgoing numbering (one SSRC, 90 kHz) and its own RTCP
  statistics and reports, so each stream's loss and jitter stay its own.
* Keyframe requests (PLI, FIR) cross the gateway: a request read on one leg
  about the stream we send there becomes a request on the other leg about
  the stream that leg's peer sends us (:class:`~telebridge.media.rtcp_feedback.KeyframeRelay`).
  Toward the browser it is always a PLI, which every browser answers; toward
  the SIP side the kind is kept (older SIP video phones know FIR only). A
  SIP side that negotiated no keyframe feedback is also asked by SIP INFO
  (RFC 5168 picture_fast_update), at most once a second.
* A video stream has no media timeout: a camera may pause, the call's
  audio decides whether the peer is gone.
"""

from __future__ import annotations

from typing import Callable

from telebridge.media.legs import OutgoingStream, RtcpTermination
from telebridge.media.rtcp_feedback import KeyframeRelay, build_pli, keyframe_requests

VIDEO_CLOCK = 90000
INFO_INTERVAL = 1.0  # seconds between keyframe requests by SIP INFO (each is a SIP transaction)


class VideoPath:
    """The video stream of a browser leg: which packets are video, how we number ours."""

    def __init__(self, payload_types: set[int]) -> None:
        self.payload_types = frozenset(payload_types)
        self.outgoing = OutgoingStream.new(VIDEO_CLOCK)
        self.rtcp = RtcpTermination(VIDEO_CLOCK)
        self.packets_in = 0
        self.packets_out = 0
        self.on_rtp: Callable[[bytearray, float], None] = lambda packet, now: None

    def media_in(self, packet: bytearray, now: float) -> None:
        self.packets_in += 1
        self.rtcp.media_in(packet, now)
        self.on_rtp(packet, now)


class KeyframeRequests:
    """Passes keyframe requests between the browser's video and the SIP side's video leg.

    ``browser_ssrcs`` and ``sip_ssrcs`` give, when asked, (the SSRC we send
    with on that side, the SSRC that side's peer sends us, or ``None`` before
    its first packet)."""

    def __init__(
        self,
        browser_ssrcs: Callable[[], tuple[int, int | None]],
        sip_ssrcs: Callable[[], tuple[int, int | None]],
    ) -> None:
        self._browser_ssrcs = browser_ssrcs
        self._sip_ssrcs = sip_ssrcs
        self._toward_sip = KeyframeRelay()
        self.to_browser = 0
        self.to_sip = 0
        #: Asks the SIP side for a keyframe by SIP INFO (when it negotiated no RTCP feedback).
        self.ask_sip_by_info: Callable[[], None] | None = None
        self._info_at: float | None = None

    def from_browser(self, compound: bytes, now: float) -> bytes | None:
        """RTCP from the browser: the request for the SIP side's sender, if it asked for a keyframe of our video."""
        ours, _ = self._browser_ssrcs()
        sip_ours, sip_theirs = self._sip_ssrcs()
        if sip_theirs is None:
            return None
        for request in keyframe_requests(compound):
            if request.media == ours:
                translated = self._toward_sip.translate(request, sip_ours, sip_theirs)
                if translated is not None:
                    self.to_sip += 1
                    self._by_info(now)
                return translated
        return None

    def _by_info(self, now: float) -> None:
        if self.ask_sip_by_info is not None and (self._info_at is None or now - self._info_at >= INFO_INTERVAL):
            self._info_at = now
            self.ask_sip_by_info()

    def from_sip(self, compound: bytes) -> bytes | None:
        """RTCP from the SIP side: a PLI for the browser's sender, if it asked for a keyframe of our video."""
        ours, _ = self._sip_ssrcs()
        if any(request.media == ours for request in keyframe_requests(compound)):
            return self.pli_for_browser()
        return None

    def pli_for_browser(self) -> bytes | None:
        """A PLI asking the browser's video sender for a keyframe (``None`` before it has sent any video)."""
        browser_ours, browser_theirs = self._browser_ssrcs()
        if browser_theirs is None:
            return None
        self.to_browser += 1
        return build_pli(browser_ours, browser_theirs)
