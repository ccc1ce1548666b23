"""Which calls are recorded, and where (``[recording]`` in the config).

Rules of operation:

* A call is recorded when either party's user name is listed in
  ``users`` ("*" lists everyone), or when the SIP side asks for it per
  call: the header (``X-Record`` unless configured otherwise) with a
  true value ("on", "yes", "true", "1") in its INVITE or in its answer.
  A browser cannot ask: its header would let any user record anyone.
* The decision is made once, when the call is answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from telebridge.sip.message import Request, Response

TRUE_VALUES = ("on", "yes", "true", "1")


@dataclass(frozen=True, slots=True)
class RecordingPolicy:
    folder: Path
    users: frozenset[str] = frozenset()
    header: str = "X-Record"

    def wanted(self, caller: str, callee: str, from_sip: list[Request | Response]) -> bool:
        """Whether a call between these users is recorded, given the SIP side's messages."""
        if "*" in self.users or caller in self.users or callee in self.users:
            return True
        return any((message.headers.get(self.header) or "").strip().lower() in TRUE_VALUES for message in from_sip)
