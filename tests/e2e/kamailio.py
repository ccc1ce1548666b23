"""Kamailio 5.6 as a real registrar and proxy in tests.

The runner writes a small ``kamailio.cfg`` into its work directory: UDP on
one free loopback port, registrations in memory (usrloc without a
database), digest authentication against a plain-text password table
(htable, filled at start-up, because auth_db needs a database), and a
record-routing proxy that relays INVITEs to the callee's registered
Contact. Only modules the Debian ``kamailio`` package ships are loaded::

    with Kamailio(workdir, {"alice": "pw-a", "bob": "pw-b"}) as proxy:
        ...  # phones register at proxy.address
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.e2e.harness import LOOPBACK, free_port, options_status, require_program, stop_process

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

CONFIG = """#!KAMAILIO
# Written by tests/e2e/kamailio.py for one test run.

debug=2
log_stderror=yes
fork=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:{address}
alias="{address}"

mpath="{modules}"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "htable.so"

modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
# Plain-text passwords: there is no database for auth_db here.
modparam("htable", "htable", "passwords=>size=4;")

event_route[htable:mod-init] {{
{passwords}
}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (has_totag()) {{
        route(IN_DIALOG);
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        route(REGISTRAR);
        exit;
    }}
    if (is_method("INVITE")) {{
        route(CALL);
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}

route[IN_DIALOG] {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (is_method("ACK") && t_check_trans()) {{
        t_relay();
        exit;
    }}
    sl_send_reply("404", "Not Here");
}}

route[REGISTRAR] {{
    if (!pv_www_authenticate("$td", "$sht(passwords=>$tU)", "0")) {{
        www_challenge("$td", "0");
        exit;
    }}
    consume_credentials();
    if (!save("location")) {{
        sl_reply_error();
    }}
}}

route[CALL] {{
    if (!pv_proxy_authenticate("$fd", "$sht(passwords=>$fU)", "0")) {{
        proxy_challenge("$fd", "0");
        exit;
    }}
    consume_credentials();
    record_route();
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    xlog("L_INFO", "INVITE $fU -> $ru (call $ci)\\n");
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}
"""


class KamailioError(AssertionError):
    """Kamailio did not start: a configuration error, an early exit, or no answer to OPTIONS."""


@dataclass
class Kamailio:
    """One Kamailio process: a registrar and proxy for ``users`` (name -> password) on UDP."""

    workdir: Path
    users: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` for account lines and SIP URIs."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "kamailio.cfg"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def write_config(self) -> None:
        passwords = "\n".join(f'    $sht(passwords=>{user}) = "{password}";' for user, password in self.users.items())
        self.config_path.write_text(CONFIG.format(address=self.address, modules=MODULES, passwords=passwords))

    def start(self, timeout: float = 20.0) -> None:
        """Check the configuration, start Kamailio, and wait until OPTIONS gets a 200."""
        kamailio = require_program("kamailio")
        self.workdir.mkdir(parents=True, exist_ok=True)
        runtime = self.workdir / "run"
        runtime.mkdir(exist_ok=True)
        self.write_config()
        common = ["-f", str(self.config_path), "-L", str(MODULES), "-Y", str(runtime)]
        check = subprocess.run([kamailio, "-c", *common], check=False, capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise KamailioError(f"kamailio.cfg does not check:\n{check.stdout}{check.stderr}")
        self._log = self.log_path.open("wb")
        # -DD: the process we started stays in the foreground as the
        # creator of the workers, so terminating it stops them all; its own
        # session lets a kill reach the workers too.
        self.process = subprocess.Popen(
            [kamailio, *common, "-DD", "-E", "-m", "32", "-M", "8"],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while options_status(self.port, timeout=0.2) != 200:
            if self.process.poll() is not None:
                raise KamailioError(f"kamailio exited at start-up:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise KamailioError(f"kamailio did not answer OPTIONS in time:\n{self.log_text()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``. Stop the phones first: a phone un-registering at a
        proxy that is gone waits about 30 s for an answer."""
        if self.process is None:
            return
        stop_process(self.process, timeout, process_group=True)
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
