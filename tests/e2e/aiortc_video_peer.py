"""aiortc playing a browser with a camera: offers audio (a 440 Hz tone) and video, then asks for a keyframe.

Started as ``aiortc_video_peer.py CODEC`` (VP8 or H264: the only video codec offered).
Protocol on stdin/stdout, one JSON object per line:
  <- {"offer": SDP}
  -> {"answer": SDP, "seconds": N, "pli_at": T}
or, started as ``aiortc_video_peer.py CODEC answer`` (the far side offers):
  -> {"offer": SDP, "seconds": N, "pli_at": T}
  <- {"answer": SDP}
then in both cases
  <- {"frames": n, "rms": x, "video_frames": n, "video_size": [w, h],
      "keyframe_requests": n, "pli_sent_for": ssrc, "connection": state}
At ``pli_at`` seconds after the answer it sends a PLI for the video it receives;
``keyframe_requests`` counts the PLI/FIR that reached its video sender.
Runs inside the test session's loopback-only namespace.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import sys

import aioice.ice
import numpy
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from aiortc_peer import Tone, negotiate  # this script's folder comes first on sys.path

# aioice skips loopback addresses; loopback is all there is here (PEERS.md).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

WIDTH, HEIGHT, FPS = 320, 240, 15


class MovingBars(MediaStreamTrack):
    """A camera stand-in: vertical bars sliding sideways, so every frame differs a little."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.bars = (numpy.arange(WIDTH) // 20 % 2 * 180 + 40).astype(numpy.uint8)

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(1 / FPS)
        row = numpy.roll(self.bars, self.count * 2)
        image = numpy.repeat(numpy.repeat(row[None, :, None], HEIGHT, axis=0), 3, axis=2)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = self.count * (90000 // FPS), fractions.Fraction(1, 90000)
        self.count += 1
        return frame


async def main(codec: str, answering: bool) -> None:
    pc = RTCPeerConnection()
    pc.addTrack(Tone())
    video = pc.addTransceiver(MovingBars(), direction="sendrecv")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == f"video/{codec}"])
    heard = {"frames": 0, "sum_squares": 0.0, "samples": 0, "video_frames": 0, "video_size": None, "keyframe_requests": 0}

    # Count the keyframe requests that reach the video sender (aiortc has no event for them).
    ask_keyframe = video.sender._send_keyframe

    def counted() -> None:
        heard["keyframe_requests"] += 1
        ask_keyframe()

    video.sender._send_keyframe = counted  # type: ignore[method-assign]

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def drain() -> None:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    heard["video_frames"] += 1
                    heard["video_size"] = [frame.width, frame.height]
                    continue
                data = frame.to_ndarray().astype(numpy.float64)
                heard["frames"] += 1
                heard["sum_squares"] += float((data**2).sum())
                heard["samples"] += data.size

        asyncio.ensure_future(drain())

    request = await negotiate(pc, answering)
    await asyncio.sleep(request["pli_at"])
    sources = video.receiver.getSynchronizationSources()
    pli_sent_for = sources[0].source if sources else None
    if pli_sent_for is not None:
        await video.receiver._send_rtcp_pli(pli_sent_for)
    await asyncio.sleep(request["seconds"] - request["pli_at"])
    rms = math.sqrt(heard["sum_squares"] / heard["samples"]) if heard["samples"] else 0.0
    report = {key: heard[key] for key in ("frames", "video_frames", "video_size", "keyframe_requests")}
    print(json.dumps({**report, "rms": rms, "pli_sent_for": pli_sent_for, "connection": pc.connectionState}), flush=True)
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:] == ["answer"]))
