"""Call recording: both directions of a call in one stereo WAV, written as the call goes.

Rules of operation:

* One file per call in the configured folder, ``<start, UTC>_<call id>.wav``,
  with a JSON sidecar of the same name. The call id comes from the network:
  anything outside ``[A-Za-z0-9._-]`` becomes ``_`` and it is cut to
  ``MAX_ID_CHARS``; the time in front keeps a name from being ``.`` or ``..``,
  and no ``/`` survives, so a name never leaves the folder. Files are created
  exclusively: a name already taken gets ``-2``, ``-3``... and nothing is
  ever overwritten.
* Channel 0 (left) is the caller, channel 1 (right) the callee: 16-bit PCM
  at the recording's rate, fed decoded, each chunk with the (reactor) time
  it arrived.
* The two directions come independently and irregularly (jitter, hold,
  DTX); arrival time lines them up. Sample 0 is the start of the first chunk
  heard on either side. A chunk continues its channel where the previous one
  ended, unless its time says it starts more than ``JUMP`` later: then the
  gap becomes silence (a pause, a hold, lost packets). A chunk whose time is
  behind its channel goes on at the channel's end all the same, never back
  over what is there, so a late burst shifts that channel a little later
  rather than overlapping itself.
* Audio is written once both channels have it, or, across a one-sided
  stretch, once it is ``HOLD`` old (the silent channel gets silence): a call
  holds about that much in memory; a long silence is kept as a count, not
  as samples.
* Crash safety: the header's sizes are valid from the start (no data) and
  rewritten, and the file synced to disk, each time ``SYNC_INTERVAL`` more
  audio is written; a crash leaves a valid WAV lacking at most the audio
  since: ``SYNC_INTERVAL`` plus ``HOLD``, one second at most.
* The sidecar is written at open (``end`` null, so a crash keeps the
  metadata), again when the codecs are known, and at close; each time
  atomically (temp file, then rename).
* Failures: a folder that cannot be used fails :meth:`CallRecording.open`
  with :class:`RecordingError` (whether the call goes on is the caller's
  decision). An I/O error later (disk full) stops the recording and sets
  ``failed``; nothing raises into the media path.
* RIFF sizes are 32 bits, so a WAV cannot pass 4 GiB (about 18 h of 16 kHz
  stereo, 6 h at 48 kHz). Writing stops at ``max_duration`` (``MAX_DURATION``,
  4 h, unless given) and in any case before that limit; the sidecar says
  ``truncated``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

MAX_ID_CHARS = 64
MAX_NAME_TRIES = 100
JUMP = 0.06  # a chunk this much later than its channel's end starts after silence
HOLD = 0.5  # how long a one-sided stretch waits for the silent side before writing
SYNC_INTERVAL = 0.5  # audio written between header rewrites + syncs: with HOLD, at most 1 s at risk
MAX_DURATION = 4 * 3600.0
WRITE_BLOCK = 1.0  # at most this much audio is put together for one write
CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_BYTES = CHANNELS * SAMPLE_BYTES
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
# The RIFF size (36 + data) must fit in 32 bits.
MAX_FRAMES = (0xFFFFFFFF - 36) // FRAME_BYTES
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_FILE_MODE = 0o640  # a recording is personal data: not world-readable
_DIR_MODE = 0o750


class RecordingError(Exception):
    """A recording could not be started (the folder or its files cannot be written)."""


def safe_stem(call_id: str, started: float) -> str:
    """The file name (without extension) for a call: start time, then the sanitised id."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    return f"{stamp}_{_UNSAFE.sub('_', call_id)[:MAX_ID_CHARS] or 'call'}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sync_to_disk(fd: int) -> None:
    # fdatasync is enough (data and size), and skips the timestamps fsync would flush too.
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


class _Track:
    """One channel's audio not written yet: chunks and silence runs (counts), in order."""

    def __init__(self) -> None:
        self.parts: deque[np.ndarray | int] = deque()
        self.pending = 0

    def append(self, pcm: np.ndarray) -> None:
        self.parts.append(pcm)
        self.pending += len(pcm)

    def silence(self, count: int) -> None:
        self.parts.append(count)
        self.pending += count

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` samples, silence past what is pending (the channel moves on)."""
        out = np.zeros(count, dtype=np.int16)
        filled = 0
        while filled < count and self.parts:
            part = self.parts[0]
            size = part if isinstance(part, int) else len(part)
            use = min(size, count - filled)
            if not isinstance(part, int):
                out[filled : filled + use] = part[:use]
            if use == size:
                self.parts.popleft()
            else:
                self.parts[0] = part - use if isinstance(part, int) else part[use:]
            filled += use
        self.pending = max(0, self.pending - count)
        return out

    def clear(self) -> None:
        self.parts.clear()
        self.pending = 0


class CallRecording:
    """One call's stereo WAV and sidecar; make one with :meth:`open`."""

    def __init__(
        self,
        folder: Path,
        stem: str,
        file: IO[bytes],
        call_id: str,
        caller: str,
        callee: str,
        started: float,
        sample_rate: int,
        max_duration: float,
    ) -> None:
        self.folder = folder
        self.path = folder / f"{stem}.wav"
        self.sidecar_path = folder / f"{stem}.json"
        self.call_id = call_id
        self.caller = caller
        self.callee = callee
        self.started = started
        self.sample_rate = sample_rate
        self.ended: float | None = None
        self.end_reason: str | None = None
        self.codec_names: tuple[str | None, str | None] = (None, None)
        #: Why the recording stopped early on an I/O error (``None`` while it is fine).
        self.failed: str | None = None
        #: Whether audio past ``max_duration`` was dropped.
        self.truncated = False
        self.closed = False
        self._file: IO[bytes] | None = file
        self._stem = stem
        self._tracks = (_Track(), _Track())
        self._written = 0  # frames in the file
        self._synced = 0  # frames the header covers
        self._now = 0  # furthest arrival seen, in frames since sample 0
        self._origin: float | None = None  # reactor time of sample 0
        self._stopped = False
        self._full = False  # stopped at the maximum duration
        self._limit = max(0, min(int(max_duration * sample_rate), MAX_FRAMES))
        self._jump = round(JUMP * sample_rate)
        self._hold = round(HOLD * sample_rate)
        self._sync_every = max(1, round(SYNC_INTERVAL * sample_rate))
        self._block = max(1, round(WRITE_BLOCK * sample_rate))

    @classmethod
    def open(
        cls,
        folder: Path,
        call_id: str,
        caller: str,
        callee: str,
        started: float,
        sample_rate: int = 16000,
        max_duration: float = MAX_DURATION,
    ) -> CallRecording:
        """Create the WAV (empty but valid) and the sidecar; :class:`RecordingError` if they cannot be."""
        if sample_rate <= 0:
            raise ValueError(f"sample rate {sample_rate} is not positive")
        folder = Path(folder)
        try:
            folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            stem, file = _create(folder, safe_stem(call_id, started))
        except OSError as e:
            raise RecordingError(f"cannot record into {folder}: {_reason(e)}") from e
        recording = cls(folder, stem, file, call_id, caller, callee, started, sample_rate, max_duration)
        try:
            recording._sync()
            recording._write_sidecar()
            _sync_folder(folder)
        except OSError as e:
            file.close()
            for path in (recording.path, recording.sidecar_path):
                path.unlink(missing_ok=True)
            raise RecordingError(f"cannot record into {folder}: {_reason(e)}") from e
        return recording

    @property
    def frames_written(self) -> int:
        """Stereo frames in the file so far."""
        return self._written

    def codecs(self, caller: str, callee: str) -> None:
        """The codec each party sends, for the sidecar (rewritten now, so a crash keeps them)."""
        self.codec_names = (caller, callee)
        if not self.closed:
            try:
                self._write_sidecar()
            except OSError:
                pass  # the open-time sidecar stays; the audio decides whether the recording failed

    def add(self, channel: int, pcm: np.ndarray, at: float) -> None:
        """One direction's decoded audio (int16, the recording's rate), received at reactor time ``at``."""
        if channel not in (0, 1):
            raise ValueError(f"channel {channel} is neither 0 (caller) nor 1 (callee)")
        if self._stopped:
            # Audio past the maximum is dropped; the sidecar says so.
            self.truncated = self.truncated or (self._full and not self.closed)
            return
        samples = np.asarray(pcm, dtype=np.int16).reshape(-1)
        count = len(samples)
        if not count:
            return
        if self._origin is None:
            self._origin = at - count / self.sample_rate
        # A chunk received at ``at`` is audio that ended then.
        end = round((at - self._origin) * self.sample_rate)
        self._now = max(self._now, end)
        track = self._tracks[channel]
        gap = (end - count) - (self._written + track.pending)
        if gap > self._jump:
            track.silence(gap)
        track.append(samples)
        cursors = [self._written + t.pending for t in self._tracks]
        # Whatever both sides have, and, for a one-sided stretch, what is older than HOLD.
        ready = max(min(cursors), min(self._now - self._hold, max(cursors)))
        try:
            self._write_until(ready)
        except OSError as e:
            self._fail(e)

    def close(self, ended: float, reason: str) -> None:
        """Write what is left, the final header and the sidecar; idempotent, never raises OSError."""
        if self.closed:
            return
        self.closed = True
        self.ended = ended
        self.end_reason = reason
        if not self._stopped:
            try:
                self._write_until(max(self._written + t.pending for t in self._tracks))
                self._finish_file()
            except OSError as e:
                self._fail(e)
        self._stopped = True
        try:
            self._write_sidecar()
            _sync_folder(self.folder)
        except OSError as e:
            if self.failed is None:
                self.failed = f"sidecar: {_reason(e)}"

    def _write_until(self, end: int) -> None:
        if end > self._limit:
            end = self._limit
            self.truncated = True
        while self._written < end:
            count = min(end - self._written, self._block)
            frames = np.empty(count * CHANNELS, dtype="<i2")
            frames[0::2] = self._tracks[0].take(count)
            frames[1::2] = self._tracks[1].take(count)
            assert self._file is not None
            self._file.write(frames.tobytes())
            self._written += count
        if self._written - self._synced >= self._sync_every:
            self._sync()
        if self._written >= self._limit:
            self._full = True
            self._finish_file()

    def _sync(self) -> None:
        """Header sizes to what is written, and all of it to disk."""
        file = self._file
        assert file is not None
        data = self._written * FRAME_BYTES
        rate = self.sample_rate
        header = _HEADER.pack(
            b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, CHANNELS, rate, rate * FRAME_BYTES, FRAME_BYTES, SAMPLE_BYTES * 8, b"data", data
        )
        file.seek(0)
        file.write(header)
        file.seek(_HEADER.size + data)
        file.flush()
        _sync_to_disk(file.fileno())
        self._synced = self._written

    def _finish_file(self) -> None:
        """Final header and close; nothing more is written."""
        self._stopped = True
        for track in self._tracks:
            track.clear()
        if self._file is not None:
            self._sync()
            self._file.close()
            self._file = None

    def _fail(self, error: OSError) -> None:
        self.failed = self.failed or _reason(error)
        self._stopped = True
        for track in self._tracks:
            track.clear()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the buffered tail could not be written either; the fd is closed all the same
            self._file = None

    def _sidecar(self) -> dict[str, Any]:
        ended = self.ended
        return {
            "call_id": self.call_id,
            "caller": self.caller,
            "callee": self.callee,
            "start": _iso(self.started),
            "start_unix": self.started,
            "end": _iso(ended) if ended is not None else None,
            "end_unix": ended,
            "duration": round(ended - self.started, 3) if ended is not None else None,
            "audio_seconds": round(self._written / self.sample_rate, 3),
            "sample_rate": self.sample_rate,
            "channels": {"left": "caller", "right": "callee"},
            "codecs": {"caller": self.codec_names[0], "callee": self.codec_names[1]},
            "end_reason": self.end_reason,
            "wav": self.path.name,
            "failed": self.failed,
            "truncated": self.truncated,
        }

    def _write_sidecar(self) -> None:
        temp = self.folder / f".{self._stem}.json.tmp"
        temp.unlink(missing_ok=True)  # left by a crash mid-write; ours, since the stem is
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(self._sidecar(), out, indent=2)
                out.write("\n")
                out.flush()
                _sync_to_disk(out.fileno())
            os.replace(temp, self.sidecar_path)
        except OSError:
            temp.unlink(missing_ok=True)
            raise


def _create(folder: Path, stem: str) -> tuple[str, IO[bytes]]:
    """A WAV created exclusively (never an existing file) under ``stem`` or ``stem-N``."""
    for n in range(1, MAX_NAME_TRIES + 1):
        name = stem if n == 1 else f"{stem}-{n}"
        if (folder / f"{name}.json").exists():
            continue  # a sidecar whose WAV was removed still keeps its name
        try:
            # O_EXCL also refuses a symlink planted under the name.
            fd = os.open(folder / f"{name}.wav", os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except FileExistsError:
            continue
        return name, os.fdopen(fd, "wb")
    raise FileExistsError(f"{MAX_NAME_TRIES} recordings named {stem} already")


def _sync_folder(folder: Path) -> None:
    """The new names to disk too (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
