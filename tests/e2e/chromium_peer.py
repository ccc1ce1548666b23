"""Headless Chromium (Debian's, via Playwright) playing the browser; JSON lines like aiortc_peer.py.

  -> {"offer": SDP}
  <- {"answer": SDP, "seconds": N}
  -> {"inbound": {...inbound-rtp audio...}, "pair": {...selected candidate pair...}, "ice": ..., "connection": ...}
Started with the argument ``video``, it sends its fake camera too (320x240) and the
report adds "video_in" and "video_out" (inbound-rtp and outbound-rtp video stats).
Serves itself a blank page on loopback (getUserMedia needs a secure context).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import sys
import threading

from playwright.async_api import async_playwright

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
]

OFFER = """async (video) => {
  window.pc = new RTCPeerConnection({bundlePolicy: 'balanced', rtcpMuxPolicy: 'require'});
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: video && {width: 320, height: 240}});
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  pc.ontrack = (e) => {
    const sink = document.createElement(e.track.kind);
    sink.srcObject = new MediaStream([e.track]);
    document.body.appendChild(sink);
    sink.play();
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); }; setTimeout(r, 5000); });
  return pc.localDescription.sdp;
}"""

STATS = """async () => {
  const report = await pc.getStats();
  let inbound = null, pair = null, video_in = null, video_out = null;
  report.forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') inbound = s;
    if (s.type === 'inbound-rtp' && s.kind === 'video') video_in = s;
    if (s.type === 'outbound-rtp' && s.kind === 'video') video_out = s;
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
  });
  return {inbound, pair, video_in, video_out, ice: pc.iceConnectionState, connection: pc.connectionState};
}"""


def serve_blank_page() -> int:
    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>peer</title>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Blank)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


async def main() -> None:
    port = serve_blank_page()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        print(json.dumps({"offer": await page.evaluate(OFFER, sys.argv[1:] == ["video"])}), flush=True)
        request = json.loads(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
        await page.evaluate("async (sdp) => pc.setRemoteDescription({type: 'answer', sdp})", request["answer"])
        await asyncio.sleep(request["seconds"])
        print(json.dumps(await page.evaluate(STATS)), flush=True)
        await browser.close()


asyncio.run(main())
