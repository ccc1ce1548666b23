"""StreamFramer: cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3, RFC 5626 §3.5.1)."""

from __future__ import annotations

from typing import Any, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.sip.errors import SipParseError
from telebridge.sip.message import (
    DEFAULT_MAX_SIZE,
    KeepAlive,
    Message,
    Request,
    Response,
    StreamFramer,
)
from tests.unit.test_message import INDEX, OK_200, VALID, _vector, mutated, requests, responses

Item = Message | KeepAlive | SipParseError


def describe(item: Item) -> Any:
    """A comparable picture of one framer output."""
    if isinstance(item, KeepAlive):
        return "keepalive"
    if isinstance(item, SipParseError):
        return ("error", item.status, item.reason, item.request is not None)
    return ("message", type(item).__name__, item.to_bytes())


def run(chunks: Sequence[bytes], max_size: int = DEFAULT_MAX_SIZE) -> tuple[list[Any], tuple[int, str] | None]:
    """Feed ``chunks``, then an empty read to flush a deferred framing error."""
    framer = StreamFramer(max_size)
    items: list[Item] = []
    try:
        for chunk in chunks:
            items += framer.feed(chunk)
        items += framer.feed(b"")
    except SipParseError as e:
        return [describe(i) for i in items], (e.status, e.reason)
    return [describe(i) for i in items], None


def byte_by_byte(data: bytes) -> list[bytes]:
    """``data`` as one-octet reads."""
    return [data[i : i + 1] for i in range(len(data))]


# --- framing: RFC 3261 §18.3 -----------------------------------------------------------------


def test_one_message_in_one_read() -> None:
    """RFC 3261 §18.3: a message ends Content-Length octets after the blank line."""
    framer = StreamFramer()
    [message] = framer.feed(VALID)
    assert isinstance(message, Request) and message.body == b"v=0\n"
    assert not framer.pending


def test_partial_message_waits_for_the_rest() -> None:
    """RFC 3261 §18.3: nothing comes out until the whole body has arrived."""
    framer = StreamFramer()
    assert framer.feed(VALID[:50]) == [] and framer.pending
    assert framer.feed(VALID[50:-2]) == [] and framer.pending
    [message] = framer.feed(VALID[-2:])
    assert isinstance(message, Request) and not framer.pending


def test_two_messages_in_one_read() -> None:
    """RFC 3261 §18.3: back-to-back messages are cut at their Content-Length."""
    items = StreamFramer().feed(VALID + OK_200)
    assert [type(i) for i in items] == [Request, Response]


def test_crlfcrlf_is_a_keepalive_ping() -> None:
    """RFC 5626 §3.5.1: a double CRLF on a stream is a ping (answered with a single CRLF)."""
    framer = StreamFramer()
    assert [type(i) for i in framer.feed(b"\r\n\r\n")] == [KeepAlive]
    assert [type(i) for i in framer.feed(VALID + b"\r\n\r\n" + VALID)] == [Request, KeepAlive, Request]
    assert not framer.pending


def test_single_crlf_between_messages_is_skipped() -> None:
    """RFC 5626 §3.5.1 pong / RFC 3261 §7.5: a lone CRLF before a start line is ignored."""
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [] and not framer.pending
    assert [type(i) for i in framer.feed(VALID + b"\r\n" + OK_200)] == [Request, Response]


def test_keepalive_split_across_reads() -> None:
    """A ping cut in two reads is still one ping."""
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert [type(i) for i in framer.feed(b"\n")] == [KeepAlive]


def test_message_that_frames_but_does_not_parse_comes_back_as_its_error() -> None:
    """The framing held, so the stream goes on: the bad message is an item, the next one parses."""
    bad = VALID.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    items = StreamFramer().feed(bad + VALID)
    assert isinstance(items[0], SipParseError) and items[0].status == 400 and items[0].request is not None
    assert isinstance(items[1], Request)


def test_missing_content_length_is_a_framing_error() -> None:
    """RFC 3261 §18.3: on a stream Content-Length is mandatory; without it framing is lost."""
    with pytest.raises(SipParseError) as error:
        StreamFramer().feed(VALID.replace(b"Content-Length: 4\r\n", b""))
    assert error.value.status == 400


@pytest.mark.parametrize("value", [b"-4", b"four", b"", b"4 4", b"1234567890"])
def test_unreadable_content_length_is_a_framing_error(value: bytes) -> None:
    """RFC 4475 §3.1.2.3: a non-numeric or negative length loses the framing; close the connection."""
    with pytest.raises(SipParseError) as error:
        StreamFramer().feed(VALID.replace(b"Content-Length: 4", b"Content-Length: " + value))
    assert error.value.status == 400


def test_two_content_lengths_are_a_framing_error() -> None:
    """RFC 4475 §3.3.9: with two lengths there is no way to know where the message ends."""
    with pytest.raises(SipParseError):
        StreamFramer().feed(_vector("mcl01"))


def test_content_length_past_the_data_waits() -> None:
    """RFC 4475 §3.1.2.2: on a stream a too-large Content-Length just waits for more data."""
    framer = StreamFramer()
    assert framer.feed(_vector("clerr")) == [] and framer.pending


def test_oversized_headers_raise_513_before_the_blank_line() -> None:
    """Bounded buffers (h11 max_incomplete_event_size): a head past the cap is 513."""
    framer = StreamFramer(max_size=100)
    assert framer.feed(VALID[:100]) == []
    with pytest.raises(SipParseError) as error:
        framer.feed(VALID[100:101])
    assert error.value.status == 513


def test_oversized_body_raises_513_as_soon_as_the_length_is_known() -> None:
    """Bounded buffers: a Content-Length past the cap is refused without waiting for the body."""
    head = VALID.split(b"\r\n\r\n")[0].replace(b"Content-Length: 4", b"Content-Length: 70000") + b"\r\n\r\n"
    with pytest.raises(SipParseError) as error:
        StreamFramer().feed(head)
    assert error.value.status == 513


def test_message_exactly_at_the_cap_is_accepted() -> None:
    """The cap counts the whole message: head plus body equal to max_size is fine."""
    assert [type(i) for i in StreamFramer(max_size=len(VALID)).feed(VALID)] == [Request]
    with pytest.raises(SipParseError):
        StreamFramer(max_size=len(VALID) - 1).feed(VALID)


def test_messages_before_a_framing_error_are_delivered_first() -> None:
    """Whatever was complete before the error comes out; the error is raised by the next read."""
    framer = StreamFramer()
    items = framer.feed(VALID + b"\r\n\r\n" + VALID.replace(b"Content-Length: 4\r\n", b""))
    assert [type(i) for i in items] == [Request, KeepAlive]
    assert framer.pending
    for _ in range(2):
        with pytest.raises(SipParseError) as error:
            framer.feed(VALID)
        assert error.value.status == 400


@pytest.mark.parametrize("vector", INDEX, ids=[v["name"] for v in INDEX])
def test_rfc4475_vectors_frame_the_same_whole_or_byte_by_byte(vector: dict[str, Any]) -> None:
    """RFC 4475 on a stream: the same items (or framing error) however the bytes arrive."""
    data = _vector(vector["name"])
    whole = run([data])
    assert run(byte_by_byte(data)) == whole
    if vector["name"] in ("ncl", "mcl01", "inv2543"):
        assert whole[1] is not None and whole[1][0] == 400  # framing lost: close the connection
    elif vector["name"] == "clerr":
        assert whole == ([], None)  # still waiting for 9999 octets
    else:
        assert whole[1] is None and len(whole[0]) >= 1


# --- properties ----------------------------------------------------------------------------------

stream_pieces = st.lists(
    st.one_of(
        requests().map(lambda m: m.to_bytes()),
        responses().map(lambda m: m.to_bytes()),
        st.just(b"\r\n\r\n"),
        st.just(b"\r\n"),
    ),
    min_size=1,
    max_size=5,
)


def test_fixed_stream_gives_the_same_items_split_at_every_position() -> None:
    """RFC 3261 §18.3: messages, pings and pongs come out the same for every two-read cut."""
    data = VALID + b"\r\n\r\n" + OK_200 + b"\r\n" + _vector("wsinv") + _vector("mpart01") + _vector("mismatch01")
    whole = run([data])
    assert [w if w == "keepalive" else w[0] for w in whole[0]] == ["message", "keepalive", "message", "message", "message", "error"]
    assert whole[1] is None
    assert run(byte_by_byte(data)) == whole
    for cut in range(1, len(data)):
        assert run([data[:cut], data[cut:]]) == whole, cut


@given(stream_pieces, st.lists(st.integers(0, 10_000), max_size=25))
@settings(max_examples=150, deadline=None)
def test_valid_stream_gives_the_same_messages_however_split(pieces: list[bytes], cuts: list[int]) -> None:
    """RFC 3261 §18.3: generated messages come out whole, byte by byte, or cut anywhere in two."""
    data = b"".join(pieces)
    whole = run([data])
    assert whole[1] is None
    messages = [p for p in pieces if p not in (b"\r\n\r\n", b"\r\n")]
    assert [w[2] for w in whole[0] if w != "keepalive"] == messages
    assert run(byte_by_byte(data)) == whole
    for cut in cuts:
        cut %= len(data) + 1
        assert run([data[:cut], data[cut:]]) == whole


@given(st.binary(max_size=1500), st.lists(st.integers(1, 64), max_size=30))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_frame_the_same_however_cut(data: bytes, cuts: list[int]) -> None:
    """The fuzz invariant for the framer (h11): only SipParseError, the same outcome whole, byte by byte or chunked."""
    whole = run([data], max_size=1024)
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(data[pos : pos + size])
        pos += size
    chunks.append(data[pos:])
    assert run(chunks, max_size=1024) == whole
    assert run(byte_by_byte(data), max_size=1024) == whole


@given(st.lists(mutated(), min_size=1, max_size=3), st.lists(st.integers(1, 200), max_size=20))
@settings(max_examples=400, deadline=None)
def test_mutated_streams_frame_the_same_however_cut(messages: list[bytes], cuts: list[int]) -> None:
    """Mutated valid and RFC 4475 messages, concatenated: typed errors only, and cut-independent."""
    data = b"".join(messages)
    whole = run([data])
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(data[pos : pos + size])
        pos += size
    chunks.append(data[pos:])
    assert run(chunks) == whole
    assert run(byte_by_byte(data)) == whole


@given(st.lists(st.sampled_from([VALID, OK_200, b"\r\n\r\n", b"\r\n"]), min_size=1, max_size=6), st.data())
@settings(max_examples=200, deadline=None)
def test_pending_is_false_exactly_between_messages(pieces: list[bytes], data: st.DataObject) -> None:
    """``pending`` drives the transport's deadline: true only inside a message."""
    framer = StreamFramer()
    stream = b"".join(pieces)
    cut = data.draw(st.integers(0, len(stream)))
    framer.feed(stream[:cut])
    boundaries = {0}
    for piece in pieces:
        boundaries.add(max(boundaries) + len(piece))
    if cut in boundaries:
        assert not framer.pending
    framer.feed(stream[cut:])
    assert not framer.pending
