"""One measured step (N calls through one system for a fixed window), and the ramp.

A step: start the phone process and the browser process (pinned to the
load core), let the browser set up N calls, tell both to stream from the
same instant for ``seconds``, read the system's CPU (/proc utime+stime)
and RSS around that window, hang up, and join the two processes' records
into one row: loss, one-way added latency percentiles and jitter per
direction, CPU µs per relayed packet, RSS per call, set-up rates, and the
generator's own CPU.

The ramp raises N (``next_n``) until loss > 0.1 % or p99 added latency
> 20 ms (either direction), or calls fail to set up; max N is the last
step that passed.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen.systems import PHONE_PASSWORD, PHONE_USER, REPO, TOKEN_SECRET, Rtpengine, Telebridge, core_busy, pinned
from bench.loadgen.wire import PTIME

LOSS_LIMIT = 0.001
P99_LIMIT_MS = 20.0


class Child:
    """A generator process spoken to in JSON lines."""

    def __init__(self, name: str, args: list[str], core: int | None, log: Path) -> None:
        self.name = name
        self.log = log.open("w")
        self.process = subprocess.Popen(
            pinned(core, [sys.executable, "-m", *args]),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.log.write(line)
        self.events.put(None)

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no '{event}' within {timeout:.0f} s")
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                self.process.wait(5)
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}) waiting for '{event}': see {self.log.name}")
            if item.get("event") == event:
                return item

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


@dataclass
class Direction:
    sent: int
    received: int
    loss: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    jitter_ms: float | None

    @classmethod
    def join(cls, tx: np.ndarray, rx: np.ndarray, live: np.ndarray | None = None, edge: int = 0) -> Direction:
        """Send times ``tx[i, k]`` and receive rows ``(i, k, rx_ns)`` -> loss, latency, jitter.

        ``edge`` packets at each end of every stream are left out: through a
        transcoder, k is counted from the first packet out, which need not
        be the first packet in (a codec may swallow its first frame).
        """
        if edge:
            tx = tx.copy()
            tx[:, :edge] = 0
            tx[:, max(edge, tx.shape[1] - edge):] = 0
        if live is not None:
            mask = np.zeros(tx.shape[0], dtype=bool)
            mask[live] = True
            tx = np.where(mask[:, None], tx, 0)
        sent = int((tx > 0).sum())
        calls, packets = tx.shape
        ok = (rx[:, 0] >= 0) & (rx[:, 0] < calls) & (rx[:, 1] >= 0) & (rx[:, 1] < packets) if len(rx) else np.zeros(0, bool)
        rx = rx[ok]
        if len(rx):
            sent_at = tx[rx[:, 0], rx[:, 1]]
            rx = rx[sent_at > 0]
            sent_at = sent_at[sent_at > 0]
            # One arrival per (call, packet): duplicates are not deliveries.
            keys = rx[:, 0] * packets + rx[:, 1]
            keys, first = np.unique(keys, return_index=True)
            rx, sent_at = rx[first], sent_at[first]
        received = len(rx)
        loss = 1.0 - received / sent if sent else 1.0
        if not received:
            return cls(sent, 0, loss, None, None, None, None)
        latency = (rx[:, 2] - sent_at) / 1e6
        # RFC 3550 §6.4.1 interarrival jitter, as its expected value: the
        # mean |D| between consecutive packets of a stream (transit = rx - tx).
        order = np.lexsort((rx[:, 1], rx[:, 0]))
        transit, stream = latency[order], rx[order, 0]
        same = stream[1:] == stream[:-1]
        jitter = float(np.abs(np.diff(transit))[same].mean()) if same.any() else None
        return cls(
            sent, received, loss,
            float(np.percentile(latency, 50)), float(np.percentile(latency, 99)), float(latency.max()), jitter,
        )


def run_step(
    system: Telebridge | Rtpengine,
    calls: int,
    seconds: float,
    workdir: Path,
    codec: str = "relay",
    load_core: int | None = 1,
    window: int = 16,
    register_rounds: int = 1,
    profile: bool = False,
) -> dict[str, Any]:
    """Set up ``calls`` calls through ``system``, stream for ``seconds``, hang up; one report row."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.npy"):
        stale.unlink()
    name = system.name
    row: dict[str, Any] = {"system": name, "codec": codec, "n": calls, "seconds": seconds}
    phone_args = ["bench.loadgen.phone", "--system", name, "--codec", codec, "--calls", str(calls), "--out", str(workdir)]
    if isinstance(system, Telebridge):
        phone_args += ["--sip-port", str(system.sip_port), "--user", PHONE_USER, "--password", PHONE_PASSWORD]
    if profile:
        phone_args += ["--profile", str(workdir / "phone.prof")]
    phone = Child("phone", phone_args, load_core, workdir / "phone.log")
    browser: Child | None = None
    try:
        phone_ready = phone.wait("ready", 30)
        if phone_ready.get("registered", 200) != 200:
            raise RuntimeError(f"the phone's REGISTER got {phone_ready['registered']}")
        browser_args = [
            "bench.loadgen.browser", "--system", name, "--codec", codec, "--calls", str(calls),
            "--window", str(window), "--register-rounds", str(register_rounds), "--out", str(workdir),
        ]
        if isinstance(system, Telebridge):
            browser_args += ["--web-port", str(system.web_port), "--token-secret", TOKEN_SECRET, "--target", PHONE_USER]
        else:
            browser_args += ["--ng-port", str(system.ng_port), "--phone-rtp-port", str(phone_ready["rtp_port"])]
        if profile:
            browser_args += ["--profile", str(workdir / "browser.prof")]
        stat = system.stat
        rss_before = stat.rss_kib()
        cpu_before_setup = stat.cpu()
        browser = Child("browser", browser_args, load_core, workdir / "browser.log")
        ready = browser.wait("ready", 60 + calls * 0.5)
        setup_cpu = stat.cpu() - cpu_before_setup
        row.update(
            calls_up=ready["calls_up"], setup_errors=ready["setup_errors"], setup_error=ready.get("setup_error"),
            setup_rate=ready["setup_rate"], setup_p50_ms=ready["setup_p50_ms"], setup_p95_ms=ready["setup_p95_ms"],
            setup_gen_cpu=ready["setup_gen_cpu"], setup_s=ready["setup_s"],
            setup_sys_cpu=setup_cpu / ready["setup_s"] if ready["setup_s"] else None,
            register_rate=ready.get("register_rate"), registers_ok=ready.get("registers_ok"),
            register_gen_cpu=ready.get("register_gen_cpu"),
        )
        if ready.get("wss_error"):
            row["wss_error"] = ready["wss_error"]
        live = ready["live"]
        if ready["targets"]:
            phone.send(cmd="targets", targets=ready["targets"])
            phone.wait("targets", 30)
        packets = max(1, round(seconds / PTIME))
        # Time for both processes to build their packet templates before the window.
        start_ns = time.time_ns() + int((1.0 + calls * 0.002) * 1e9)
        for child in (phone, browser):
            child.send(cmd="stream", start_ns=start_ns, packets=packets, live=live, drain=0.5)
        time.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
        cpu0, wall0, wait0 = stat.cpu(), time.monotonic(), stat.runqueue_wait()
        busy0 = (core_busy(system.core), core_busy(load_core))
        time.sleep(seconds / 2)
        rss_mid = stat.rss_kib()
        time.sleep(max(0.0, seconds - (time.monotonic() - wall0)))
        cpu1, wall1, wait1 = stat.cpu(), time.monotonic(), stat.runqueue_wait()
        busy1 = (core_busy(system.core), core_busy(load_core))
        streamed_b = browser.wait("streamed", 60 + calls * 0.1)
        streamed_p = phone.wait("streamed", 60)
        edge = 5 if codec == "transcode" else 0
        rx_phone, rx_browser = np.load(workdir / "rx-phone.npy"), np.load(workdir / "rx-browser.npy")
        up = Direction.join(np.load(workdir / "tx-browser.npy"), rx_phone, np.array(live, dtype=np.int64), edge)
        down = Direction.join(np.load(workdir / "tx-phone.npy"), rx_browser, np.array(live, dtype=np.int64), edge)
        relayed = len(rx_phone) + len(rx_browser)
        window_s = wall1 - wall0
        row.update(
            up=up.__dict__, down=down.__dict__,
            loss=max(up.loss, down.loss),
            p99_ms=max(x for x in (up.p99_ms, down.p99_ms, 0.0) if x is not None),
            p50_ms=max(x for x in (up.p50_ms, down.p50_ms, 0.0) if x is not None),
            jitter_ms=max(x for x in (up.jitter_ms, down.jitter_ms, 0.0) if x is not None),
            sys_cpu=(cpu1 - cpu0) / window_s,
            sys_runq_wait=(wait1 - wait0) / window_s,
            gen_runq_wait=(streamed_b["runq_wait_s"] + streamed_p["runq_wait_s"]) / (window_s + 0.5),
            cpu_us_per_packet=(cpu1 - cpu0) / relayed * 1e6 if relayed else None,
            rss_mib=rss_mid / 1024, rss_before_mib=rss_before / 1024,
            gen_cpu_browser=streamed_b["cpu_s"] / (window_s + 0.5), gen_cpu_phone=streamed_p["cpu_s"] / (window_s + 0.5),
            gen_lag_p99_ms=max(streamed_b["send_lag_p99_ms"], streamed_p["send_lag_p99_ms"]),
            counters_browser=streamed_b["counters"], counters_phone=streamed_p["counters"],
        )
        row["gen_cpu"] = row["gen_cpu_browser"] + row["gen_cpu_phone"]
        # What else ran on the two cores during the window (other people's work, the kernel's threads).
        row["other_load_sys_core"] = max(0.0, (busy1[0] - busy0[0]) / window_s - row["sys_cpu"])
        row["other_load_gen_core"] = max(0.0, (busy1[1] - busy0[1]) / window_s - row["gen_cpu"])
        row["gen_sys_share"] = (streamed_b["sys_s"] + streamed_p["sys_s"]) / max(streamed_b["cpu_s"] + streamed_p["cpu_s"], 1e-9)
        browser.send(cmd="hangup")
        done = browser.wait("done", 60 + calls * 0.2)
        row["ended"] = done["ended"]
        phone.send(cmd="exit", linger=0.3)
        phone.wait("done", 15)
    finally:
        if browser is not None:
            browser.stop()
        phone.stop()
    row["passed"] = passed(row)
    return row


def passed(row: dict[str, Any]) -> bool:
    """The ramp's criterion: every call up, loss <= 0.1 %, p99 added latency <= 20 ms."""
    if row.get("calls_up", 0) < row["n"]:
        return False
    if row.get("loss", 1.0) > LOSS_LIMIT:
        return False
    latency_known = row["codec"] == "relay"
    return not (latency_known and row.get("p99_ms", 1e9) > P99_LIMIT_MS)


def summary_line(row: dict[str, Any]) -> str:
    up, down = row.get("up", {}), row.get("down", {})

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    return (
        f"{row['system']:<10} {row['codec']:<9} N={row['n']:<5} up={row.get('calls_up', 0):<5} "
        f"setup={row.get('setup_rate', 0):6.1f}/s loss={100 * row.get('loss', 1):6.3f}% "
        f"p50={ms(row.get('p50_ms'))} p99={ms(up.get('p99_ms'))}/{ms(down.get('p99_ms'))} ms "
        f"jit={ms(row.get('jitter_ms'))} cpu={100 * row.get('sys_cpu', 0):5.1f}% "
        f"{(row.get('cpu_us_per_packet') or 0):6.1f} µs/pkt rss={row.get('rss_mib', 0):6.1f} MiB "
        f"gen={100 * row.get('gen_cpu', 0):5.1f}% lag={row.get('gen_lag_p99_ms', 0):.1f}ms "
        f"other={100 * row.get('other_load_sys_core', 0):.0f}%/{100 * row.get('other_load_gen_core', 0):.0f}% "
        f"{'PASS' if row.get('passed') else 'FAIL'}"
    )


CONTENDED_SYS_CORE = 0.10
CONTENDED_LOAD_CORE = 0.20


def generator_saturated(row: dict[str, Any]) -> bool:
    """The generator was the limit: it used >= 85 % of its core, or sent > 20 ms late on a quiet core."""
    if row.get("gen_cpu", 0.0) >= 0.85:
        return True
    return row.get("gen_lag_p99_ms", 0.0) > 20.0 and not contended(row)


def contended(row: dict[str, Any]) -> bool:
    """Other work on this shared machine took a real share of either core during the window."""
    return row.get("other_load_sys_core", 0.0) > CONTENDED_SYS_CORE or row.get("other_load_gen_core", 0.0) > CONTENDED_LOAD_CORE


def wait_quiet(cores: tuple[int | None, int | None], limit: float = 10.0) -> float:
    """Wait (up to ``limit`` s) for a second in which neither core is busy with others' work; returns the wait."""
    began = time.monotonic()
    while True:
        before = [core_busy(c) for c in cores]
        time.sleep(1.0)
        busy = [core_busy(c) - b for c, b in zip(cores, before)]
        if max(busy) < 0.1 or time.monotonic() - began > limit:
            return time.monotonic() - began


def failure_reason(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "error"
    if row.get("calls_up", 0) < row["n"]:
        return "set-up"
    if row.get("loss", 1.0) > LOSS_LIMIT:
        return "loss"
    return "p99"


def next_n(n: int, factor: float) -> int:
    step = 5 if n < 100 else 10
    return max(n + step, int(round(n * factor / step)) * step)


def safe_step(system: Telebridge | Rtpengine, n: int, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_step`, with a failure recorded as a failed row instead of raised."""
    try:
        return run_step(system, n, **kwargs)
    except Exception as e:  # noqa: BLE001 - any failure of a step is a result
        return {"system": system.name, "codec": kwargs.get("codec", "relay"), "n": n, "seconds": kwargs.get("seconds"), "error": f"{type(e).__name__}: {e}", "passed": False}


def retried_step(
    system: Telebridge | Rtpengine, n: int, deadline: float, step_time: float, log: Any,
    judge: Any = None, **kwargs: Any,
) -> tuple[dict[str, Any], float]:
    """One step after a quiet second, run again (twice at most) while it failed with others on the cores."""
    load_core = kwargs.get("load_core")
    for attempt in range(3):
        began = time.monotonic()
        wait_quiet((system.core, load_core))
        row = safe_step(system, n, **kwargs)
        if judge is not None:
            judge(row)
        step_time = max(step_time, time.monotonic() - began)
        row["attempt"] = attempt + 1
        if (row["passed"] and not generator_saturated(row)) or not contended(row) or time.monotonic() + step_time * 1.2 > deadline:
            break
        log(summary_line(row) + "  (others used the cores meanwhile: run again)")
    log(summary_line(row) if "error" not in row else f"{system.name} {kwargs.get('codec', 'relay')} N={n}: {row['error']}")
    return row, step_time


def ramp(
    system: Telebridge | Rtpengine,
    codec: str,
    start: int,
    seconds: float,
    workdir: Path,
    deadline: float,
    factor: float = 1.5,
    limit: int = 2000,
    load_core: int | None = 1,
    log: Any = print,
) -> dict[str, Any]:
    """Raise N from ``start`` until a step fails; then try once between the last pass and the failure.

    Each step waits for a quiet second first; a step that failed while
    other work used either core (:func:`contended`: other people's work on
    a shared machine) is run again, twice at most, so that it is not
    counted against the system. Still contended, the ramp stops there and
    max N is a lower bound.
    """
    steps: list[dict[str, Any]] = []
    last_pass: dict[str, Any] | None = None
    first_fail: dict[str, Any] | None = None
    reason = "limit"
    step_time = 0.0
    baseline: list[float] = []

    def judge(row: dict[str, Any]) -> None:
        # Through a transcoder the latency starts at the codec pipeline's
        # fixed delay (jitter buffer, framing): the 20 ms limit applies to
        # what the load adds on top of it, the p50 of the ramp's first step.
        if codec != "transcode" or "error" in row or row.get("p99_ms") is None:
            return
        if not baseline and row["passed"]:
            baseline.append(row["p50_ms"])
        if baseline:
            row["latency_baseline_ms"] = baseline[0]
            if row["p99_ms"] - baseline[0] > P99_LIMIT_MS:
                row["passed"] = False

    def step(n: int) -> dict[str, Any]:
        nonlocal step_time
        row, step_time = retried_step(system, n, deadline, step_time, log, seconds=seconds, workdir=workdir / f"{system.name}-{codec}-{n}",
                                      codec=codec, load_core=load_core, judge=judge)
        steps.append(row)
        return row

    n = start
    while True:
        if n > limit:
            reason = "limit"
            break
        if time.monotonic() + step_time * 1.2 > deadline:
            reason = "time"
            break
        row = step(n)
        if row["passed"]:
            last_pass = row
            if generator_saturated(row):
                reason = "generator"
                break
            n = next_n(n, factor)
        else:
            first_fail = row
            reason = "generator" if generator_saturated(row) else "contention" if contended(row) else failure_reason(row)
            break
    if last_pass is not None and first_fail is not None and reason not in ("generator", "contention"):
        gap = first_fail["n"] - last_pass["n"]
        mid = last_pass["n"] + gap // 2
        mid -= mid % 5
        if gap >= max(10, 0.2 * last_pass["n"]) and last_pass["n"] < mid < first_fail["n"] and time.monotonic() + step_time * 1.2 < deadline:
            row = step(mid)
            if row["passed"]:
                last_pass = row
    return {
        "system": system.name,
        "codec": codec,
        "steps": steps,
        "max_n": last_pass["n"] if last_pass else 0,
        "max_row": last_pass,
        "stopped_by": reason,
    }
