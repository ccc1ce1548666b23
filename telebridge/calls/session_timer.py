"""Session timers (RFC 4028) as telebridge applies them, sans-I/O.

Rules of operation (INTEROP.md, "session timers"):

* Toward the PBX telebridge asks for ``[upstream] session_expires`` on the
  calls it places and refreshes them itself at half the interval when it
  is the refresher (the PBX's 2xx says ``refresher=uac``, or says nothing),
  with UPDATE when the PBX allows it, else a re-INVITE with the same SDP.
  A 422 is answered once with the PBX's Min-SE.
* A SIP side that is the refresher (its INVITE carried Session-Expires, or
  its 2xx said ``refresher=uas``) must refresh before the interval ends,
  less min(32, interval/3) seconds (§10); otherwise the call is ended.
  Its refreshes are answered by telebridge and never reach the browser.
* A browser asking for a session timer (JsSIP: Session-Expires 90) gets
  what it asked for, with itself as refresher: never 422, whatever the
  interval. Its liveness is watched by its WebSocket and ICE consent,
  so telebridge does not end its calls over a missed refresh.
* telebridge never sends UPDATE to a browser and never requires 100rel.
"""

from __future__ import annotations

from dataclasses import dataclass

from telebridge.sip.message import Request, Response

MIN_SE = 90


@dataclass(frozen=True)
class SessionTimer:
    """A negotiated session interval and who refreshes it."""

    interval: int
    refresher: str | None  # "uac", "uas", or None when not said

    @property
    def refresh_after(self) -> float:
        """When the refresher sends its refresh (§7.4: half the interval)."""
        return self.interval / 2

    @property
    def expires_after(self) -> float:
        """When a session nobody refreshed is over (§10)."""
        return self.interval - min(32, self.interval / 3)

    def header(self) -> str:
        return f"{self.interval};refresher={self.refresher}" if self.refresher else str(self.interval)


def session_timer_of(message: Request | Response) -> SessionTimer | None:
    """The Session-Expires a message carries (``None`` when absent or unreadable)."""
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    interval_text, _, params = value.partition(";")
    interval_text = interval_text.strip()
    if not interval_text.isdigit() or len(interval_text) > 9 or int(interval_text) < 1:
        return None
    refresher = None
    for param in params.split(";"):
        name, _, setting = param.partition("=")
        if name.strip().lower() == "refresher" and setting.strip().lower() in ("uac", "uas"):
            refresher = setting.strip().lower()
    return SessionTimer(int(interval_text), refresher)


def supports_timer(message: Request | Response) -> bool:
    """Whether the sender said it understands session timers (Supported or Require: timer)."""
    tags = message.headers.get_all("Supported") + message.headers.get_all("Require")
    return any(t.strip().lower() == "timer" for t in tags)


def answer_headers(request: Request) -> list[tuple[str, str]]:
    """Session-timer headers for our 2xx to ``request``: the requester refreshes (uac)."""
    asked = session_timer_of(request)
    if asked is None or not supports_timer(request):
        return []
    return [("Session-Expires", SessionTimer(asked.interval, "uac").header()), ("Require", "timer")]


def min_se_of(response: Response) -> int | None:
    """The Min-SE of a 422 (§6)."""
    value = (response.headers.get("Min-SE") or "").split(";")[0].strip()
    return int(value) if value.isdigit() and len(value) <= 9 else None
