"""Capacity report: telebridge and rtpengine under the same WebRTC <-> plain RTP load (issue 6).

    .venv/bin/python bench/capacity.py           the ramp, under 15 minutes: writes
                                                 bench/results/DATE.md, DATE-*.png, DATE.json
    .venv/bin/python bench/capacity.py --short   under 2 minutes: a few calls through each
                                                 system, no ramp (the CI smoke test runs this)

Each system runs pinned to core 0 and the load generator (bench/loadgen/)
on core 1, all under ``nice -n 10``. For each system: one step that
measures set-up and registration rates, then a ramp of relayed calls
(N x1.5 until loss > 0.1 % or p99 added latency > 20 ms), then a ramp of
transcoded calls (Opus <-> PCMU). rtpengine is Debian's rtpengine-daemon
(``apt-get install rtpengine-daemon``), started here in the foreground.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen import report  # noqa: E402
from bench.loadgen.run import ramp, retried_step, safe_step, summary_line  # noqa: E402
from bench.loadgen.systems import Rtpengine, Telebridge, run_on_load_core  # noqa: E402
from bench.loadgen.browser import NG_ANSWER, NG_OFFER, NG_TRANSCODE  # noqa: E402

RAMP_START = {("telebridge", "relay"): 20, ("rtpengine", "relay"): 20, ("telebridge", "transcode"): 5, ("rtpengine", "transcode"): 10}
# Share of the time budget by which each ramp must have finished.
RAMP_DEADLINE = {("telebridge", "relay"): 0.30, ("telebridge", "transcode"): 0.45, ("rtpengine", "relay"): 0.80, ("rtpengine", "transcode"): 0.97}


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def output(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=REPO)
            return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if (done.stdout.strip() or done.stderr.strip()) else "?"
        except (OSError, subprocess.SubprocessError):
            return "?"

    commit = output(["git", "rev-parse", "--short", "HEAD"])
    # A clean tree prints nothing, which output() reports as "?".
    dirty = " (+ uncommitted changes)" if output(["git", "status", "--porcelain", "--untracked-files=no"]) != "?" else ""
    rtpengine = shutil.which("rtpengine")
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "telebridge": f"{commit}{dirty}",
        "rtpengine": output([rtpengine, "--version"]).replace("Version: ", "") if rtpengine else "not installed",
    }


def short_ramp(row: dict[str, Any]) -> dict[str, Any]:
    return {"system": row["system"], "codec": row["codec"], "steps": [row], "max_n": row["n"] if row["passed"] else 0,
            "max_row": row if row["passed"] else None, "stopped_by": "short"}


def measure(kind: str, args: argparse.Namespace, workdir: Path, started: float, log: Any) -> dict[str, Any]:
    """All steps of one system; the system is started fresh and stopped at the end."""
    cores = os.cpu_count() or 1
    system_core, load_core = (0, 1) if cores >= 2 else (None, None)
    system = Telebridge(workdir / kind, core=system_core) if kind == "telebridge" else Rtpengine(workdir / kind, core=system_core)
    system.start()
    data: dict[str, Any] = {}
    try:
        data["idle_rss_mib"] = system.stat.rss_kib() / 1024
        step_dir = workdir / f"{kind}-steps"
        if args.short:
            relay = safe_step(system, args.short_calls, seconds=args.seconds or 3.0, workdir=step_dir / "relay", load_core=load_core)
            log(summary_line(relay) if "error" not in relay else f"{kind} relay: {relay['error']}")
            data["rates"] = None
            data["relay"] = short_ramp(relay)
            data["short_rates"] = {k: relay.get(k) for k in ("setup_rate", "register_rate", "setup_gen_cpu", "register_gen_cpu")}
            if not args.no_transcode:
                transcode = safe_step(system, max(1, args.short_calls // 2), seconds=args.seconds or 3.0, workdir=step_dir / "transcode", codec="transcode", load_core=load_core)
                log(summary_line(transcode) if "error" not in transcode else f"{kind} transcode: {transcode['error']}")
                data["transcode"] = short_ramp(transcode)
        else:
            budget = args.budget_minutes * 60
            rates, _ = retried_step(system, args.rates_calls, started + budget, 0.0, log, seconds=2.0, workdir=step_dir / "rates",
                                    window=16, register_rounds=5 if kind == "telebridge" else 1, load_core=load_core)
            rates["codec"] = "rates"
            data["rates"] = rates
            for codec in ("relay",) + (() if args.no_transcode else ("transcode",)):
                start = args.start if args.start and codec == "relay" else RAMP_START[(kind, codec)]
                data[codec] = ramp(
                    system, codec, start, args.seconds or (10.0 if codec == "relay" else 8.0),
                    step_dir, deadline=started + budget * RAMP_DEADLINE[(kind, codec)], load_core=load_core, log=log,
                )
                log(f"{kind} {codec}: max N {data[codec]['max_n']} (stopped by {data[codec]['stopped_by']})")
        # RSS hardly shrinks after a step, so: the highest RSS seen over the
        # idle process, divided by the most calls up at once (before the
        # transcoding steps, which come last).
        relayed = [r for r in [data.get("rates")] + (data.get("relay") or {}).get("steps", []) if r and "rss_mib" in r and r.get("calls_up")]
        if relayed:
            peak_rss, peak_n = max(r["rss_mib"] for r in relayed), max(r["calls_up"] for r in relayed)
            data["rss_per_call_kib"] = max(0.0, (peak_rss - data["idle_rss_mib"]) * 1024 / peak_n)
        data["tracebacks"] = system.tracebacks()
        if data["tracebacks"]:
            data["log_tail"] = system.log_tail()
    finally:
        system.stop()
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="smoke run: a few calls per system, no ramp (< 2 min)")
    parser.add_argument("--out", type=Path, help="report path (default bench/results/DATE.md, or DATE-short.md)")
    parser.add_argument("--systems", default="telebridge,rtpengine")
    parser.add_argument("--seconds", type=float, help="streaming window per step (default 10 s relay, 8 s transcode; 3 s short)")
    parser.add_argument("--short-calls", type=int, default=4)
    parser.add_argument("--rates-calls", type=int, default=100)
    parser.add_argument("--budget-minutes", type=float, default=13.0)
    parser.add_argument("--no-transcode", action="store_true")
    parser.add_argument("--start", type=int, help="first N of the relayed-calls ramps (default 20)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--render", type=Path, help="only write the report again from a run's JSON (DATE.json)")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        print(f"report: {report.write(results, args.out or args.render.with_suffix('.md'))}")
        return 0

    started = time.monotonic()
    # A SIGTERM (timeout, CI) unwinds like Ctrl-C: the systems and the generators are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_on_load_core()
    cores = os.cpu_count() or 1
    date = datetime.date.today().isoformat()
    out = args.out or REPO / "bench" / "results" / (f"{date}-short.md" if args.short else f"{date}.md")
    workdir = Path(tempfile.mkdtemp(prefix="capacity-"))

    def log(line: str) -> None:
        print(line, flush=True)

    results: dict[str, Any] = {
        "date": date,
        "mode": "short" if args.short else "full",
        "mode_note": (
            "**Short mode** (smoke run): a few calls through each system, no ramp. The figures are not capacity."
            if args.short else "Full ramp."
        ),
        "command": ("bench/capacity.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "machine": machine(),
        "system_core": 0 if cores >= 2 else "any",
        "load_core": 1 if cores >= 2 else "any",
        "seconds": args.seconds or (3.0 if args.short else 10.0),
        "systems": {},
        "notes": [],
    }
    try:
        for kind in [s.strip() for s in args.systems.split(",") if s.strip()]:
            results["systems"][kind] = measure(kind, args, workdir, started, log)
    finally:
        results["elapsed_s"] = time.monotonic() - started
        results["notes"] = notes(results)
        path = report.write(results, out)
        log(f"report: {path}")
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work directory kept: {workdir}")
    return 0


def notes(results: dict[str, Any]) -> list[str]:
    out = [
        "SIP side for telebridge: one phone user registered over UDP with digest to the embedded registrar "
        "(`[users.phone]`); every browser INVITEs it and the phone process answers each INVITE at once "
        "(Opus for relayed calls, PCMU only for transcoded ones). No PBX in the path.",
        "rtpengine: `--table=-1 --interface=127.0.0.1 --delete-delay=0`, no config file; ng offer flags "
        f"`{NG_OFFER}`{' + ' + str(NG_TRANSCODE) if NG_TRANSCODE else ''} for transcoded calls, answer flags `{NG_ANSWER}`.",
        "On loopback the kernel's delivery of a datagram is charged to the process that sends it: each "
        "system's CPU includes delivering what it sends to the generator, as the generator's includes "
        "delivering (and waking the system for) what it sends. Same for both systems.",
        "The generator is Python: each process keeps one socket for all its calls and reads it once per 1 ms "
        "slot; its CPU is shown per step. When it reaches its core's limit first the ramp stops and the "
        "system's max N is a lower bound (marked ≥); the CPU-cost row then gives the better estimate.",
        "This machine is shared: 'other load' per step shows what else ran on each core during the window.",
        "Transcoding: both encode mono Opus at 32 kbit/s; the encoder complexity is each one's own "
        "(telebridge sets it, rtpengine 10.5 uses ffmpeg's libopus default and has no option for it).",
    ]
    for kind, data in results["systems"].items():
        if data.get("tracebacks"):
            out.append(f"{kind} logged {data['tracebacks']} tracebacks during the run.")
        for codec in ("relay", "transcode"):
            ramp_ = data.get(codec)
            if ramp_ and ramp_["stopped_by"] == "generator":
                out.append(f"{kind} {codec}: the generator's core was full at N={ramp_['steps'][-1]['n']}; max N is a lower bound.")
            if ramp_ and ramp_["stopped_by"] == "contention":
                out.append(f"{kind} {codec}: other work on this machine kept taking the cores at N={ramp_['steps'][-1]['n']} "
                           "(three tries); max N is a lower bound.")
    return out


if __name__ == "__main__":
    sys.exit(main())
