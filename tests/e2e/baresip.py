"""baresip 1.0 as a real SIP phone in tests, driven over its ctrl_tcp socket.

Each :class:`Baresip` is one process with its own configuration directory:
one account (digest credentials, auto-answer if asked), ``aufile`` playing
a generated tone as the microphone, ``aubridge`` as a loudspeaker nobody
listens to, and ``sndfile`` recording both directions of every call
(``dump-<time>-enc.wav`` what it sent, ``dump-<time>-dec.wav`` what it
received). ``ctrl_tcp`` carries netstring-framed JSON both ways: our
commands (the ``menu`` module's: dial, accept, hangup, hold, resume, ...)
and baresip's events (REGISTER_OK, CALL_ESTABLISHED, CALL_CLOSED, ...)::

    with Baresip(workdir, "bob", "127.0.0.1:5060", password="pw", tone_hz=1000) as phone:
        phone.dial("sip:alice@127.0.0.1:5060")
        phone.wait_event("CALL_ESTABLISHED")
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tests.e2e.harness import LOOPBACK, free_port, require_program, stop_process
from tests.e2e.wav_tone import seconds_of, write_tone

MODULES = Path("/usr/lib/baresip/modules")
# The aufile source ends the call when its file runs out (baresip 1.0
# treats end of file as an audio device error), so the tone outlasts any
# call a test makes.
TONE_SECONDS = 90
TONE_RATE = 8000


def _port_pair() -> int:
    """A free port whose successor is free too: baresip adds TLS on port + 1."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tls:
            try:
                tls.bind((LOOPBACK, port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free pair of loopback ports")


class BaresipError(AssertionError):
    """baresip did not start, refused a command, or an awaited event never came."""


@dataclass
class Baresip:
    """One baresip process with one account registered at ``registrar`` (``host:port``)."""

    workdir: Path
    user: str
    registrar: str
    password: str | None = None
    tone_hz: float = 1000.0
    auto_answer: bool = True
    codecs: tuple[str, ...] = ("PCMU/8000/1", "PCMA/8000/1")
    regint: int = 600
    #: "tls" registers and calls over TLS (the registrar then names the TLS port).
    transport: str = "udp"
    #: baresip's mediaenc, e.g. "srtp-mand": RTP/SAVP with SDES keys, nothing else.
    media_encryption: str | None = None
    sip_port: int = field(default_factory=_port_pair)
    ctrl_port: int = field(default_factory=lambda: free_port(both=False))
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.recording_dir = self.workdir / "recordings"
        self._events: list[dict[str, Any]] = []
        self._taken: dict[str, int] = {}
        self._responses: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._tokens = itertools.count(1)
        self._sock: socket.socket | None = None

    @property
    def aor(self) -> str:
        suffix = ";transport=tls" if self.transport == "tls" else ""
        return f"sip:{self.user}@{self.registrar}{suffix}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    # -- process -------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start baresip; ready once ctrl_tcp answers and, with a password, the account is registered."""
        baresip = require_program("baresip")
        self._write_config()
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [baresip, "-f", str(self.workdir / "config")],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        try:
            self._connect(deadline)
            if self.password is not None:
                self._wait_registered(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (baresip un-registers first), SIGKILL if it is still there after ``timeout``."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.process is None:
            return
        stop_process(self.process, timeout)
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> None:
        config = self.workdir / "config"
        config.mkdir(exist_ok=True)
        self.recording_dir.mkdir(exist_ok=True)
        tone = write_tone(self.workdir / f"tone-{self.tone_hz:g}hz.wav", self.tone_hz, TONE_SECONDS, TONE_RATE)
        # account last: an account's audio_codecs can name only codecs already loaded.
        modules = ["g711", "g722", "opus", "srtp", "aufile", "aubridge", "sndfile", "account"]
        lines = [
            "poll_method epoll",
            f"sip_listen {LOOPBACK}:{self.sip_port}",
            # Only the literal address works here: an interface name makes
            # baresip look for a routable address, and there is none.
            f"net_interface {LOOPBACK}",
            f"audio_path {self.workdir}",
            f"audio_source aufile,{tone}",
            "audio_player aubridge,speaker",
            "audio_alert aubridge,speaker",
            f"ausrc_srate {TONE_RATE}",
            f"auplay_srate {TONE_RATE}",
            "ausrc_channels 1",
            "auplay_channels 1",
            "rtcp_mux no",
            f"module_path {MODULES}",
            *(f"module {name}.so" for name in modules),
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}",
            f"snd_path {self.recording_dir}",
        ]
        (config / "config").write_text("\n".join(lines) + "\n")
        (config / "accounts").write_text(self._account_line() + "\n")
        (config / "contacts").write_text("")

    def _account_line(self) -> str:
        params = [
            f"regint={self.regint if self.password is not None else 0}",
            f"answermode={'auto' if self.auto_answer else 'manual'}",
            f"audio_codecs={','.join(self.codecs)}",
            "mwi=no",
        ]
        if self.media_encryption is not None:
            params.append(f"mediaenc={self.media_encryption}")
        if self.password is not None:
            params += [f"auth_user={self.user}", f"auth_pass={self.password}"]
        return f"<{self.aor}>;" + ";".join(params)

    # -- ctrl_tcp ------------------------------------------------------------------

    def _connect(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise BaresipError(f"baresip exited at start-up:\n{self.log_text()}")
            try:
                self._sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=0.5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"baresip's ctrl_tcp did not answer:\n{self.log_text()}") from None
                time.sleep(0.05)
        self._sock.settimeout(None)
        threading.Thread(target=self._read, args=(self._sock,), daemon=True).start()

    def _wait_registered(self, deadline: float) -> None:
        # REGISTER_OK may have gone out before we connected: ask instead
        # ("OK" in green is how reginfo shows a 200).
        while "\x1b[32mOK" not in self.command("reginfo"):
            if time.monotonic() > deadline:
                raise BaresipError(f"{self.aor} did not register:\n{self.log_text()}")
            with self._changed:
                self._changed.wait_for(lambda: self._has("REGISTER_OK"), timeout=0.2)

    def _read(self, sock: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
            while True:
                frame, buffer = _netstring(buffer)
                if frame is None:
                    break
                self._dispatch(json.loads(frame))
        with self._changed:
            self._changed.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._changed:
            if message.get("response"):
                self._responses[message.get("token", "")] = message
            elif message.get("event"):
                self._events.append(message)
            self._changed.notify_all()

    def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> str:
        """Run one baresip command; its printed output. A refused command raises."""
        if self._sock is None:
            raise BaresipError("baresip is not running")
        token = str(next(self._tokens))
        message: dict[str, str] = {"command": command, "token": token}
        if params is not None:
            message["params"] = params
        payload = json.dumps(message).encode()
        self._sock.sendall(b"%d:%s," % (len(payload), payload))
        with self._changed:
            if not self._changed.wait_for(lambda: token in self._responses, timeout=timeout):
                raise BaresipError(f"no answer to {command!r} in {timeout} s:\n{self.log_text()}")
            response = self._responses.pop(token)
        if not response.get("ok"):
            raise BaresipError(f"{command} {params or ''}: {response.get('data')}")
        return str(response.get("data", ""))

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def answer(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        self.command("hangup")

    def hold(self) -> None:
        """Put the call on hold: a re-INVITE with ``a=sendonly``; baresip then sends no audio."""
        self.command("hold")

    def resume(self) -> None:
        """Take the call off hold: a re-INVITE with ``a=sendrecv``."""
        self.command("resume")

    # -- events --------------------------------------------------------------------

    def _has(self, kind: str) -> bool:
        return any(event.get("type") == kind for event in self._events)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every event seen so far (of this type)."""
        with self._changed:
            return [dict(e) for e in self._events if kind is None or e.get("type") == kind]

    def wait_event(self, kind: str, timeout: float = 15.0, param: str | None = None, fresh: bool = False) -> dict[str, Any]:
        """The next event of this type (and ``param``) after the last one returned, or with
        ``fresh`` the next one still to come; waits up to ``timeout``."""

        def next_match() -> tuple[int, dict[str, Any]] | None:
            of_kind = [e for e in self._events if e.get("type") == kind]
            for index in range(self._taken.get(kind, 0), len(of_kind)):
                if param is None or of_kind[index].get("param") == param:
                    return index, of_kind[index]
            return None

        with self._changed:
            if fresh:
                self._taken[kind] = sum(1 for e in self._events if e.get("type") == kind)
            if not self._changed.wait_for(lambda: next_match() is not None, timeout=timeout):
                seen = [e.get("type") for e in self._events]
                raise BaresipError(f"no {kind} {param or ''} from {self.user} in {timeout} s; events so far: {seen}")
            match = next_match()
            assert match is not None
            self._taken[kind] = match[0] + 1
            return dict(match[1])

    # -- recordings ----------------------------------------------------------------

    def recordings(self, direction: str = "dec") -> list[Path]:
        """Recorded calls, oldest first: ``dec`` what baresip heard, ``enc`` what it sent.

        sndfile names files by the second the call's audio started, and in
        baresip 1.0 stops the ``dec`` file for good at the first re-INVITE
        that is not sendrecv (hold): the decoder's filters are flushed and
        never set up again while the encoder's still exist.
        """
        return sorted(self.recording_dir.glob(f"dump-*-{direction}.wav"), key=lambda p: p.name)

    def wait_for_audio(self, seconds: float, timeout: float = 15.0) -> Path:
        """The newest ``dec`` recording, once it holds ``seconds`` of received audio."""
        deadline = time.monotonic() + timeout
        while True:
            recordings = self.recordings("dec")
            if recordings and seconds_of(recordings[-1]) >= seconds:
                return recordings[-1]
            if time.monotonic() > deadline:
                raise BaresipError(f"{self.user} did not receive {seconds} s of audio in {timeout} s: {recordings}")
            time.sleep(0.1)


def _netstring(buffer: bytes) -> tuple[bytes | None, bytes]:
    """One ``LEN:DATA,`` frame off the front of ``buffer``, or None if it is not complete."""
    colon = buffer.find(b":")
    if colon < 0:
        return None, buffer
    length = int(buffer[:colon])
    end = colon + 1 + length
    if len(buffer) <= end:
        return None, buffer
    if buffer[end : end + 1] != b",":
        raise BaresipError(f"bad netstring from baresip: {buffer[:80]!r}")
    return buffer[colon + 1 : end], buffer[end + 1 :]
