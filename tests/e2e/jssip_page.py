"""JsSIP (npm, tests only) in a page of the gateway's origin, driven as ``window.jssipClient``.

JsSIP 3.13 ships CommonJS only, so esbuild (the project's local binary from
``npm ci`` in tests/e2e/jssip, run by ``scripts/install.sh --test``) bundles
it into one script defining ``window.JsSIP``. It runs offline: the tests
have no network beyond loopback. tests/e2e/jssip/client.js is the app
around it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.harness import LOOPBACK, Gateway, require_program
from tests.e2e.softphone import SoftphoneBrowser, SoftphonePage

PROJECT = Path(__file__).with_name("jssip")
ENTRY = PROJECT / "node_modules" / "jssip" / "lib" / "JsSIP.js"
ESBUILD = PROJECT / "node_modules" / ".bin" / "esbuild"
CLIENT = PROJECT / "client.js"
# A path the gateway answers 404: a page of its origin, free of the
# softphone page's Content-Security-Policy.
BLANK_PATH = "/e2e-jssip"


def bundle_jssip(out_dir: Path) -> Path:
    """Bundle JsSIP into ``out_dir/jssip.js``; a missing npm install fails with what to run."""
    require_program("node")
    if not ENTRY.is_file() or not ESBUILD.exists():
        raise AssertionError(f"JsSIP and esbuild are not installed in {PROJECT}: run `sh scripts/install.sh --test`")
    bundle = out_dir / "jssip.js"
    result = subprocess.run(
        [str(ESBUILD), str(ENTRY), "--bundle", "--format=iife", "--global-name=JsSIP", "--platform=browser",
         f"--outfile={bundle}", "--log-level=warning"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"esbuild failed:\n{result.stderr}"
    return bundle


def open_jssip_page(browser: SoftphoneBrowser, gateway: Gateway, bundle: Path, name: str) -> SoftphonePage:
    """A page of the gateway's origin with JsSIP and the client loaded."""
    page = browser.open_blank(name, f"https://{LOOPBACK}:{gateway.web_port}{BLANK_PATH}")
    page.add_script(bundle)
    page.add_script(CLIENT)
    return page
