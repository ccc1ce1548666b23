"""aiortc playing the browser: offers audio (a 440 Hz tone), takes an answer, reports what it heard.

Protocol on stdin/stdout, one JSON object per line:
  -> {"offer": SDP}
  <- {"answer": SDP, "seconds": N}
or, started with the argument ``answer``:
  <- {"offer": SDP, "seconds": N}
  -> {"answer": SDP}
then in both cases
  -> {"frames": n, "rms": x, "ice": state, "connection": state}
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
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

# aioice skips loopback addresses; loopback is all there is here (PEERS.md).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

RATE, SAMPLES = 48000, 960
# `aiortc_peer.py answer`: the far side offers (a call to the browser).
ANSWERING = sys.argv[1:] == ["answer"]


class Tone(MediaStreamTrack):
    """20 ms frames of a 440 Hz sine."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.pts = 0

    async def recv(self) -> AudioFrame:
        await asyncio.sleep(SAMPLES / RATE)
        t = (numpy.arange(SAMPLES) + self.pts) / RATE
        samples = (numpy.sin(2 * math.pi * 440 * t) * 8000).astype(numpy.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.pts, fractions.Fraction(1, RATE)
        self.pts += SAMPLES
        return frame


async def negotiate(pc: RTCPeerConnection, answering: bool) -> dict:
    """The offer/answer over stdin/stdout (see the module's protocol); the test's request back."""
    read = asyncio.get_running_loop().run_in_executor
    if answering:
        request = json.loads(await read(None, sys.stdin.readline))
        await pc.setRemoteDescription(RTCSessionDescription(request["offer"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        print(json.dumps({"answer": pc.localDescription.sdp}), flush=True)
    else:
        await pc.setLocalDescription(await pc.createOffer())
        print(json.dumps({"offer": pc.localDescription.sdp}), flush=True)
        request = json.loads(await read(None, sys.stdin.readline))
        await pc.setRemoteDescription(RTCSessionDescription(request["answer"], "answer"))
    return request


async def main() -> None:
    pc = RTCPeerConnection()
    pc.addTrack(Tone())
    heard = {"frames": 0, "sum_squares": 0.0, "samples": 0}

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def drain() -> None:
            while True:
                frame = await track.recv()
                data = frame.to_ndarray().astype(numpy.float64)
                heard["frames"] += 1
                heard["sum_squares"] += float((data**2).sum())
                heard["samples"] += data.size

        asyncio.ensure_future(drain())

    request = await negotiate(pc, ANSWERING)
    await asyncio.sleep(request["seconds"])
    rms = math.sqrt(heard["sum_squares"] / heard["samples"]) if heard["samples"] else 0.0
    print(json.dumps({"frames": heard["frames"], "rms": rms, "ice": pc.iceConnectionState, "connection": pc.connectionState}), flush=True)
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
