"""DTMF in SIP INFO bodies: what JsSIP, SIP.js and phones send; every parse is total."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telebridge.sip.dtmf_info import DtmfInfoError, dtmf_from_info


def test_jssip_dtmf_relay_body() -> None:
    assert dtmf_from_info("application/dtmf-relay", b"Signal=5\r\nDuration=100\r\n") == ("5", 100)
    assert dtmf_from_info("Application/DTMF-Relay; charset=x", b"Signal= #\nDuration= 250") == ("#", 250)
    assert dtmf_from_info("application/dtmf-relay", b"Signal=11\r\n") == ("#", 160)


def test_plain_dtmf_body_and_other_infos() -> None:
    assert dtmf_from_info("application/dtmf", b"*\r\n") == ("*", 160)
    assert dtmf_from_info("application/media_control+xml", b"<x/>") is None
    assert dtmf_from_info(None, b"") is None


@pytest.mark.parametrize("body", [b"Duration=100", b"Signal=Z", b"Signal=", b"\xff", b"Signal=55"])
def test_bad_dtmf_bodies_are_errors(body: bytes) -> None:
    with pytest.raises(DtmfInfoError):
        dtmf_from_info("application/dtmf-relay", body)


@given(st.binary(max_size=200), st.sampled_from(["application/dtmf-relay", "application/dtmf", "text/plain"]))
def test_any_body_parses_or_fails_cleanly(body: bytes, content_type: str) -> None:
    try:
        result = dtmf_from_info(content_type, body)
    except DtmfInfoError:
        return
    assert result is None or (result[0] in "0123456789*#ABCD" and result[1] > 0)
