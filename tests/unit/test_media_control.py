"""RFC 5168 keyframe requests in SIP INFO are recognised, and nothing else is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from telebridge.sip.media_control import CONTENT_TYPE, MAX_BODY, PICTURE_FAST_UPDATE, asks_for_keyframe

POLYCOM_STYLE = (
    b'<?xml version="1.0" encoding="utf-8" ?>\n<media_control>\n  <vc_primitive>\n    <to_encoder>\n'
    b"      <picture_fast_update>\n      </picture_fast_update>\n    </to_encoder>\n  </vc_primitive>\n</media_control>\n"
)


def test_picture_fast_update_is_a_keyframe_request_whatever_its_layout() -> None:
    assert asks_for_keyframe(CONTENT_TYPE, PICTURE_FAST_UPDATE)
    assert asks_for_keyframe("Application/Media_Control+XML; charset=utf-8", POLYCOM_STYLE)


def test_other_infos_are_not() -> None:
    assert not asks_for_keyframe("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")
    assert not asks_for_keyframe(None, PICTURE_FAST_UPDATE)
    assert not asks_for_keyframe(CONTENT_TYPE, b"<media_control><general_error>x</general_error></media_control>")
    # An oversized body is not searched (RFC 5168 bodies are a few hundred bytes).
    assert not asks_for_keyframe(CONTENT_TYPE, b" " * MAX_BODY + PICTURE_FAST_UPDATE)


@given(st.one_of(st.none(), st.text(max_size=40)), st.binary(max_size=300))
def test_any_info_is_read_without_raising(content_type: str | None, body: bytes) -> None:
    assert asks_for_keyframe(content_type, body) in (True, False)
