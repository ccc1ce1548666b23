"""Issue 6: the capacity report's short mode runs, and through each system calls come up and media flows.

Runs ``bench/capacity.py --short`` as a user would (real telebridge under
twistd, Debian's rtpengine, the load generator's two processes) and checks
only that calls were set up and packets arrived on both sides. It asserts
no speed: capacity figures belong in the report, never in a test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = ("telebridge", "rtpengine")


def test_short_capacity_run_sets_up_calls_and_media_flows_both_ways(tmp_path: Path) -> None:
    for program in ("rtpengine", "taskset"):
        assert shutil.which(program), f"{program} is not installed: run `sh scripts/install.sh --test`"
    report = tmp_path / "capacity.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "capacity.py"), "--short", "--out", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert report.exists() and (tmp_path / "capacity-cpu-per-packet.png").exists(), done.stdout
    results = json.loads((tmp_path / "capacity.json").read_text())
    for system in SYSTEMS:
        data = results["systems"][system]
        row = data["relay"]["steps"][0]
        assert "error" not in row, (system, row.get("error"), done.stdout)
        assert row["calls_up"] == row["n"] > 0, (system, row.get("setup_error"))
        assert row["up"]["received"] > 0, (system, "nothing reached the SIP side", row)
        assert row["down"]["received"] > 0, (system, "nothing reached the browser side", row)
        assert data.get("tracebacks", 0) == 0, data.get("log_tail")
