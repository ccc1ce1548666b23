"""README's first command: ``twistd -n telebridge`` with no configuration."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import LOOPBACK, options_status, status_of, twistd_command, twistd_env
from tests.e2e.test_signalling import ws_register_request
from tests.e2e.wsclient import WebSocket

pytestmark = pytest.mark.e2e

STATE_DIR = Path("/var/lib/telebridge")


def test_embedded_default_serves_sip_wss_and_dev_tokens(tmp_path: Path) -> None:
    """Issue 2 §3: UDP/TCP 5060, TLS 5061, HTTPS+WSS 8443, a self-signed cert in the state dir."""
    log = tmp_path / "twistd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(twistd_command(), cwd=tmp_path, env=twistd_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while options_status(5060, timeout=0.2) != 200:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
        text = log.read_text()
        for url in (
            "sip:127.0.0.1:5060;transport=udp",
            "sip:127.0.0.1:5060;transport=tcp",
            "sips:127.0.0.1:5061;transport=tls",
            "https://127.0.0.1:8443/",
        ):
            assert f"listening on {url}" in text
        assert (STATE_DIR / "telebridge-cert.pem").exists()
        context = ssl.create_default_context(cafile=str(STATE_DIR / "telebridge-cert.pem"))
        with urllib.request.urlopen("https://localhost:8443/api/dev-token?user=newcomer", context=context, timeout=5) as r:
            token = json.loads(r.read())["token"]
        ws = WebSocket(LOOPBACK, 8443, f"/sip?token={token}")
        ws.send_text(ws_register_request("newcomer"))
        assert status_of(ws.recv_message()) == 200
        ws.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert "Traceback" not in log.read_text()


def test_bad_config_stops_start_up_with_one_line_naming_the_key(tmp_path: Path) -> None:
    """Issue 2 §3: a wrong value stops twistd with a message naming file and key."""
    config = tmp_path / "bad.toml"
    config.write_text('[auth]\ntoken_secret = "0123456789abcdef0"\n[sip]\nlisten = ["udp:127.0.0.1:99999"]\n')
    result = subprocess.run(
        twistd_command("--config", str(config)), cwd=tmp_path, env=twistd_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{config}: sip.listen[0]: port '99999'" in output
    assert "Traceback" not in output
