"""The softphone page in headless Chromium, driven over JSON lines like chromium_peer.py.

Run as a script, this file is the driver: it launches Debian's Chromium
through Playwright (never ``playwright install``), its fake microphone
playing a WAV tone, and obeys one JSON command per line on stdin with one
JSON line on stdout each (commands run concurrently; ids pair them up):

  -> {"id": 1, "op": "open", "page": "alice", "url": "https://127.0.0.1:PORT/?user=alice&dev=1"}
  <- {"id": 1, "ok": true, "value": null}       or  {"id": 1, "ok": false, "error": "..."}

"open_blank" opens a page without waiting for window.softphone, and
"add_script" ({"page": ..., "path": FILE}) runs a local script in it: a
test page of our own (a SIP library, say) under the gateway's origin.

Imported, it gives the test side two clients with the same page methods:
:class:`SoftphoneBrowser` blocks (plain pytest tests: the gateway is a
separate process); :class:`TwistedSoftphoneBrowser` returns Deferreds
(tests that run peers under the reactor). Each page gets its own browser
context, so its own localStorage and RFC 5626 instance id::

    with SoftphoneBrowser(tone_hz=440) as browser:
        alice = browser.open("alice", f"https://127.0.0.1:{port}/?user=alice&dev=1")
        alice.wait_state(registration="registered")
        alice.call("echo")
        alice.wait_state(call="connected")
        alice.frequency(seconds=1.0)  # {"hz": 440.1, "level": -23.5, "rms": 0.04, "snr": 41.2, ...}
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import wave
from pathlib import Path
from typing import Any, Callable

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
MAX_FRAMES = 500

# The dominant frequency of a page's remote audio: a WebAudio AnalyserNode
# on the MediaStream at a property path under window (a path, not code: the
# softphone page's CSP forbids eval), power spectra summed over the window,
# the peak bin refined by parabolic interpolation of its neighbours' dB values.
FREQUENCY = """async ([seconds, path]) => {
  const stream = path.split(".").reduce((object, key) => object && object[key], window);
  if (!stream) throw new Error(`no remote stream at window.${path}`);
  const context = new AudioContext();
  await context.resume();
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const power = new Float64Array(analyser.frequencyBinCount);
  const snapshots = [];
  const samples = new Float32Array(analyser.fftSize);
  let frames = 0, squares = 0, count = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    analyser.getFloatFrequencyData(bins);
    const snapshot = bins.map((value) => Math.pow(10, value / 10));
    for (let i = 0; i < bins.length; i++) power[i] += snapshot[i];
    snapshots.push(snapshot);
    analyser.getFloatTimeDomainData(samples);
    for (const s of samples) squares += s * s;
    count += samples.length;
    frames++;
  }
  const binHz = context.sampleRate / analyser.fftSize;
  source.disconnect();
  await context.close();
  let peak = 2;
  for (let i = 3; i < power.length - 1; i++) if (power[i] > power[peak]) peak = i;
  const db = (i) => 10 * Math.log10(power[i] / frames + 1e-30);
  const [a, b, c] = [db(peak - 1), db(peak), db(peak + 1)];
  const curve = a - 2 * b + c;
  const offset = curve !== 0 ? Math.max(-0.5, Math.min(0.5, 0.5 * (a - c) / curve)) : 0;
  // Signal-to-noise of one spectrum: the tone's main lobe (Blackman window: +-4 bins) against
  // every other bin. Reported per snapshot (the median, and the worst): a glitch the page's
  // own playout makes while the machine stalls it spoils one snapshot, not the codec's figure.
  const snrOf = (spectrum) => {
    let tone = 0, rest = 0;
    for (let i = 2; i < spectrum.length; i++) (Math.abs(i - peak) <= 4 ? (tone += spectrum[i]) : (rest += spectrum[i]));
    return 10 * Math.log10(tone / (rest + 1e-30));
  };
  const each = snapshots.map(snrOf).sort((x, y) => x - y);
  const snr = each.length ? each[Math.floor(each.length / 2)] : -Infinity;
  const worst = each.length ? each[0] : -Infinity;
  return {hz: (peak + offset) * binHz, level: b, rms: Math.sqrt(squares / Math.max(count, 1)), frames, snr, worst};
}"""

STATS = """async () => {
  const pc = window.softphone.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const byId = new Map();
  let inbound = null, outbound = null, transport = null, pair = null;
  report.forEach((s) => {
    byId.set(s.id, s);
    if (s.type === "inbound-rtp" && s.kind === "audio") inbound = s;
    if (s.type === "outbound-rtp" && s.kind === "audio") outbound = s;
    if (s.type === "transport") transport = s;
  });
  if (transport && transport.selectedCandidatePairId) pair = byId.get(transport.selectedCandidatePairId) || null;
  if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
  const local = pair && byId.get(pair.localCandidateId);
  const remote = pair && byId.get(pair.remoteCandidateId);
  const codec = inbound && byId.get(inbound.codecId);
  return {
    inbound: inbound && {
      ssrc: inbound.ssrc, audioLevel: inbound.audioLevel ?? null, packetsReceived: inbound.packetsReceived,
      packetsLost: inbound.packetsLost, bytesReceived: inbound.bytesReceived, jitter: inbound.jitter,
      codec: codec ? codec.mimeType : null,
    },
    outbound: outbound && {ssrc: outbound.ssrc, packetsSent: outbound.packetsSent, bytesSent: outbound.bytesSent},
    pair: pair && {
      state: pair.state, localType: local && local.candidateType, remoteType: remote && remote.candidateType,
      localProtocol: local && local.protocol, relayProtocol: (local && local.relayProtocol) || null,
      remoteAddress: remote && remote.address, remotePort: remote && remote.port,
    },
    ice: pc.iceConnectionState,
    connection: pc.connectionState,
  };
}"""


def write_tone_wav(path: Path, hz: float, seconds: float = 1.0, rate: int = 48000, amplitude: float = 0.5) -> Path:
    """A mono 16-bit sine WAV; Chromium loops it as the fake microphone.

    Use a whole number of cycles in ``seconds`` (440 Hz in 1 s) so the loop has no click.
    """
    frames = int(seconds * rate)
    peak = int(amplitude * 32767)
    data = b"".join(struct.pack("<h", round(peak * math.sin(2 * math.pi * hz * i / rate))) for i in range(frames))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
    return path


def _driver_command(wav: Path | None) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve())]
    return command + ([str(wav)] if wav is not None else [])


def _state_condition(registration: str | None, call: str | None) -> str:
    checks = []
    if registration is not None:
        checks.append(f"window.softphone.state.registration === {json.dumps(registration)}")
    if call is not None:
        checks.append(f"window.softphone.state.call === {json.dumps(call)}")
    return " && ".join(checks) or "true"


class SoftphonePage:
    """One softphone page; every method is one driver command.

    With :class:`SoftphoneBrowser` they return values; with
    :class:`TwistedSoftphoneBrowser`, Deferreds firing with those values.
    """

    def __init__(self, request: Callable[..., Any], name: str) -> None:
        self._request = request
        self.name = name

    def evaluate(self, expression: str, arg: Any = None, timeout: float = 30) -> Any:
        """``page.evaluate(expression, arg)``: an expression, or a function taking ``arg``."""
        return self._request("eval", page=self.name, expression=expression, arg=arg, timeout=timeout)

    def wait_for(self, condition: str, timeout: float = 15) -> Any:
        """Wait until the JavaScript ``condition`` is true in the page."""
        return self._request("wait", page=self.name, condition=condition, timeout=timeout)

    def wait_state(self, registration: str | None = None, call: str | None = None, timeout: float = 15) -> Any:
        """Wait for ``softphone.state`` to show this registration and/or call state."""
        return self.wait_for(_state_condition(registration, call), timeout)

    def state(self) -> Any:
        """``softphone.state``: registration, call, held, remoteHeld, muted."""
        return self.evaluate("window.softphone.state")

    def last_error(self) -> Any:
        """``softphone.lastError``: the human message ("" when none)."""
        return self.evaluate("window.softphone.lastError")

    def sign_in(self, token: str) -> Any:
        return self.evaluate("(token) => window.softphone.signIn(token)", token)

    def sign_in_dev(self, user: str) -> Any:
        return self.evaluate("(user) => window.softphone.signInDev(user)", user)

    def sign_out(self) -> Any:
        return self.evaluate("() => window.softphone.signOut()")

    def call(self, target: str) -> Any:
        """Start a call; it returns at once: wait for the state after."""
        return self.evaluate("(target) => window.softphone.call(target)", target)

    def answer(self) -> Any:
        return self.evaluate("() => window.softphone.answer()")

    def reject(self) -> Any:
        return self.evaluate("() => window.softphone.reject()")

    def hangup(self) -> Any:
        return self.evaluate("() => window.softphone.hangup()")

    def hold(self) -> Any:
        return self.evaluate("() => window.softphone.hold()")

    def restart_ice(self) -> Any:
        return self.evaluate("() => window.softphone.restartIce()")

    def resume(self) -> Any:
        return self.evaluate("() => window.softphone.resume()")

    def mute(self, muted: bool = True) -> Any:
        return self.evaluate("(muted) => window.softphone.mute(muted)", muted)

    def send_dtmf(self, digits: str) -> Any:
        """True when RTCDTMFSender took the digits."""
        return self.evaluate("(digits) => window.softphone.sendDtmf(digits)", digits)

    def drop_socket(self) -> Any:
        """Close the WebSocket abnormally (code 4000): the page reconnects."""
        return self.evaluate("() => window.softphone.dropSocket()")

    def frequency(self, seconds: float = 1.0, stream: str = "softphone.remoteStream") -> Any:
        """The dominant frequency of the remote audio at ``window.<stream>``: {"hz", "level" (dB), "rms", "frames",
        "snr" (dB, the median over the 100 ms snapshots), "worst" (the lowest snapshot's SNR)}."""
        return self._request("eval", page=self.name, expression=FREQUENCY, arg=[seconds, stream], timeout=seconds + 15)

    def stats(self) -> Any:
        """getStats(): inbound-rtp (ssrc, audioLevel, ...), outbound-rtp, the selected pair's candidate types."""
        return self.evaluate(STATS)

    def add_script(self, path: Path) -> Any:
        """Run the script file ``path`` in the page (a ``<script>`` element with its text)."""
        return self._request("add_script", page=self.name, path=str(path))

    def frames(self) -> Any:
        """SIP frames over the page's WebSockets so far: [{"dir": "sent"|"received", "data": text}]."""
        return self._request("frames", page=self.name)

    def errors(self) -> Any:
        """Uncaught exceptions and console errors in the page so far."""
        return self._request("errors", page=self.name)

    def close(self) -> Any:
        """Close the page as a user closing the tab does (pagehide runs)."""
        return self._request("close", page=self.name)


class SoftphoneError(Exception):
    """A driver command failed (an exception in the page, a timeout, ...)."""


class _Browser:
    """What both clients share: the tone file, ids, commands."""

    def __init__(self, tone_hz: float | None, workdir: Path | None) -> None:
        self.wav: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if tone_hz is not None:
            if workdir is None:
                self._tmp = tempfile.TemporaryDirectory()
                workdir = Path(self._tmp.name)
            self.wav = write_tone_wav(workdir / f"tone-{tone_hz:g}hz.wav", tone_hz)
        self._ids = itertools.count(1)

    def request(self, op: str, timeout: float = 30, **args: Any) -> Any:
        raise NotImplementedError


class SoftphoneBrowser(_Browser):
    """The driver as a child process, with blocking calls."""

    def __init__(self, tone_hz: float | None = None, workdir: Path | None = None) -> None:
        super().__init__(tone_hz, workdir)
        self.process = subprocess.Popen(
            _driver_command(self.wav), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self._lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream: Any, sink: Callable[[str], None]) -> None:
        for line in stream:
            sink(line)
        sink("")

    def open(self, name: str, url: str) -> SoftphonePage:
        """Open the page in a fresh browser context, once window.softphone exists."""
        self.request("open", page=name, url=url)
        return SoftphonePage(self.request, name)

    def open_blank(self, name: str, url: str) -> SoftphonePage:
        """Open ``url`` in a fresh browser context as it is (any status), for scripts of our own.

        A URL the gateway answers 404 gives a page of its origin without the
        softphone page's CSP (which forbids inline scripts): add_script()
        then loads a SIP library there that uses the gateway as same-origin.
        Chromium's local-network checks refuse a page fulfilled by the driver
        itself a WebSocket to 127.0.0.1, so the page must come from the gateway.
        """
        self.request("open_blank", page=name, url=url)
        return SoftphonePage(self.request, name)

    def request(self, op: str, timeout: float = 30, **args: Any) -> Any:
        """Send one command and wait for its answer."""
        ident = next(self._ids)
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"id": ident, "op": op, "timeout": timeout, **args}) + "\n")
        self.process.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout + 30)
        except queue.Empty:
            raise SoftphoneError(f"{op}: no answer from the driver in {timeout + 30} s") from None
        if not line:
            raise SoftphoneError(f"the driver ended:\n{''.join(self.stderr)}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise SoftphoneError(f"{op}: {answer['error']}")
        return answer["value"]

    def close(self) -> None:
        """Quit Chromium and the driver."""
        if self.process.poll() is None:
            try:
                self.request("quit", timeout=10)
            except SoftphoneError:
                pass
            # The driver reads stdin in a thread; end of input lets it exit.
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SoftphoneBrowser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TwistedSoftphoneBrowser(_Browser):
    """The driver as a child process of the reactor; every call returns a Deferred."""

    def __init__(self, tone_hz: float | None = None, workdir: Path | None = None, reactor: Any = None) -> None:
        from twisted.internet import defer, protocol
        from twisted.internet import reactor as default_reactor

        super().__init__(tone_hz, workdir)
        self.reactor = reactor or default_reactor
        self._waiting: dict[int, defer.Deferred[Any]] = {}
        self.stderr = b""
        self.ended: defer.Deferred[None] = defer.Deferred()
        owner = self

        class Driver(protocol.ProcessProtocol):
            buffer = b""

            def outReceived(self, data: bytes) -> None:
                self.buffer += data
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    owner._answer(json.loads(line))

            def errReceived(self, data: bytes) -> None:
                owner.stderr += data

            def processEnded(self, reason: Any) -> None:
                for waiting in list(owner._waiting.values()):
                    waiting.errback(SoftphoneError(f"the driver ended:\n{owner.stderr.decode(errors='replace')}"))
                owner._waiting.clear()
                owner.ended.callback(None)

        self._driver = Driver()
        command = _driver_command(self.wav)
        self.reactor.spawnProcess(self._driver, command[0], command, env=None)

    def _answer(self, answer: dict[str, Any]) -> None:
        waiting = self._waiting.pop(answer["id"], None)
        if waiting is None:
            return
        if answer["ok"]:
            waiting.callback(answer["value"])
        else:
            waiting.errback(SoftphoneError(answer["error"]))

    def open(self, name: str, url: str) -> Any:
        """Open the page in a fresh browser context; the Deferred fires with the page."""
        page = SoftphonePage(self.request, name)
        return self.request("open", page=name, url=url).addCallback(lambda _: page)

    def request(self, op: str, timeout: float = 30, **args: Any) -> Any:
        """Send one command; the Deferred fires with its answer."""
        from twisted.internet import defer

        ident = next(self._ids)
        waiting: defer.Deferred[Any] = defer.Deferred()
        self._waiting[ident] = waiting
        self._driver.transport.write((json.dumps({"id": ident, "op": op, "timeout": timeout, **args}) + "\n").encode())  # type: ignore[union-attr]
        waiting.addTimeout(timeout + 30, self.reactor)
        return waiting

    def close(self) -> Any:
        """Quit; the Deferred fires when the driver has exited."""
        self.request("quit", timeout=10).addErrback(lambda _: None)
        self._driver.transport.closeStdin()  # type: ignore[union-attr]
        self.ended.addBoth(lambda _: self._tmp.cleanup() if self._tmp is not None else None)
        return self.ended


# ---- the driver ---------------------------------------------------------------


async def _serve(wav: str | None) -> None:
    from playwright.async_api import async_playwright

    flags = FLAGS + ([f"--use-file-for-fake-audio-capture={wav}"] if wav else [])
    pages: dict[str, Any] = {}
    frames: dict[str, list[dict[str, str]]] = {}
    errors: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def reply(ident: int, ok: bool, value: Any) -> None:
        key = "value" if ok else "error"
        sys.stdout.write(json.dumps({"id": ident, "ok": ok, key: value}) + "\n")
        sys.stdout.flush()

    async def new_page(name: str) -> Any:
        context = await browser.new_context(ignore_https_errors=True)

        page = await context.new_page()
        pages[name], frames[name], errors[name] = page, [], []

        def record(direction: str, payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
            frames[name].append({"dir": direction, "data": text})
            del frames[name][:-MAX_FRAMES]

        def on_websocket(ws: Any) -> None:
            ws.on("framesent", lambda payload: record("sent", payload))
            ws.on("framereceived", lambda payload: record("received", payload))

        page.on("websocket", on_websocket)
        page.on("pageerror", lambda error: errors[name].append(f"uncaught: {error}"))
        page.on("console", lambda message: message.type == "error" and errors[name].append(message.text))
        return page

    async def open_page(name: str, url: str) -> None:
        page = await new_page(name)
        await page.goto(url)
        await wait_for(page, "window.softphone !== undefined", 15)

    async def open_blank(name: str, url: str) -> None:
        page = await new_page(name)
        await page.goto(url)

    async def wait_for(page: Any, condition: str, timeout: float) -> None:
        # Polled with evaluate: wait_for_function builds its predicate with
        # eval, which the page's Content-Security-Policy forbids.
        deadline = loop.time() + timeout
        while not await page.evaluate(condition):
            if loop.time() > deadline:
                state = await page.evaluate("JSON.stringify(window.softphone && window.softphone.state)")
                raise TimeoutError(f"{condition} still false after {timeout} s; state {state}")
            await asyncio.sleep(0.05)

    async def run(command: dict[str, Any]) -> Any:
        op, name, timeout_ms = command["op"], command.get("page"), command.get("timeout", 30) * 1000
        if op == "open":
            return await open_page(name, command["url"])
        if op == "open_blank":
            return await open_blank(name, command["url"])
        if op == "add_script":
            await pages[name].add_script_tag(path=command["path"])
            return None
        if op == "eval":
            return await asyncio.wait_for(pages[name].evaluate(command["expression"], command.get("arg")), timeout_ms / 1000)
        if op == "wait":
            return await wait_for(pages[name], command["condition"], timeout_ms / 1000)
        if op == "frames":
            return frames[name]
        if op == "errors":
            return errors[name]
        if op == "close":
            page = pages.pop(name)
            await page.close()
            await page.context.close()
            return None
        if op == "quit":
            done.set()
            return None
        raise ValueError(f"unknown op {op!r}")

    async def handle(command: dict[str, Any]) -> None:
        try:
            reply(command["id"], True, await run(command))
        except Exception as error:  # every failure goes back to the test as text
            reply(command["id"], False, f"{type(error).__name__}: {error}")

    async def read_commands() -> None:
        while not done.is_set():
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                done.set()
                return
            asyncio.ensure_future(handle(json.loads(line)))

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        reader = asyncio.ensure_future(read_commands())
        await done.wait()
        reader.cancel()
        await browser.close()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1] if len(sys.argv) > 1 else None))
