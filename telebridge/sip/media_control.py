"""Keyframe requests in SIP INFO (RFC 5168, ``application/media_control+xml``), read totally.

SIP video phones that predate RTCP feedback (and some PBXs) ask for a
keyframe with an INFO whose XML body names ``picture_fast_update``. The
body is only searched for that element, never parsed as XML: nothing in it
can make the gateway expand entities or build a tree.
"""

from __future__ import annotations

CONTENT_TYPE = "application/media_control+xml"
MAX_BODY = 4096  # RFC 5168's bodies are a few hundred bytes
PICTURE_FAST_UPDATE = (
    b'<?xml version="1.0" encoding="utf-8" ?>\r\n'
    b"<media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n"
)


def asks_for_keyframe(content_type: str | None, body: bytes) -> bool:
    """Whether an INFO is an RFC 5168 request for a full picture."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != CONTENT_TYPE or len(body) > MAX_BODY:
        return False
    return b"picture_fast_update" in body
