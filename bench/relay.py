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
one more step at the first N, set-up included, and the report lists where
its own time went, by function.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.capacity import machine  # noqa: E402
from bench.loadgen.report import STEP_COLUMNS, _table, step_row  # noqa: E402
from bench.loadgen.run import generator_saturated, retried_step, safe_step  # noqa: E402
from bench.loadgen.systems import NICENESS, Rtpengine, Telebridge  # noqa: E402

PROFILE_TOP = 20


def py_spy() -> str | None:
    """The py-spy next to this Python, or on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_step(system: Telebridge, n: int, seconds: float, workdir: Path, spy: str) -> tuple[dict[str, Any], Counter[str], int]:
    """One more step at ``n`` with py-spy sampling telebridge throughout; (row, samples by function, total)."""
    assert system.process is not None
    raw = workdir / "profile.txt"
    duration = int(seconds + 30 + n * 0.05)  # set-up, streaming, hang-up
    spy_process = subprocess.Popen(
        [spy, "record", "--pid", str(system.process.pid), "--rate", "250", "--duration", str(duration),
         "--format", "raw", "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    row = safe_step(system, n, seconds=seconds, workdir=workdir / "step", load_core=1)
    spy_process.wait(duration + 30)
    by_function: Counter[str] = Counter()
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        if count.isdigit() and stack:
            by_function[_function_of(stack.split(";")[-1])] += int(count)
    return row, by_function, sum(by_function.values())


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
    if os.nice(0) < NICENESS:
        os.nice(NICENESS - os.nice(0))
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    date = datetime.date.today().isoformat()
    out = args.out or REPO / "bench" / "results" / f"{date}-relay-n.md"
    workdir = Path(tempfile.mkdtemp(prefix="relay-n-"))
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    profile: tuple[int, Counter[str], int] | None = None
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
                if kind == "telebridge" and not args.no_profile and spy and isinstance(system, Telebridge):
                    row, by_function, total = profile_step(system, ns[0], args.seconds, workdir / "profile", spy)
                    profile = (ns[0], by_function, total)
            finally:
                system.stop()
    finally:
        out.write_text(render(rows, profile, date, time.monotonic() - started, " ".join(argv if argv is not None else sys.argv[1:])))
        print(f"report: {out}")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def render(rows: list[dict[str, Any]], profile: tuple[int, Counter[str], int] | None, date: str, elapsed: float, command: str) -> str:
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
    if profile is not None and profile[2]:
        n, by_function, total = profile
        lines = [[name, f"{100 * count / total:.1f}"] for name, count in by_function.most_common(PROFILE_TOP)]
        profile_text = (
            f"py-spy, 250 samples/s while telebridge ran (idle time in the poll is not sampled), through one more "
            f"step at N = {n}, set-up included: {total} samples. A C call such as `sendto` or libsrtp is charged "
            "to the Python function that made it.\n\n"
            + _table(("function (file)", "% of samples, own time"), lines)
        )
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
