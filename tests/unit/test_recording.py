"""Call recording: a stereo WAV lined up by arrival time, crash-safe header, JSON sidecar."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from telebridge.media.recording import CallRecording, RecordingError

RATE = 16000
FRAME = 320  # 20 ms
STARTED = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z


def tone(freq: float, count: int, offset: int = 0) -> np.ndarray:
    t = (np.arange(count) + offset) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def noise(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, count, dtype=np.int16)


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) of a WAV, checked to be 16-bit stereo at RATE."""
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert len(frames) == 2 * w.getnframes()
    return frames[0::2], frames[1::2]


def peak(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[np.argmax(spectrum)])


def feed(recording: CallRecording, left: np.ndarray | None, right: np.ndarray | None, t0: float = 100.0, first: int = 0) -> None:
    """Both signals in interleaved 20 ms chunks, each stamped with its nominal arrival (its end)."""
    count = max(len(s) for s in (left, right) if s is not None)
    for i in range(0, count, FRAME):
        at = t0 + (first + i + FRAME) / RATE
        if left is not None:
            recording.add(0, left[i : i + FRAME], at)
        if right is not None:
            recording.add(1, right[i : i + FRAME], at)


def open_recording(folder: Path, call_id: str = "abc123", **kwargs: object) -> CallRecording:
    return CallRecording.open(folder, call_id, "alice", "bob", STARTED, **kwargs)  # type: ignore[arg-type]


def test_tones_land_in_their_channels_and_length_is_right(tmp_path: Path) -> None:
    recording = open_recording(tmp_path)
    count = 2 * RATE
    feed(recording, tone(1000, count), tone(440, count))
    recording.close(STARTED + 2.1, "bye")
    left, right = read(recording.path)
    assert abs(len(left) - count) <= FRAME
    assert peak(left) == pytest.approx(1000, abs=2)
    assert peak(right) == pytest.approx(440, abs=2)
    assert recording.failed is None and not recording.truncated


def test_wav_is_readable_mid_call_with_all_but_the_last_second(tmp_path: Path) -> None:
    recording = open_recording(tmp_path)
    with wave.open(str(recording.path), "rb") as w:
        assert w.getnframes() == 0  # valid from the start
    left_in, right_in = noise(1, int(2.5 * RATE)), noise(2, int(2.5 * RATE))
    feed(recording, left_in, right_in)
    left, right = read(recording.path)  # the writer still has it open
    assert int(1.5 * RATE) <= len(left) <= len(left_in)
    assert np.array_equal(left, left_in[: len(left)]) and np.array_equal(right, right_in[: len(right)])
    recording.close(STARTED + 3, "bye")
    left, right = read(recording.path)
    assert np.array_equal(left, left_in) and np.array_equal(right, right_in)


def test_one_sided_audio_is_written_with_silence_on_the_other_side(tmp_path: Path) -> None:
    """A side that says nothing (hold, a mute browser) does not keep the other in memory."""
    recording = open_recording(tmp_path)
    left_in = noise(3, 3 * RATE)
    feed(recording, left_in, None)
    left, right = read(recording.path)
    assert len(left) >= int(1.5 * RATE) - FRAME  # HOLD + one sync interval at most behind
    assert np.array_equal(left, left_in[: len(left)]) and not right.any()
    assert recording._tracks[0].pending <= int(0.5 * RATE) + FRAME


def test_a_two_second_gap_becomes_silence_in_its_place(tmp_path: Path) -> None:
    recording = open_recording(tmp_path)
    left_in, right_in = tone(1000, 5 * RATE), tone(440, 5 * RATE)
    gap_from, gap_to = 1 * RATE, 3 * RATE
    # The callee is silent (sends nothing) from 1 s to 3 s.
    feed(recording, left_in[:gap_from], right_in[:gap_from])
    feed(recording, left_in[gap_from:gap_to], None, first=gap_from)
    feed(recording, left_in[gap_to:], right_in[gap_to:], first=gap_to)
    recording.close(STARTED + 5, "bye")
    left, right = read(recording.path)
    assert np.array_equal(left, left_in)
    assert len(right) == 5 * RATE
    assert np.array_equal(right[:gap_from], right_in[:gap_from])
    assert not right[gap_from:gap_to].any()
    assert np.array_equal(right[gap_to:], right_in[gap_to:])


def test_a_silent_start_on_one_side_is_placed_by_time(tmp_path: Path) -> None:
    recording = open_recording(tmp_path)
    left_in, right_in = noise(4, 2 * RATE), noise(5, RATE)
    feed(recording, left_in[:RATE], None)
    feed(recording, left_in[RATE:], right_in, first=RATE)
    recording.close(STARTED + 2, "bye")
    left, right = read(recording.path)
    assert np.array_equal(left, left_in)
    assert not right[:RATE].any() and np.array_equal(right[RATE:], right_in)


def test_jittered_arrivals_make_no_gaps_or_overlaps(tmp_path: Path) -> None:
    recording = open_recording(tmp_path)
    rng = np.random.default_rng(7)
    count = 200 * FRAME
    left_in, right_in = noise(8, count), noise(9, count)
    for i in range(0, count, FRAME):
        nominal = 50.0 + (i + FRAME) / RATE
        # Early or late by up to 25 ms each, and the two sides in either order.
        chunks = [(0, left_in), (1, right_in)]
        for channel, signal in chunks if rng.random() < 0.5 else chunks[::-1]:
            recording.add(channel, signal[i : i + FRAME], nominal + rng.uniform(-0.025, 0.025))
    recording.close(STARTED + 5, "bye")
    left, right = read(recording.path)
    assert np.array_equal(left, left_in) and np.array_equal(right, right_in)


def test_a_late_burst_is_appended_not_overlapped(tmp_path: Path) -> None:
    recording = open_recording(tmp_path)
    left_in = noise(10, 10 * FRAME)

    def arrives(i: int, at_end_of: int) -> None:
        recording.add(0, left_in[i * FRAME : (i + 1) * FRAME], 1.0 + (at_end_of + 1) * FRAME / RATE)

    for i in range(5):
        arrives(i, i)
    # Three held up (less than JUMP) come together, then the rest on time.
    for i in range(5, 8):
        arrives(i, 7)
    for i in range(8, 10):
        arrives(i, i)
    recording.close(STARTED + 1, "bye")
    left, _ = read(recording.path)
    assert np.array_equal(left, left_in)


@pytest.mark.parametrize("call_id", ["../../etc/passwd", "a\x00b/../c" + "x" * 500, "..", "", "/", "é ü\\x"])
def test_call_ids_give_a_safe_name_inside_the_folder(tmp_path: Path, call_id: str) -> None:
    recording = open_recording(tmp_path, call_id)
    for path in (recording.path, recording.sidecar_path):
        assert path.resolve().parent == tmp_path.resolve() and path.exists()
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in path.name)
        assert len(path.name) <= 100 and not path.name.startswith(".")
    assert recording.path.name.startswith("20231114T221320Z_")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([recording.path.name, recording.sidecar_path.name])
    recording.close(STARTED + 1, "bye")
    assert json.loads(recording.sidecar_path.read_text())["call_id"] == call_id


def test_same_call_id_and_time_do_not_overwrite(tmp_path: Path) -> None:
    first = open_recording(tmp_path)
    feed(first, noise(11, RATE), noise(12, RATE))
    first.close(STARTED + 1, "bye")
    before = first.path.read_bytes(), first.sidecar_path.read_bytes()
    second = open_recording(tmp_path)
    third = open_recording(tmp_path)
    assert len({first.path, second.path, third.path}) == 3
    assert len({first.sidecar_path, second.sidecar_path, third.sidecar_path}) == 3
    second.close(STARTED + 2, "bye")
    third.close(STARTED + 2, "bye")
    assert (first.path.read_bytes(), first.sidecar_path.read_bytes()) == before
    assert json.loads(second.sidecar_path.read_text())["wav"] == second.path.name


def test_sidecar_at_open_and_after_close(tmp_path: Path) -> None:
    recording = open_recording(tmp_path, "call-1")
    meta = json.loads(recording.sidecar_path.read_text())
    assert meta == {
        "call_id": "call-1",
        "caller": "alice",
        "callee": "bob",
        "start": "2023-11-14T22:13:20.250Z",
        "start_unix": STARTED,
        "end": None,
        "end_unix": None,
        "duration": None,
        "audio_seconds": 0.0,
        "sample_rate": RATE,
        "channels": {"left": "caller", "right": "callee"},
        "codecs": {"caller": None, "callee": None},
        "end_reason": None,
        "wav": recording.path.name,
        "failed": None,
        "truncated": False,
    }
    recording.codecs("opus", "PCMA")
    assert json.loads(recording.sidecar_path.read_text())["codecs"] == {"caller": "opus", "callee": "PCMA"}
    feed(recording, noise(13, RATE), noise(14, RATE))
    recording.close(STARTED + 61.5, "caller hung up")
    meta = json.loads(recording.sidecar_path.read_text())
    assert meta["end"] == "2023-11-14T22:14:21.750Z" and meta["end_unix"] == STARTED + 61.5
    assert meta["duration"] == 61.5 and meta["audio_seconds"] == 1.0
    assert meta["end_reason"] == "caller hung up" and meta["codecs"] == {"caller": "opus", "callee": "PCMA"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_unusable_folder_raises_recording_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RecordingError, match="cannot record"):
        open_recording(blocker / "recordings")
    with pytest.raises(RecordingError):
        open_recording(blocker)


def test_a_missing_folder_is_created(tmp_path: Path) -> None:
    recording = open_recording(tmp_path / "a" / "b")
    assert recording.path.exists()
    recording.close(STARTED, "bye")


def test_disk_full_marks_failed_and_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recording = open_recording(tmp_path)
    feed(recording, noise(15, RATE), noise(16, RATE))

    def full(data: bytes) -> int:
        raise OSError(28, "No space left on device")

    assert recording._file is not None
    monkeypatch.setattr(recording._file, "write", full)
    feed(recording, noise(17, RATE), noise(18, RATE), first=RATE)
    assert recording.failed == "No space left on device"
    feed(recording, noise(19, RATE), noise(20, RATE), first=2 * RATE)
    recording.close(STARTED + 3, "bye")
    recording.close(STARTED + 4, "again")
    left, _ = read(recording.path)  # what was synced before the failure is still a valid WAV
    assert len(left) == RATE
    meta = json.loads(recording.sidecar_path.read_text())
    assert meta["failed"] == "No space left on device" and meta["end_reason"] == "bye"


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    recording = open_recording(tmp_path)
    feed(recording, noise(21, RATE), noise(22, RATE))
    recording.close(STARTED + 1, "bye")
    wav, meta = recording.path.read_bytes(), recording.sidecar_path.read_bytes()
    recording.close(STARTED + 9, "later")
    recording.add(0, noise(23, FRAME), 200.0)
    assert (recording.path.read_bytes(), recording.sidecar_path.read_bytes()) == (wav, meta)


def test_writing_stops_at_the_maximum_duration(tmp_path: Path) -> None:
    recording = open_recording(tmp_path, max_duration=1.0)
    left_in = noise(24, 2 * RATE)
    feed(recording, left_in, noise(25, 2 * RATE))
    recording.close(STARTED + 2, "bye")
    left, _ = read(recording.path)
    assert np.array_equal(left, left_in[:RATE])
    assert recording.truncated and json.loads(recording.sidecar_path.read_text())["truncated"] is True
