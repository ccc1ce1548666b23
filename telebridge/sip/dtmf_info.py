"""DTMF carried in SIP INFO bodies (JsSIP and SIP.js send these by default), parsed totally.

``application/dtmf-relay`` is the de-facto format (``Signal=5`` and
``Duration=160`` lines, the duration in milliseconds);
``application/dtmf`` carries just the digit. Anything else is not DTMF
and is left to the caller; a DTMF body without a usable digit is an error.
"""

from __future__ import annotations

DEFAULT_DURATION_MS = 160
DIGITS = frozenset("0123456789*#ABCD")
# Some phones send the RFC 4733 event code instead of the character.
_CODES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


class DtmfInfoError(ValueError):
    """A DTMF INFO whose body names no digit we can play."""


def dtmf_from_info(content_type: str | None, body: bytes) -> tuple[str, int] | None:
    """(digit, duration in ms) of a DTMF INFO; ``None`` when the INFO is not DTMF."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in ("application/dtmf-relay", "application/dtmf"):
        return None
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DtmfInfoError("the DTMF body is not ASCII") from None
    if kind == "application/dtmf":
        return _digit(text.strip()), DEFAULT_DURATION_MS
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise DtmfInfoError("no Signal= line")
    duration = fields.get("duration", "")
    duration_ms = int(duration) if duration.isdigit() and len(duration) <= 6 and int(duration) > 0 else DEFAULT_DURATION_MS
    return _digit(fields["signal"]), duration_ms


def _digit(text: str) -> str:
    digit = _CODES.get(text, text).upper()
    if digit not in DIGITS:
        raise DtmfInfoError(f"{text[:10]!r} is not a DTMF digit")
    return digit
