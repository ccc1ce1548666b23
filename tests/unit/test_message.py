"""SIP message parsing and serialisation: round-trips, corpus, fuzz invariant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.sip.errors import SipParseError
from telebridge.sip.message import (
    Headers,
    KeepAlive,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)

VALID = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"From: \"Alice \\\"A\\\"\" <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\n"
    b"v=0\n"
)


def test_parses_a_plain_invite() -> None:
    """RFC 3261 §7: start line, headers, body framed by Content-Length."""
    message = parse_message(VALID)
    assert isinstance(message, Request)
    assert (message.method, message.uri, message.body) == ("INVITE", "sip:bob@example.com", b"v=0\n")
    assert message.cseq == (314159, "INVITE")
    assert message.from_.display == 'Alice "A"'
    assert message.from_tag == "1928301774" and message.to_tag is None


def test_compact_forms_and_case_insensitive_names_keep_their_spelling() -> None:
    """RFC 3261 §7.3.3: ``v``/``i``/``f``/``t``/``m``/``l`` are the same headers."""
    raw = (
        VALID.replace(b"Via:", b"v:").replace(b"Call-ID:", b"i:").replace(b"To:", b"t:")
        .replace(b"From:", b"f:").replace(b"Contact:", b"m:").replace(b"Content-Length:", b"l:")
        .replace(b"CSeq:", b"cseq:")
    )
    message = parse_message(raw)
    assert message.call_id == "a84b4c76e66710@pc33.example.com"
    assert message.headers.get("CONTACT") == "<sip:alice@pc33.example.com>"
    assert b"\r\nv: SIP/2.0/UDP" in message.to_bytes()
    assert b"\r\ncseq: 314159" in message.to_bytes()


def test_folded_lines_are_unfolded() -> None:
    """RFC 3261 §7.3.1: a line starting with whitespace continues the previous one."""
    raw = VALID.replace(b"Max-Forwards: 70\r\n", b"Subject: I know\r\n  you're there,\r\n\tpick up!\r\nMax-Forwards: 70\r\n")
    assert parse_message(raw).headers.get("Subject") == "I know you're there, pick up!"


def test_multiple_via_on_one_line_and_several_lines() -> None:
    """RFC 3261 §7.3.1: comma-joined and repeated header lines are one list."""
    raw = VALID.replace(
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n",
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK2\r\n"
        b"Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bK3;received=127.0.0.1\r\n",
    )
    vias = parse_message(raw).vias
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "192.0.2.1", 5060, "z9hG4bK1"),
        ("TCP", "2001:db8::9", 5061, "z9hG4bK2"),
        ("WSS", "abc.invalid", None, "z9hG4bK3"),
    ]


def test_comma_inside_quotes_does_not_split_contacts() -> None:
    """RFC 3261 §7.3.1: commas in quoted strings and <> are not separators."""
    headers = Headers([("Contact", '"Doe, John" <sip:j@a;x=1>;q=0.5, <sip:k@b>')])
    assert headers.get_all("m") == ['"Doe, John" <sip:j@a;x=1>;q=0.5', "<sip:k@b>"]


def test_serialising_sets_content_length_from_the_body() -> None:
    """RFC 3261 §20.14: Content-Length is always right on the wire."""
    message = parse_message(VALID)
    message.body = b"longer body"
    assert b"Content-Length: 11\r\n" in message.to_bytes()
    assert parse_message(message.to_bytes()).body == b"longer body"


def test_make_response_copies_dialog_headers_and_adds_to_tag() -> None:
    """RFC 3261 §8.2.6.2: Via, From, To, Call-ID, CSeq copied; To gets a tag (not on 100)."""
    req = parse_message(VALID)
    assert isinstance(req, Request)
    ringing = make_response(req, 180, to_tag="xyz")
    assert ringing.to_tag == "xyz" and ringing.headers.get_all("Via") == req.headers.get_all("Via")
    assert make_response(req, 100, to_tag="xyz").to_tag is None
    assert parse_message(ringing.to_bytes()).status == 180  # type: ignore[union-attr]


MALFORMED: list[tuple[str, bytes, int, bool]] = [
    # name, bytes, status, whether a reply can be addressed
    ("empty", b"", 400, False),
    ("no blank line", VALID.split(b"\r\n\r\n")[0], 400, False),
    ("one word", b"HELLO\r\n\r\n", 400, False),
    ("bad version", VALID.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), 505, True),
    ("not SIP", VALID.replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1), 400, True),
    ("missing Via", VALID.replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n", b""), 400, False),
    ("missing From", VALID.replace(b'From: "Alice \\"A\\"" <sip:alice@example.com>;tag=1928301774\r\n', b""), 400, False),
    ("missing To", VALID.replace(b"To: Bob <sip:bob@example.com>\r\n", b""), 400, False),
    ("missing Call-ID", VALID.replace(b"Call-ID: a84b4c76e66710@pc33.example.com\r\n", b""), 400, False),
    ("missing CSeq", VALID.replace(b"CSeq: 314159 INVITE\r\n", b""), 400, False),
    ("CSeq method mismatch", VALID.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400, True),
    ("CSeq not a number", VALID.replace(b"CSeq: 314159", b"CSeq: 31x4159"), 400, False),
    ("CSeq too big", VALID.replace(b"CSeq: 314159", b"CSeq: 99999999999"), 400, False),
    ("header without colon", VALID.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), 400, False),
    ("bad header name", VALID.replace(b"Max-Forwards:", b"Max Forwards:"), 400, False),
    ("NUL in headers", VALID.replace(b"Bob", b"B\x00b"), 400, False),
    ("invalid UTF-8", VALID.replace(b"Bob", b"B\xff\xfeb"), 400, False),
    ("unterminated quote", VALID.replace(b'"Alice \\"A\\""', b'"Alice'), 400, False),
    ("unbalanced angle", VALID.replace(b"To: Bob <sip:bob@example.com>", b"To: Bob <sip:bob@example.com"), 400, False),
    ("bad IPv6", VALID.replace(b"192.0.2.1:5060", b"[2001:db8::zz]:5060"), 400, False),
    ("port zero", VALID.replace(b"192.0.2.1:5060", b"192.0.2.1:0"), 400, False),
    ("port too big", VALID.replace(b"192.0.2.1:5060", b"192.0.2.1:65536"), 400, False),
    ("port letters", VALID.replace(b"192.0.2.1:5060", b"192.0.2.1:http"), 400, False),
    ("no branch", VALID.replace(b";branch=z9hG4bK776asdhds", b""), 400, True),
    ("Content-Length too big", VALID.replace(b"Content-Length: 4", b"Content-Length: 40"), 400, True),
    ("Content-Length negative", VALID.replace(b"Content-Length: 4", b"Content-Length: -4"), 400, True),
    ("Content-Length junk", VALID.replace(b"Content-Length: 4", b"Content-Length: four"), 400, True),
    ("tel Request-URI", VALID.replace(b"INVITE sip:bob@example.com", b"INVITE tel:+1555"), 416, True),
    ("garbage Request-URI", VALID.replace(b"INVITE sip:bob@example.com", b"INVITE sip:@@@"), 400, True),
    ("bad method token", VALID.replace(b"INVITE sip:", b"INV{TE sip:", 1), 400, True),
    ("bad Max-Forwards", VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"), 400, True),
    ("continuation first", b"INVITE sip:a@b SIP/2.0\r\n folded\r\n\r\n", 400, False),
    ("bad Via protocol", VALID.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/3.0/UDP"), 400, False),
    ("Via without host", VALID.replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060", b"Via: SIP/2.0/UDP"), 400, False),
    ("bad status", b"SIP/2.0 2x0 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", 400, False),
    ("response without Via", b"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", 400, False),
    ("response status 099", b"SIP/2.0 099 Odd\r\n\r\n", 400, False),
    # 416 is for the Request-URI (RFC 3261 §21.4.12); a bad From is a 400.
    ("From URI scheme", VALID.replace(b"<sip:alice@example.com>", b"<mailto:alice@example.com>"), 400, False),
    ("escaped junk in user", VALID.replace(b"sip:bob@example.com SIP", b"sip:b%zzob@example.com SIP"), 400, True),
    ("param without name", VALID.replace(b";tag=1928301774", b";=1928301774"), 400, False),
    ("empty param", VALID.replace(b";tag=1928301774", b";;tag=1928301774"), 400, False),
]


@pytest.mark.parametrize("name,data,status,addressable", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_corpus_raises_typed_error(name: str, data: bytes, status: int, addressable: bool) -> None:
    """DESIGN.md "Bad input": one typed error with the status to answer, and a reply when addressable."""
    with pytest.raises(SipParseError) as error:
        parse_message(data)
    assert error.value.status == status, error.value.reason
    assert error.value.reason
    assert (error.value.request is not None) == addressable
    if addressable:
        reply = make_response(error.value.request, status)  # type: ignore[arg-type]
        assert isinstance(parse_message(reply.to_bytes()), Response)


# --- properties -----------------------------------------------------------------

tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=12)
hosts = st.one_of(
    st.from_regex(r"\A[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: str(a)),
)
ports = st.one_of(st.none(), st.integers(1, 65535))
users = st.from_regex(r"\A[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}\Z")
display_names = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    from telebridge.sip.uri import NameAddr, Params, SipUri, Via

    method = draw(st.sampled_from(["INVITE", "OPTIONS", "REGISTER", "BYE", "INFO", draw(tokens).upper()]))
    target = SipUri(host=draw(hosts), user=draw(st.one_of(st.none(), users)), port=draw(ports))
    vias = [
        Via(draw(st.sampled_from(["UDP", "TCP", "TLS", "WS", "WSS"])), draw(hosts), draw(ports),
            Params((("branch", "z9hG4bK" + draw(tokens)),)))
        for _ in range(draw(st.integers(1, 3)))
    ]
    headers = Headers()
    compact = draw(st.booleans())
    for via in vias:
        headers.add("v" if compact else "Via", str(via))
    sender = NameAddr(SipUri(host=draw(hosts), user=draw(users)), draw(display_names), Params((("tag", draw(tokens)),)))
    headers.add("f" if compact else "From", str(sender))
    headers.add("t" if compact else "To", str(NameAddr(target)))
    headers.add("i" if compact else "Call-ID", draw(tokens) + "@" + draw(hosts))
    headers.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    body = draw(st.binary(max_size=64))
    return Request(headers=headers, body=body, method=method, uri=str(target))


@given(requests())
@settings(max_examples=300, deadline=None)
def test_generated_requests_round_trip(request: Request) -> None:
    """parse(serialise(m)) is m, and serialising again gives the same bytes."""
    wire = request.to_bytes()
    parsed = parse_message(wire)
    assert isinstance(parsed, Request)
    assert (parsed.method, parsed.uri, parsed.body) == (request.method, request.uri, request.body)
    assert [h for h in parsed.headers if h[0] != "Content-Length"] == list(request.headers)
    assert [str(v) for v in parsed.vias] == [str(v) for v in request.vias]
    assert parsed.from_ == request.from_
    assert parsed.to_bytes() == wire


@given(st.binary(max_size=2000))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_parse_or_raise_the_typed_error(data: bytes) -> None:
    """The fuzz invariant (h11): any bytes parse or raise SipParseError, nothing else."""
    try:
        parse_message(data)
    except SipParseError:
        pass


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_messages_parse_or_raise_the_typed_error(data: st.DataObject) -> None:
    """Bit flips, cuts and insertions of a valid message never escape the parser."""
    wire = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            wire[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del wire[pos : pos + data.draw(st.integers(1, 10))]
        else:
            wire[pos:pos] = data.draw(st.binary(min_size=1, max_size=10))
        if not wire:
            break
    for stream in (False, True):
        try:
            parse_message(bytes(wire), stream=stream)
        except SipParseError:
            pass


@given(st.lists(st.integers(1, 50), max_size=20))
@settings(max_examples=200, deadline=None)
def test_stream_framer_gives_the_same_messages_however_split(cuts: list[int]) -> None:
    """RFC 3261 §18.3: framing by Content-Length is independent of read sizes."""
    stream = VALID + b"\r\n\r\n" + VALID + VALID
    framer = StreamFramer()
    items = []
    pos = 0
    for cut in cuts:
        items += framer.feed(stream[pos : pos + cut])
        pos += cut
    items += framer.feed(stream[pos:])
    assert [type(i) for i in items] == [Request, KeepAlive, Request, Request]
    assert all(i.body == b"v=0\n" for i in items if isinstance(i, Request))


@given(st.binary(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_stream_framer_on_garbage_returns_items_or_raises_the_typed_error(data: bytes) -> None:
    """Fed whole or byte by byte, garbage never raises anything but SipParseError."""
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        framer = StreamFramer(max_size=1024)
        try:
            for chunk in chunks:
                framer.feed(chunk)
        except SipParseError:
            pass


def test_stream_framer_caps_message_size_with_513() -> None:
    """Bounded buffers: a message past the cap raises 513."""
    framer = StreamFramer(max_size=100)
    with pytest.raises(SipParseError) as error:
        framer.feed(VALID)
    assert error.value.status == 513
