"""The capacity report: a Markdown table telebridge vs rtpengine, every step, and two PNG charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PACKETS_PER_CALL_SECOND = 100  # 50 each way


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _bound(ramp: dict[str, Any] | None) -> str:
    """'≥' when the ramp stopped before the system failed (generator, time, N limit)."""
    if ramp is None:
        return ""
    return "≥ " if ramp["stopped_by"] in ("generator", "contention", "time", "limit", "short") else ""


def _max_n(ramp: dict[str, Any] | None) -> str:
    if ramp is None:
        return "not run"
    if not ramp["max_n"]:
        return f"0 ({ramp['stopped_by']})"
    return f"{_bound(ramp)}{ramp['max_n']} ({'stopped by ' + ramp['stopped_by']})"


def _row_value(ramp: dict[str, Any] | None, key: str) -> float | None:
    if ramp is None or ramp.get("max_row") is None:
        return None
    return ramp["max_row"].get(key)


def _with_gen(value: float | None, generator: float | None, digits: int = 1) -> str:
    """A rate and the generator's CPU meanwhile; "≥" when the generator was the limit (>= 85 %)."""
    if value is None:
        return "-"
    bound = "≥ " if generator is not None and generator >= 0.85 else ""
    return bound + _fmt(value, digits) + (f" (gen {100 * generator:.0f} %)" if generator is not None else "")


def _ratio(a: float | None, b: float | None, digits: int = 2, prefix: str = "") -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{prefix}{a / b:.{digits}f}"


def _bound_ratio(tb: dict[str, Any] | None, re_: dict[str, Any] | None) -> str:
    """telebridge / rtpengine max N, qualified when either is only a lower bound."""
    if not tb or not re_ or not tb["max_n"] or not re_["max_n"]:
        return "-"
    a, b = _bound(tb), _bound(re_)
    if a and b:
        return "- (both bounds)"
    return _ratio(tb["max_n"], re_["max_n"], prefix="≤ " if b else "≥ " if a else "")


def _common(tb: dict[str, Any] | None, re_: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The steps of the largest N both ramps passed (like for like, neither saturated)."""
    if not tb or not re_:
        return None

    def by_n(ramp: dict[str, Any]) -> dict[int, dict[str, Any]]:
        return {r["n"]: r for r in ramp["steps"] if r.get("passed") and r.get("cpu_us_per_packet") is not None}

    a, b = by_n(tb), by_n(re_)
    shared = sorted(set(a) & set(b))
    return (a[shared[-1]], b[shared[-1]]) if shared else None


def summary(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, telebridge, rtpengine, ratio) rows."""
    tb, re_ = results["systems"].get("telebridge", {}), results["systems"].get("rtpengine", {})
    rows: list[tuple[str, str, str, str]] = []
    tb_relay, re_relay = tb.get("relay"), re_.get("relay")
    rows.append(("max N relayed calls (loss ≤ 0.1 %, p99 ≤ 20 ms)", _max_n(tb_relay), _max_n(re_relay), _bound_ratio(tb_relay, re_relay)))
    common = _common(tb_relay, re_relay)
    if common:
        a, b = common
        rows.append((f"CPU µs per relayed packet at N = {a['n']} (largest N both passed)", _fmt(a["cpu_us_per_packet"]), _fmt(b["cpu_us_per_packet"]), _ratio(a["cpu_us_per_packet"], b["cpu_us_per_packet"])))
        rows.append((f"p99 added latency at N = {a['n']}, ms (worse direction)", _fmt(a.get("p99_ms"), 2), _fmt(b.get("p99_ms"), 2), _ratio(a.get("p99_ms"), b.get("p99_ms"))))
    tb_us, re_us = _row_value(tb_relay, "cpu_us_per_packet"), _row_value(re_relay, "cpu_us_per_packet")
    rows.append(("CPU µs per relayed packet at each one's max N", _fmt(tb_us), _fmt(re_us), _ratio(tb_us, re_us)))
    tb_core = 1e6 / (tb_us * PACKETS_PER_CALL_SECOND) if tb_us else None
    re_core = 1e6 / (re_us * PACKETS_PER_CALL_SECOND) if re_us else None
    rows.append(("calls one core would carry at that CPU cost (100 packets/s a call)", _fmt(tb_core, 0), _fmt(re_core, 0), _ratio(tb_core, re_core)))
    tb_p99, re_p99 = _row_value(tb_relay, "p99_ms"), _row_value(re_relay, "p99_ms")
    rows.append(("p99 added latency at max N, ms (worse direction)", _fmt(tb_p99, 2), _fmt(re_p99, 2), _ratio(tb_p99, re_p99)))
    tb_j, re_j = _row_value(tb_relay, "jitter_ms"), _row_value(re_relay, "jitter_ms")
    rows.append(("jitter at max N, ms (RFC 3550, mean \\|D\\|)", _fmt(tb_j, 2), _fmt(re_j, 2), _ratio(tb_j, re_j)))
    tb_rss, re_rss = tb.get("rss_per_call_kib"), re_.get("rss_per_call_kib")
    rows.append(("RSS per call, KiB (highest RSS over the idle process / most calls up)", _fmt(tb_rss, 0), _fmt(re_rss, 0), _ratio(tb_rss, re_rss)))
    tb_rates, re_rates = tb.get("rates") or tb.get("short_rates") or {}, re_.get("rates") or re_.get("short_rates") or {}
    tb_setup, re_setup = tb_rates.get("setup_rate"), re_rates.get("setup_rate")
    rows.append((
        "call set-up rate, calls/s (ICE + DTLS-SRTP each; generator CPU meanwhile)",
        _with_gen(tb_setup, tb_rates.get("setup_gen_cpu")), _with_gen(re_setup, re_rates.get("setup_gen_cpu")),
        _ratio(tb_setup, re_setup, prefix="≤ " if (re_rates.get("setup_gen_cpu") or 0) >= 0.85 > (tb_rates.get("setup_gen_cpu") or 0) else ""),
    ))
    rows.append((
        "registration rate, REGISTER/s over WSS (generator CPU meanwhile)",
        _with_gen(tb_rates.get("register_rate"), tb_rates.get("register_gen_cpu"), 0), "n/a (no SIP)", "-",
    ))
    tb_tc, re_tc = tb.get("transcode"), re_.get("transcode")
    rows.append(("transcoding Opus ↔ PCMU: max N calls (loss ≤ 0.1 %, p99 ≤ first step's p50 + 20 ms)", _max_n(tb_tc), _max_n(re_tc), _bound_ratio(tb_tc, re_tc)))
    common = _common(tb_tc, re_tc)
    if common:
        a, b = common
        rows.append((f"transcoding: CPU µs per packet at N = {a['n']} (largest N both passed)", _fmt(a["cpu_us_per_packet"]), _fmt(b["cpu_us_per_packet"]), _ratio(a["cpu_us_per_packet"], b["cpu_us_per_packet"])))
    tb_tus, re_tus = _row_value(tb_tc, "cpu_us_per_packet"), _row_value(re_tc, "cpu_us_per_packet")
    rows.append(("transcoding: CPU µs per packet at each one's max N", _fmt(tb_tus), _fmt(re_tus), _ratio(tb_tus, re_tus)))
    tb_tl, re_tl = _row_value(tb_tc, "p50_ms"), _row_value(re_tc, "p50_ms")
    rows.append(("transcoding: added latency p50, ms (≈, frame-matched)", _fmt(tb_tl, 1), _fmt(re_tl, 1), _ratio(tb_tl, re_tl)))
    tb_g, re_g = _row_value(tb_relay, "gen_cpu"), _row_value(re_relay, "gen_cpu")
    rows.append(("generator CPU at max N, % of its core (both processes)", _fmt(100 * tb_g if tb_g is not None else None, 0), _fmt(100 * re_g if re_g is not None else None, 0), "-"))
    return rows


STEP_COLUMNS = (
    "system", "codec", "N", "up", "loss ↑ %", "loss ↓ %", "p50 ms", "p99 ↑ ms", "p99 ↓ ms", "jitter ms",
    "sys CPU %", "µs/pkt", "RSS MiB", "setup/s", "gen CPU %", "gen lag p99 ms", "other load % (sys/gen core)", "result",
)


def step_row(row: dict[str, Any]) -> list[str]:
    if "error" in row:
        return [row["system"], row["codec"], str(row["n"])] + ["-"] * (len(STEP_COLUMNS) - 4) + [f"error: {row['error'][:80]}"]
    up, down = row.get("up", {}), row.get("down", {})
    result = "pass" if row["passed"] else "FAIL"
    if row["codec"] == "rates":
        result = "(rates only)"
    if row.get("attempt", 1) > 1:
        result += f" (try {row['attempt']})"
    return [
        row["system"], row["codec"], str(row["n"]), str(row.get("calls_up", 0)),
        _fmt(100 * up.get("loss", 1.0), 3), _fmt(100 * down.get("loss", 1.0), 3),
        _fmt(row.get("p50_ms"), 2), _fmt(up.get("p99_ms"), 2), _fmt(down.get("p99_ms"), 2), _fmt(row.get("jitter_ms"), 2),
        _fmt(100 * row.get("sys_cpu", 0.0), 0), _fmt(row.get("cpu_us_per_packet")), _fmt(row.get("rss_mib")),
        _fmt(row.get("setup_rate")), _fmt(100 * row.get("gen_cpu", 0.0), 0), _fmt(row.get("gen_lag_p99_ms")),
        f"{100 * row.get('other_load_sys_core', 0.0):.0f} / {100 * row.get('other_load_gen_core', 0.0):.0f}", result,
    ]


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]] | list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def charts(results: dict[str, Any], out_dir: Path, stem: str) -> list[str]:
    """CPU µs per packet vs N and p99 added latency vs N, both systems; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    styles = {("telebridge", "relay"): ("tab:blue", "-o"), ("rtpengine", "relay"): ("tab:orange", "-o"),
              ("telebridge", "transcode"): ("tab:blue", "--s"), ("rtpengine", "transcode"): ("tab:orange", "--s")}
    names = []
    for key, label, filename, limit in (
        ("cpu_us_per_packet", "CPU µs per relayed packet", f"{stem}-cpu-per-packet.png", None),
        ("p99_ms", "p99 added one-way latency, ms (worse direction)", f"{stem}-p99-latency.png", 20.0),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for system, data in results["systems"].items():
            for codec in ("relay", "transcode"):
                ramp = data.get(codec)
                if not ramp:
                    continue
                points = sorted((r["n"], r.get(key)) for r in ramp["steps"] if r.get(key) is not None and "error" not in r)
                if not points:
                    continue
                color, style = styles[(system, codec)]
                suffix = " (≈, incl. jitter buffer)" if codec == "transcode" and key == "p99_ms" else ""
                ax.plot([p[0] for p in points], [p[1] for p in points], style, color=color, label=f"{system} {codec}{suffix}")
        if limit is not None:
            ax.axhline(limit, color="gray", linestyle=":", linewidth=1, label=f"{limit:g} ms limit")
        ax.set_xlabel("concurrent calls N")
        ax.set_ylabel(label)
        if key == "p99_ms":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(label + " vs N")
        fig.tight_layout()
        fig.savefig(out_dir / filename)
        plt.close(fig)
        names.append(filename)
    return names


def write(results: dict[str, Any], path: Path) -> Path:
    """The Markdown report at ``path`` (charts and the raw JSON beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    images = charts(results, path.parent, stem)
    (path.parent / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    machine = results["machine"]
    steps = []
    for data in results["systems"].values():
        if data.get("rates"):
            steps.append(step_row(data["rates"]))
        for key in ("relay", "transcode"):
            steps += [step_row(r) for r in (data.get(key) or {}).get("steps", [])]
    text = f"""# Capacity: telebridge vs rtpengine, {results['date']}

{results['mode_note']}

Machine: {machine['cpu']}, {machine['cores']} cores, kernel {machine['kernel']}, Python {machine['python']};
telebridge {machine['telebridge']}; rtpengine {machine['rtpengine']}.
Run took {results['elapsed_s'] / 60:.1f} min: `{results['command']}`.

Each system ran pinned to core {results['system_core']} (`nice -n 10 taskset -c {results['system_core']}`), the load
generator on core {results['load_core']}. Every step set up N calls the way a browser does (telebridge: SIP over
WSS with a token, REGISTER, INVITE/200/ACK; rtpengine: ng offer/answer), then an ICE check with USE-CANDIDATE
and a DTLS-SRTP handshake per call, against a SIP side answering with plain RTP; then both sides streamed
20 ms packets for {results['seconds']:g} s. Loss and latency are per packet (send stamp before `sendto`,
kernel receive stamp, same clock); CPU is the system's utime + stime over the window divided by the packets
it relayed; RSS per call is (highest RSS in the relayed steps − RSS of the idle process) / most calls up.

## Summary

{_table(("metric", "telebridge", "rtpengine", "telebridge / rtpengine"), summary(results))}

"≥" marks a ramp that stopped before the system failed (the generator's core was full, other work on this
shared machine kept taking the cores, or the time budget ran out): the system carries at least that much,
and the ratio is a bound. Transcoding rows: the browser
sends real Opus and the SIP side PCMU only, so each system decodes and re-encodes both ways (rtpengine was
offered mono Opus at 32 kbit/s, as telebridge encodes); their latency is matched by frame number and
includes each system's codec pipeline (jitter buffer, framing), so the 20 ms limit applies to what the
load adds to the p50 of the ramp's first step.

![CPU per packet]({images[0]})

![p99 latency]({images[1]})

## Every step

{_table(STEP_COLUMNS, steps)}

↑ = browser → SIP side, ↓ = SIP side → browser. "other load" is what else ran on each core meanwhile
(other work on this shared machine, at higher priority than the benchmark's `nice -n 10`): a failed step
with more than 10 % on the system's core or 20 % on the load core is run again (twice at most).

## Notes

{chr(10).join('- ' + n for n in results['notes'])}
"""
    path.write_text(text)
    return path
