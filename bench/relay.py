"""bench/relay: N bridged WebRTC <-> plain RTP sessions at fixed N, telebridge and rtpengine (issue 3).

    .venv/bin/python bench/relay.py                  N = 50, 200, 500: writes bench/results/DATE-relay-n.md
    .venv/bin/python bench/relay.py --n 50,100       other N
    .venv/bin/python bench/relay.py --no-profile     without the py-spy profile

Each session is one call set up the way a browser does (ICE, DTLS-SRTP) against
a SIP side answering plain RTP, then 50 packets/s each way. Each system runs
pinned to core 0, the load generator (bench/loadgen/) on core 1, both under
``nice -n 10``. At every N: CPU µs per relayed packet (SRTP <-> RTP), loss each
way, added latency p50/p99. Unlike bench/capacity.py there is no ramp: every N
is measured, so an N beyond a system's capacity shows what overload does (and
an N beyond the generator's is marked so).

The profile: py-spy (``pip install -e .[bench]``) samples telebridge through
one more step at the middle N, once while the calls are set up and once
while they stream, and the report lists where its time went, by function.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.capacity import machine  # noqa: E402
from bench.loadgen.report import STEP_COLUMNS, _table, step_row  # noqa: E402
from bench.loadgen.run import generator_saturated, retried_step, safe_step  # noqa: E402
from bench.loadgen.systems import Rtpengine, Telebridge, run_on_load_core  # noqa: E402

PROFILE_TOP = 20


def py_spy() -> str | None:
    """The py-spy next to this Python, or on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _record(spy: str, pid: int, seconds: float, raw: Path) -> None:
    """py-spy samples ``pid`` for ``seconds`` into ``raw`` (collapsed stacks)."""
    subprocess.run(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--duration", str(max(1, round(seconds))),
         "--format", "raw", "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 30, check=False,
    )


def _by_function(raw: Path) -> Counter[str]:
    by_function: Counter[str] = Counter()
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        if count.isdigit() and stack:
            by_function[_function_of(stack.split(";")[-1])] += int(count)
    return by_function


def profile_step(system: Telebridge, n: int, setup_s: float, seconds: float, workdir: Path, spy: str) -> dict[str, Counter[str]]:
    """One more step at ``n`` with py-spy sampling telebridge, once through the set-up
    (its first ``setup_s`` s) and once through the streaming window after it."""
    assert system.process is not None
    pid = system.process.pid
    workdir.mkdir(parents=True, exist_ok=True)
    phases = {"set-up": workdir / "setup.txt", "streaming": workdir / "streaming.txt"}

    def sample() -> None:
        _record(spy, pid, setup_s, phases["set-up"])
        time.sleep(2.0)  # the last calls' handshakes
        _record(spy, pid, seconds, phases["streaming"])

    sampler = threading.Thread(target=sample)
    sampler.start()
    safe_step(system, n, seconds=setup_s + seconds + 4.0, workdir=workdir / "step", load_core=1)
    sampler.join()
    return {phase: _by_function(raw) for phase, raw in phases.items()}


def _function_of(frame: str) -> str:
    """py-spy's 'doRead (twisted/internet/udp.py:123)' as 'doRead (udp.py)'."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="50,200,500", help="the N to measure, comma-separated")
    parser.add_argument("--systems", default="telebridge,rtpengine")
    parser.add_argument("--seconds", type=float, default=10.0, help="streaming window per step")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    ns = [int(n) for n in args.n.split(",") if n.strip()]
    run_on_load_core()
    date = datetime.date.today().isoformat()
    out = args.out or REPO / "bench" / "results" / f"{date}-relay-n.md"
    workdir = Path(tempfile.mkdtemp(prefix="relay-n-"))
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    profile: tuple[int, dict[str, Counter[str]]] | None = None
    try:
        for kind in [s.strip() for s in args.systems.split(",") if s.strip()]:
            system = Telebridge(workdir / kind, core=0) if kind == "telebridge" else Rtpengine(workdir / kind, core=0)
            system.start()
            try:
                for n in ns:
                    row, _ = retried_step(system, n, time.monotonic() + 600, 0.0, print, seconds=args.seconds,
                                          workdir=workdir / f"{kind}-{n}", load_core=1)
                    row["generator_bound"] = generator_saturated(row)
                    rows.append(row)
                spy = py_spy()
                n = ns[len(ns) // 2]  # the middle N: 200 by default
                measured = next((r for r in rows if r["system"] == kind and r["n"] == n), {})
                if kind == "telebridge" and not args.no_profile and spy and isinstance(system, Telebridge):
                    # The set-up lasts about as long as the measured step's did.
                    setup_s = n / max(measured.get("setup_rate") or 50.0, 1.0) + 2.0
                    profile = (n, profile_step(system, n, setup_s, args.seconds, workdir / "profile", spy))
            finally:
                system.stop()
    finally:
        out.write_text(render(rows, profile, date, time.monotonic() - started, " ".join(argv if argv is not None else sys.argv[1:])))
        print(f"report: {out}")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def render(rows: list[dict[str, Any]], profile: tuple[int, dict[str, Counter[str]]] | None, date: str, elapsed: float, command: str) -> str:
    info = machine()
    summary = []
    by_n: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_n.setdefault(row["n"], {})[row["system"]] = row
    for n, systems in sorted(by_n.items()):
        tb, re_ = systems.get("telebridge", {}), systems.get("rtpengine", {})
        a, b = tb.get("cpu_us_per_packet"), re_.get("cpu_us_per_packet")

        def cell(row: dict[str, Any]) -> str:
            if not row:
                return "not run"
            if "error" in row:
                return "error"
            up, down = row.get("up", {}), row.get("down", {})
            loss = 100 * max(up.get("loss", 1.0), down.get("loss", 1.0))
            p99 = max(up.get("p99_ms") or 0.0, down.get("p99_ms") or 0.0)
            bound = " (generator-bound)" if row.get("generator_bound") else ""
            return f"{row.get('cpu_us_per_packet', 0):.1f} µs/pkt, loss {loss:.2f} %, p50 {row.get('p50_ms', 0):.2f} / p99 {p99:.2f} ms{bound}"

        ratio = f"{a / b:.2f}" if a and b else "-"
        summary.append([str(n), cell(tb), cell(re_), ratio])
    profile_text = "Not profiled (py-spy not installed, or --no-profile)."
    if profile is not None:
        n, phases = profile
        parts = [
            f"py-spy, 250 samples/s while telebridge was on the CPU (idle time is not sampled), through one more step "
            f"at N = {n}: once while the calls were set up, once while they streamed. A C call such as `sendto` or "
            "libsrtp is charged to the Python function that made it; `doPoll` is the reactor's `epoll_wait`."
        ]
        for phase, by_function in phases.items():
            total = sum(by_function.values())
            lines = [[name, f"{100 * count / total:.1f}"] for name, count in by_function.most_common(PROFILE_TOP)] if total else []
            parts.append(f"### {phase} ({total} samples)\n\n" + _table(("function (file)", "% of samples, own time"), lines))
        profile_text = "\n\n".join(parts)
    return f"""# bench/relay: fixed N, telebridge vs rtpengine, {date}

Machine: {info['cpu']}, {info['cores']} cores, kernel {info['kernel']}, Python {info['python']};
telebridge {info['telebridge']}; rtpengine {info['rtpengine']}. Run took {elapsed / 60:.1f} min: `bench/relay.py {command}`.

Each N: N calls set up as a browser does (ICE, DTLS-SRTP) against a SIP side answering plain RTP, then
20 ms packets each way for the streaming window; each system pinned to core 0 under `nice -n 10`, the
generator (bench/loadgen/, Python) on core 1. CPU is the system's utime + stime over the window divided by
the packets it relayed; latency is what the relay adds (send stamp before `sendto`, kernel receive stamp).
"generator-bound": the generator's core was full or it sent late, so the system was offered less than
N x 100 packets/s and its figures are for that lighter load.

## Summary

{_table(("N", "telebridge", "rtpengine", "CPU ratio telebridge / rtpengine"), summary)}

## Every step

{_table(STEP_COLUMNS, [step_row(r) for r in rows])}

↑ = browser → SIP side, ↓ = SIP side → browser.

## Where telebridge's time goes

{profile_text}
"""


if __name__ == "__main__":
    sys.exit(main())
