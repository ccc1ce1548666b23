"""Per-stream call quality from what each leg counted and what its peer reported (RTCP).

Rules of operation:

* One :class:`StreamQuality` per relayed stream and leg: the browser's and
  the SIP side's audio, and their video when video was relayed.
* Received figures are ours (RFC 3550 Appendix A: packets, loss, jitter);
  RTT and the loss the peer saw of what we sent come from its reports, and
  are absent when it sent none.
* Read when a call ends (a log line, /metrics), never on the packet path.
"""

from __future__ import annotations

from dataclasses import dataclass

from telebridge.media.legs import PlainLeg, RtcpTermination, WebrtcLeg

# Above either, a stream counts as poor (ITU-T G.1020-style thresholds for voice).
POOR_LOSS = 0.03
POOR_JITTER_MS = 40.0


@dataclass(frozen=True, slots=True)
class StreamQuality:
    """What one leg saw of one stream."""

    leg: str  # "browser" or "sip"
    kind: str  # "audio" or "video"
    packets_in: int
    packets_out: int
    lost: int
    jitter_ms: float
    rtt_ms: float | None
    peer_lost: int | None  # what the peer reported losing of ours

    @property
    def loss(self) -> float:
        """The share of packets expected that never came."""
        expected = self.packets_in + max(self.lost, 0)
        return max(self.lost, 0) / expected if expected else 0.0

    @property
    def poor(self) -> bool:
        return self.loss > POOR_LOSS or self.jitter_ms > POOR_JITTER_MS

    def __str__(self) -> str:
        rtt = f"{self.rtt_ms:.0f} ms" if self.rtt_ms is not None else "-"
        peer = f", peer lost {self.peer_lost}" if self.peer_lost is not None else ""
        return (
            f"{self.leg} {self.kind}: in {self.packets_in} (lost {self.lost}, {100 * self.loss:.1f} %), "
            f"out {self.packets_out}, jitter {self.jitter_ms:.1f} ms, rtt {rtt}{peer}"
        )


def _stream(leg: str, kind: str, rtcp: RtcpTermination, packets_in: int, packets_out: int) -> StreamQuality:
    stats, quality = rtcp.receive_stats, rtcp.quality
    clock = stats.clock_rate or 1
    return StreamQuality(
        leg, kind, packets_in, packets_out,
        lost=stats.lost if stats.ssrc is not None else 0,
        jitter_ms=1000 * stats.jitter / clock,
        rtt_ms=1000 * quality.rtt if quality.rtt is not None else None,
        peer_lost=quality.remote_cumulative_lost if quality.reports_received else None,
    )


def call_quality(webrtc: WebrtcLeg, plain: PlainLeg, video_plain: PlainLeg | None) -> list[StreamQuality]:
    """Every relayed stream of a call, as each leg saw it."""
    video = webrtc.video
    browser_audio_in = webrtc.stats.packets_in - (video.packets_in if video is not None else 0)
    out = [
        _stream("browser", "audio", webrtc.rtcp, browser_audio_in, webrtc.stats.packets_out),
        _stream("sip", "audio", plain.rtcp, plain.stats.packets_in, plain.stats.packets_out),
    ]
    if video is not None and video_plain is not None:
        out += [
            _stream("browser", "video", video.rtcp, video.packets_in, video.packets_out),
            _stream("sip", "video", video_plain.rtcp, video_plain.stats.packets_in, video_plain.stats.packets_out),
        ]
    return out
