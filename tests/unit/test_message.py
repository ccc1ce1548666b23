"""SIP messages: parsing, headers, responses, RFC 4475 vectors, malformed corpus, properties.

RFC 3261 §7 (message format), §8.2.6 (responses), §20 (header fields) and
RFC 4475 (torture tests, kept as files under ``tests/vectors/sip``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.sip.errors import SipParseError
from telebridge.sip.message import (
    Headers,
    Message,
    Request,
    Response,
    canonical_name,
    make_response,
    parse_cseq,
    parse_message,
    reason_phrase,
)
from telebridge.sip.uri import NameAddr, parse_name_addr, parse_uri
from tests.unit.test_uri import name_addrs, sip_uris, tokens, vias

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sip"
INDEX: list[dict[str, Any]] = tomllib.loads((VECTORS / "index.toml").read_text(encoding="utf-8"))["vector"]

VIA = b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
FROM = b'From: "Alice \\"A\\"" <sip:alice@example.com>;tag=1928301774\r\n'
TO = b"To: Bob <sip:bob@example.com>\r\n"
CALL_ID = b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
CSEQ = b"CSeq: 314159 INVITE\r\n"
VALID = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    + VIA
    + b"Max-Forwards: 70\r\n"
    + TO
    + FROM
    + CALL_ID
    + CSEQ
    + b"Contact: <sip:alice@pc33.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\n"
    b"v=0\n"
)
OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    + VIA
    + b"To: Bob <sip:bob@example.com>;tag=a6c85cf\r\n"
    + FROM
    + CALL_ID
    + CSEQ
    + b"Content-Length: 0\r\n\r\n"
)


def request(data: bytes = VALID) -> Request:
    """Parse ``data`` and insist it is a request."""
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


# --- parsing: RFC 3261 §7 -----------------------------------------------------------------


def test_parses_a_plain_invite() -> None:
    """RFC 3261 §7: start line, headers, body framed by Content-Length."""
    message = request()
    assert (message.method, message.uri, message.body) == ("INVITE", "sip:bob@example.com", b"v=0\n")
    assert message.cseq == (314159, "INVITE")
    assert message.call_id == "a84b4c76e66710@pc33.example.com"
    assert message.from_.display == 'Alice "A"'
    assert message.from_tag == "1928301774" and message.to_tag is None
    assert message.branch == "z9hG4bK776asdhds"
    assert message.top_via.sent_by == ("192.0.2.1", 5060)


def test_parses_a_response() -> None:
    """RFC 3261 §7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase."""
    message = parse_message(OK_200)
    assert isinstance(message, Response)
    assert (message.status, message.reason, message.to_tag) == (200, "OK", "a6c85cf")


def test_reason_phrase_may_be_empty_or_hold_spaces_and_utf8() -> None:
    """RFC 3261 §25.1 Reason-Phrase: any text incl. SP and UTF-8 (RFC 4475 §3.1.1.12/13)."""
    for reason in ["", "Call Is Being Forwarded", "= 2**3 * 5**2 но сто"]:
        message = parse_message(OK_200.replace(b" OK\r\n", b" " + reason.encode() + b"\r\n", 1))
        assert isinstance(message, Response) and message.reason == reason


def test_bare_lf_line_ends_are_tolerated() -> None:
    """RFC 3261 §7 wants CRLF; a bare LF is accepted (robustness, as most stacks do)."""
    message = request(VALID.replace(b"\r\n", b"\n"))
    assert message.body == b"v=0\n" and message.call_id == "a84b4c76e66710@pc33.example.com"


def test_leading_crlfs_before_the_start_line_are_ignored() -> None:
    """RFC 3261 §7.5: empty lines before the start line are ignored."""
    assert request(b"\r\n\r\n" + VALID).method == "INVITE"


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    """RFC 3261 §18.3: over UDP a missing Content-Length means the body runs to the end."""
    assert request(VALID.replace(b"Content-Length: 4\r\n", b"") + b"more").body == b"v=0\nmore"


def test_stream_message_without_content_length_is_rejected() -> None:
    """RFC 3261 §18.3: on a stream transport Content-Length is mandatory."""
    with pytest.raises(SipParseError) as error:
        parse_message(VALID.replace(b"Content-Length: 4\r\n", b""), stream=True)
    assert error.value.status == 400 and error.value.request is not None


def test_octets_after_the_body_in_a_datagram_are_ignored() -> None:
    """RFC 3261 §18.3 / RFC 4475 §3.1.1.8: extra octets past Content-Length are dropped."""
    assert request(VALID + b"INVITE sip:x@y SIP/2.0\r\n\r\n").body == b"v=0\n"


def test_integer_fields_may_have_leading_zeros() -> None:
    """RFC 4475 §3.1.1.1: Max-Forwards 0068 and CSeq 0009 are 68 and 9."""
    message = request(VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: 0068").replace(b"CSeq: 314159", b"CSeq: 0009"))
    assert message.cseq == (9, "INVITE") and message.headers.get("Max-Forwards") == "0068"


def test_cseq_numbers_up_to_32_bits_are_accepted() -> None:
    """RFC 3261 §20.16: the number is a 32-bit unsigned integer (a UAC starts below 2**31, §8.1.1.5)."""
    assert parse_cseq(f"{2**32 - 1} INVITE") == (2**32 - 1, "INVITE")
    assert parse_cseq("0 ACK") == (0, "ACK")
    for value in [f"{2**32} INVITE", "9" * 5000 + " INVITE", "1 INVITE x", "INVITE", "1", "-1 INVITE", "1 INV{TE"]:
        with pytest.raises(SipParseError):
            parse_cseq(value)


def test_max_forwards_boundaries() -> None:
    """RFC 3261 §20.22: Max-Forwards is 0 to 255 (RFC 4475 §3.3.11: zero is well formed)."""
    assert request(VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: 0")).headers.get("Max-Forwards") == "0"
    assert request(VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: 255")).headers.get("Max-Forwards") == "255"
    assert request(VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: " + b"0" * 5000 + b"7")).method == "INVITE"


def test_unknown_methods_are_parsed() -> None:
    """RFC 3261 §8.2.1: unknown methods parse; answering 501/405 is the UA's business."""
    raw = VALID.replace(b"INVITE sip:", b"PUBLISH sip:").replace(b"314159 INVITE", b"314159 PUBLISH")
    assert request(raw).method == "PUBLISH"


def test_serialising_sets_content_length_from_the_body() -> None:
    """RFC 3261 §20.14: Content-Length is always right on the wire."""
    message = request()
    message.body = b"longer body"
    assert b"\r\nContent-Length: 11\r\n\r\nlonger body" in message.to_bytes()
    assert request(message.to_bytes()).body == b"longer body"


def test_serialising_keeps_header_spelling_and_order() -> None:
    """RFC 3261 §7.3.1: header order (Via above all) and names are preserved; folds are unfolded."""
    raw = VALID.replace(b"Max-Forwards: 70\r\n", b"MAX-forwards: 70\r\nSubject: I know\r\n  you're there\r\n")
    wire = request(raw).to_bytes()
    assert wire.startswith(b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP")
    assert b"\r\nMAX-forwards: 70\r\nSubject: I know you're there\r\n" in wire


def test_copy_is_independent() -> None:
    """Copies can be changed (e.g. a proxy's Via) without touching the original."""
    original = request()
    twin = original.copy()
    twin.headers.prepend("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp")
    assert len(original.vias) == 1 and len(twin.vias) == 2
    response = make_response(original, 200, to_tag="t")
    assert response.copy().headers == response.headers


# --- Headers: RFC 3261 §7.3 ------------------------------------------------------------------


def test_header_lookups_are_case_insensitive_and_know_compact_forms() -> None:
    """RFC 3261 §7.3.3 compact forms and §7.3.1 case-insensitive names."""
    headers = Headers([("v", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("i", "abc"), ("f", "<sip:a@b>"), ("t", "<sip:c@d>"),
                       ("m", "<sip:e@f>"), ("l", "0"), ("c", "text/plain"), ("k", "timer"), ("s", "hi"), ("e", "gzip"),
                       ("o", "dialog"), ("r", "<sip:g@h>"), ("b", "<sip:i@j>"), ("u", "presence"), ("x", "1800")])
    for name, value in [("VIA", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("call-id", "abc"), ("From", "<sip:a@b>"), ("TO", "<sip:c@d>"),
                        ("Contact", "<sip:e@f>"), ("Content-Length", "0"), ("Content-Type", "text/plain"),
                        ("Supported", "timer"), ("Subject", "hi"), ("Content-Encoding", "gzip"), ("Event", "dialog"),
                        ("Refer-To", "<sip:g@h>"), ("Referred-By", "<sip:i@j>"), ("Allow-Events", "presence"),
                        ("Session-Expires", "1800")]:
        assert headers.get(name) == value, name
        assert name in headers
    assert canonical_name("V") == "via" and canonical_name("X-Custom") == "x-custom"
    assert headers.get("Missing") is None and headers.get("Missing", "d") == "d" and "Missing" not in headers
    assert [name for name, _ in headers][:3] == ["v", "i", "f"]


def test_get_all_splits_list_headers_but_not_inside_quotes_or_brackets() -> None:
    """RFC 3261 §7.3.1: list values may share a line; commas in quotes/<> do not separate."""
    headers = Headers([
        ("Contact", '"Doe, John" <sip:j@a;x=1,2>;q=0.5, <sip:k@b>'),
        ("m", "<sip:l@c>"),
        ("Route", "<sip:p1;lr>,<sip:p2;lr>"),
        ("Subject", "Lunch, dinner"),
        ("Date", "Sat, 15 Oct 2005 04:44:56 GMT"),
    ])
    assert headers.get_all("CONTACT") == ['"Doe, John" <sip:j@a;x=1,2>;q=0.5', "<sip:k@b>", "<sip:l@c>"]
    assert headers.get_all("route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert headers.get_all("Subject") == ["Lunch, dinner"]
    assert headers.get_all("Date") == ["Sat, 15 Oct 2005 04:44:56 GMT"]
    assert headers.get_all("Record-Route") == []


def test_get_all_skips_empty_list_elements() -> None:
    """RFC 3261 §7.3.1 / RFC 7230 §7 style: empty list elements carry nothing."""
    assert Headers([("Supported", "timer, , 100rel,")]).get_all("k") == ["timer", "100rel"]


def test_folded_lines_are_unfolded() -> None:
    """RFC 3261 §7.3.1: a line starting with SP or HTAB continues the previous one."""
    raw = VALID.replace(b"Max-Forwards: 70\r\n", b"Subject: I know\r\n  you're there,\r\n\tpick up!\r\nMax-Forwards: 70\r\n")
    assert request(raw).headers.get("Subject") == "I know you're there, pick up!"
    raw = VALID.replace(b"To: Bob <sip:bob@example.com>", b"To:\r\n Bob\r\n <sip:bob@example.com>")
    assert request(raw).to.uri.user == "bob"


def test_header_set_replaces_every_line_in_place() -> None:
    """set(): one line, where the first one was, keeping its spelling."""
    headers = Headers([("Via", "a"), ("max-forwards", "70"), ("To", "x"), ("Max-Forwards", "69")])
    headers.set("Max-Forwards", "10")
    assert list(headers) == [("Via", "a"), ("max-forwards", "10"), ("To", "x")]
    headers.set("Expires", "60")
    assert list(headers)[-1] == ("Expires", "60")


def test_header_prepend_goes_above_the_first_of_its_kind() -> None:
    """RFC 3261 §16.6 step 8: a proxy's Via goes on top of the existing ones."""
    headers = Headers([("Max-Forwards", "70"), ("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("To", "x")])
    headers.prepend("Via", "SIP/2.0/TCP b;branch=z9hG4bK2")
    assert [name for name, _ in headers] == ["Max-Forwards", "Via", "v", "To"]
    headers.prepend("Record-Route", "<sip:p;lr>")
    assert list(headers)[0] == ("Record-Route", "<sip:p;lr>")


def test_header_remove_drops_every_spelling() -> None:
    """remove(): long and compact forms alike."""
    headers = Headers([("Contact", "<sip:a@b>"), ("To", "x"), ("m", "<sip:c@d>"), ("CONTACT", "*")])
    headers.remove("contact")
    assert list(headers) == [("To", "x")] and len(headers) == 1


def test_header_remove_first_value_of_a_list() -> None:
    """RFC 3261 §18.1.2: a client strips the top Via, which may share a line with others."""
    headers = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"), ("v", "SIP/2.0/UDP c;branch=z9hG4bK3")])
    headers.remove_first_value("Via")
    assert headers.get_all("Via") == ["SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP c;branch=z9hG4bK3"]
    headers.remove_first_value("Via")
    assert list(headers) == [("v", "SIP/2.0/UDP c;branch=z9hG4bK3")]
    headers.remove_first_value("Via")
    headers.remove_first_value("Via")
    assert list(headers) == []


def test_headers_copy_and_equality() -> None:
    """Headers compare by their lines; copy() is independent."""
    headers = Headers([("To", "x")])
    twin = headers.copy()
    assert twin == headers and twin is not headers
    twin.add("From", "y")
    assert twin != headers and len(headers) == 1
    assert headers != [("To", "x")]


# --- make_response: RFC 3261 §8.2.6 ----------------------------------------------------------


def test_make_response_copies_via_from_to_call_id_and_cseq() -> None:
    """RFC 3261 §8.2.6.2: those five are copied (every Via, in order); nothing else is."""
    raw = VALID.replace(VIA, VIA + b"v: SIP/2.0/TCP p1.example.com;branch=z9hG4bKp1, SIP/2.0/TCP p2.example.com;branch=z9hG4bKp2\r\n")
    req = request(raw)
    response = make_response(req, 486)
    assert [name for name, _ in response.headers] == ["Via", "v", "To", "From", "Call-ID", "CSeq"]
    assert response.headers.get_all("Via") == req.headers.get_all("Via")
    assert (response.status, response.reason, response.body) == (486, "Busy Here", b"")
    assert response.to_tag is None
    assert isinstance(parse_message(response.to_bytes()), Response)


def test_make_response_adds_the_to_tag() -> None:
    """RFC 3261 §8.2.6.2: the UAS adds a To tag to its responses (a compact 't' too)."""
    ringing = make_response(request(), 180, to_tag="xyz")
    assert ringing.to_tag == "xyz" and ringing.to.uri.user == "bob"
    compact = make_response(request(VALID.replace(b"To: ", b"t: ")), 200, to_tag="xyz")
    assert compact.headers.get("t") == "Bob <sip:bob@example.com>;tag=xyz"


def test_make_response_keeps_an_existing_to_tag() -> None:
    """RFC 3261 §12.2.2: in-dialog requests already carry the tag; it must not change."""
    req = request(VALID.replace(b"To: Bob <sip:bob@example.com>", b"To: Bob <sip:bob@example.com>;tag=old"))
    assert make_response(req, 200, to_tag="new").to_tag == "old"


def test_make_response_puts_no_tag_on_100() -> None:
    """RFC 3261 §8.2.6.1: a 100 Trying carries no To tag."""
    assert make_response(request(), 100, to_tag="xyz").to_tag is None


def test_make_response_copies_record_route_on_dialog_forming_responses() -> None:
    """RFC 3261 §12.1.1: Record-Route is copied into 1xx (not 100) and 2xx responses."""
    req = request(VALID.replace(VIA, VIA + b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"))
    for status, copied in [(100, False), (180, True), (200, True), (404, False)]:
        response = make_response(req, status, to_tag="t")
        assert (response.headers.get("Record-Route") is not None) == copied, status


def test_make_response_reason_phrases() -> None:
    """RFC 3261 §21: the usual phrase unless one is given."""
    assert make_response(request(), 404).reason == "Not Found"
    assert make_response(request(), 499).reason == "Unknown" == reason_phrase(499)
    assert make_response(request(), 603, "Nope").reason == "Nope"


# --- RFC 4475 torture vectors -------------------------------------------------------------------


def _vector(name: str) -> bytes:
    return (VECTORS / f"{name}.dat").read_bytes()


def test_vector_index_and_files_match() -> None:
    """Vectors as files: every .dat is in index.toml with an expectation, and the reverse."""
    names = [v["name"] for v in INDEX]
    assert len(names) == len(set(names)) == 49
    assert sorted(names) == sorted(p.stem for p in VECTORS.glob("*.dat"))
    for vector in INDEX:
        assert vector["expect"] in ("parse", "reject") and vector["section"].startswith("3.")
        if vector["expect"] == "reject":
            assert vector["status"] in (400, 416, 505) and isinstance(vector["addressable"], bool)
        else:
            assert vector["kind"] in ("request", "response")


# Messages whose Content-Length is wrong on purpose (or absent, or followed by noise).
_CL_ON_PURPOSE = {"clerr", "ncl", "mcl01", "dblreq", "inv2543"}


@pytest.mark.parametrize("name", sorted(v["name"] for v in INDEX if v["name"] not in _CL_ON_PURPOSE))
def test_vector_files_are_faithful_content_length_matches_body(name: str) -> None:
    """RFC 4475 §2: CRLF line ends and <hex> expanded, so each stated Content-Length is the body length."""
    head, _, body = _vector(name).partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if line.split(b":")[0].strip().lower() in (b"content-length", b"l")]
    assert len(lines) == 1 and int(lines[0].split(b":")[1]) == len(body)
    assert b"\n" not in head.replace(b"\r\n", b"")


@pytest.mark.parametrize("vector", INDEX, ids=[v["name"] for v in INDEX])
def test_rfc4475_vector_outcome(vector: dict[str, Any]) -> None:
    """RFC 4475 §3: each torture message parses, or raises SipParseError with the status in index.toml."""
    data = _vector(vector["name"])
    if vector["expect"] == "parse":
        message = parse_message(data)
        assert isinstance(message, Request if vector["kind"] == "request" else Response)
        if "contact_status" in vector:
            with pytest.raises(SipParseError) as error:
                parse_name_addr(message.headers.get("Contact") or "")
            assert error.value.status == vector["contact_status"]
        wire = message.to_bytes()
        assert parse_message(wire).to_bytes() == wire
        return
    with pytest.raises(SipParseError) as error:
        parse_message(data)
    assert error.value.status == vector["status"], error.value.reason
    assert (error.value.request is not None) == vector["addressable"], error.value.reason
    if error.value.request is not None:
        reply = make_response(error.value.request, error.value.status, to_tag="x")
        assert isinstance(parse_message(reply.to_bytes()), Response)


def _wsinv(m: Message) -> None:
    assert isinstance(m, Request) and m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.to.tag == "1918181833n" and m.to.uri.user == "vivekg"
    assert m.from_.display == 'J Rosenberg \\"' and m.from_tag == "98asjd8"
    assert m.cseq == (9, "INVITE") and m.headers.get("Max-Forwards") == "0068"
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == "" and m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    contact = parse_name_addr(m.headers.get_all("Contact")[0])
    assert contact.display == 'Quoted string ""' and contact.params.get("newparam") == "newvalue"
    assert "secondparam" in contact.params and contact.params.get("q") == "0.33"
    assert len(m.body) == 150


def _intmeth(m: Message) -> None:
    assert isinstance(m, Request) and m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-" and m.from_tag == "_token~1'+`*%!-."
    assert m.from_.params.get("fromParam''~+*_!.-%") == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def _esc01(m: Message) -> None:
    assert isinstance(m, Request) and parse_uri(m.uri).user == "sips%3Auser%40example.com"
    assert m.to.uri.user == "%75se%72" and m.from_.uri.user == "I%20have%20spaces"
    contact = parse_name_addr(m.headers.get("Contact") or "")
    assert contact.uri.params.items == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))


def _escnull(m: Message) -> None:
    assert [parse_name_addr(c).uri.user for c in m.headers.get_all("Contact")] == ["%00", "%00%00"]
    assert m.to.uri.user == "null-%00-null"


def _esc02(m: Message) -> None:
    assert isinstance(m, Request) and m.method == "RE%47IST%45R" and m.to.display == "%Z%45"
    assert len(m.headers.get_all("Contact")) == 2 and m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.branch == "z9hG4bK209%fzsnel234"


def _dblreq(m: Message) -> None:
    assert isinstance(m, Request) and m.method == "REGISTER" and m.body == b""


def _semiuri(m: Message) -> None:
    assert isinstance(m, Request) and parse_uri(m.uri).user == "user;par=u%40example.net"
    assert len(m.headers.get_all("Accept")) == 6


def _transports(m: Message) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def _mpart01(m: Message) -> None:
    assert len(m.body) == 553 and b"\x00" in m.body and m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert m.top_via.port == 5070 and "rport" in m.top_via.params


def _unreason(m: Message) -> None:
    assert isinstance(m, Response) and m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def _noreason(m: Message) -> None:
    assert isinstance(m, Response) and (m.status, m.reason) == (100, "")


def _badaspec(m: Message) -> None:
    assert m.to.display == "Watson, Thomas" and m.to.uri.host == "example.org"


def _cparam01(m: Message) -> None:
    contact = parse_name_addr(m.headers.get("Contact") or "")
    assert contact.uri.params.items == () and "unknownparam" in contact.params


def _cparam02(m: Message) -> None:
    contact = parse_name_addr(m.headers.get("Contact") or "")
    assert "unknownparam" in contact.uri.params and contact.params.items == ()


def _regescrt(m: Message) -> None:
    assert parse_name_addr(m.headers.get("m") or "").uri.headers == "Route=%3Csip:sip.example.com%3E"


def _bcast(m: Message) -> None:
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


DETAILS: dict[str, Callable[[Message], None]] = {
    "wsinv": _wsinv, "intmeth": _intmeth, "esc01": _esc01, "escnull": _escnull, "esc02": _esc02,
    "dblreq": _dblreq, "semiuri": _semiuri, "transports": _transports, "mpart01": _mpart01,
    "unreason": _unreason, "noreason": _noreason, "badaspec": _badaspec, "cparam01": _cparam01,
    "cparam02": _cparam02, "regescrt": _regescrt, "bcast": _bcast,
}


@pytest.mark.parametrize("name", sorted(DETAILS))
def test_rfc4475_vector_details(name: str) -> None:
    """RFC 4475 §3.1.1 and §3.3: what the RFC says each valid message means, field by field."""
    DETAILS[name](parse_message(_vector(name)))


def test_longreq_parses_once_its_top_via_has_a_branch() -> None:
    """RFC 4475 §3.1.1.7: long values, 34 Vias mixing every spelling; only the missing branch is refused."""
    data = _vector("longreq").replace(b"sip33.example.com\r\n", b"sip33.example.com;branch=z9hG4bKlong\r\n", 1)
    m = request(data)
    assert len(m.vias) == 34 and m.vias[-1].params.get("received") == "192.0.2.5"
    assert m.to.display.startswith("I have a user name of extreme") and m.to.uri.port == 6000
    assert m.from_tag is not None and m.from_tag.endswith("982424") and m.call_id.endswith("reallylongcallid") and len(m.body) == 150


# --- malformed corpus ------------------------------------------------------------------------------


def _without(line: bytes) -> bytes:
    assert line in VALID
    return VALID.replace(line, b"")


MALFORMED: list[tuple[str, bytes, int, bool]] = [
    # name, bytes, status, error.request set: the header block is text (UTF-8,
    # no stray control characters, well-formed lines) and Via/From/To/Call-ID/
    # CSeq parse, so a response can be addressed. Responses are never answered.
    ("empty", b"", 400, False),
    ("only blank lines", b"\r\n\r\n", 400, False),
    ("no blank line after headers", VALID.split(b"\r\n\r\n")[0], 400, False),
    ("cut inside the start line", VALID[:12], 400, False),
    ("start line is one word", b"HELLO\r\n\r\n", 400, False),
    ("start line without version", VALID.replace(b" SIP/2.0\r\n", b"\r\n", 1), 400, True),
    ("start line without URI", VALID.replace(b"INVITE sip:bob@example.com SIP/2.0", b"INVITE"), 400, True),
    ("version 7.0", VALID.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), 505, True),
    ("version 7.0 in Via too", VALID.replace(b"SIP/2.0", b"SIP/7.0"), 505, False),
    ("version with trailing junk", VALID.replace(b"SIP/2.0\r\n", b"SIP/2.0x\r\n", 1), 400, True),
    ("version with stray CR", VALID.replace(b"SIP/2.0\r\n", b"SIP/2.0\r\r\n", 1), 400, False),
    ("HTTP request line", VALID.replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1), 400, True),
    ("plain HTTP request", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, False),
    ("bad method token", VALID.replace(b"INVITE sip:", b"INV{TE sip:", 1), 400, True),
    ("two spaces in start line", VALID.replace(b"INVITE sip:", b"INVITE  sip:", 1), 400, True),
    ("missing Via", _without(VIA), 400, False),
    ("missing From", _without(FROM), 400, False),
    ("missing To", _without(TO), 400, False),
    ("missing Call-ID", _without(CALL_ID), 400, False),
    ("missing CSeq", _without(CSEQ), 400, False),
    ("CSeq method mismatch", VALID.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400, True),
    ("CSeq not a number", VALID.replace(b"CSeq: 314159", b"CSeq: 31x4159"), 400, False),
    ("CSeq past 32 bits", VALID.replace(b"CSeq: 314159", b"CSeq: 4294967296"), 400, False),
    ("CSeq of 5000 digits", VALID.replace(b"CSeq: 314159", b"CSeq: " + b"9" * 5000), 400, False),
    ("CSeq negative", VALID.replace(b"CSeq: 314159", b"CSeq: -1"), 400, False),
    ("CSeq without method", VALID.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159"), 400, False),
    ("two CSeq", VALID.replace(CSEQ, CSEQ + b"CSeq: 314160 INVITE\r\n"), 400, True),
    ("two Call-ID", VALID.replace(CALL_ID, CALL_ID + b"i: other@example.com\r\n"), 400, True),
    ("two From", VALID.replace(FROM, FROM + b"f: <sip:eve@example.com>;tag=9\r\n"), 400, True),
    ("two Max-Forwards", VALID.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nMax-Forwards: 69\r\n"), 400, True),
    ("header without colon", VALID.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), 400, False),
    ("header name with space", VALID.replace(b"Max-Forwards:", b"Max Forwards:"), 400, False),
    ("header name empty", VALID.replace(b"Max-Forwards: 70", b": 70"), 400, False),
    ("header name not ASCII", VALID.replace(b"Max-Forwards:", "Max-Förwards:".encode()), 400, False),
    ("continuation before any header", b"INVITE sip:a@b SIP/2.0\r\n folded\r\n\r\n", 400, False),
    ("NUL in a header value", VALID.replace(b"Bob", b"B\x00b"), 400, False),
    ("NUL in the start line", VALID.replace(b"sip:bob@example.com SIP", b"sip:bob@exa\x00mple.com SIP"), 400, False),
    ("NUL escaped outside quotes", VALID.replace(b"Bob <", b"B\\\x00b <"), 400, False),
    ("BEL in a header value", VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\x070"), 400, False),
    ("DEL in a header value", VALID.replace(b"Bob", b"B\x7fb"), 400, False),
    ("invalid UTF-8", VALID.replace(b"Bob", b"B\xff\xfeb"), 400, False),
    ("overlong UTF-8", VALID.replace(b"Bob", b"B\xc0\xafb"), 400, False),
    ("UTF-8 surrogate", VALID.replace(b"Bob", b"B\xed\xa0\x80b"), 400, False),
    ("UTF-8 cut in the middle", VALID.replace(b"Bob <", b"B\xd0 <"), 400, False),
    ("unterminated quote in From", VALID.replace(b'"Alice \\"A\\""', b'"Alice'), 400, False),
    ("quote ends in an escape", VALID.replace(b'"Alice \\"A\\""', b'"Alice\\"'), 400, False),
    ("unquoted display with comma", VALID.replace(b"To: Bob", b"To: Watson, Thomas"), 400, False),
    ("unbalanced '<' in To", VALID.replace(b"To: Bob <sip:bob@example.com>", b"To: Bob <sip:bob@example.com"), 400, False),
    ("unbalanced '>' in To", VALID.replace(b"To: Bob <sip:bob@example.com>", b"To: sip:bob@example.com>"), 400, False),
    ("junk after '>'", VALID.replace(b"To: Bob <sip:bob@example.com>", b"To: Bob <sip:bob@example.com> x"), 400, False),
    ("bad IPv6 in Via", VALID.replace(b"192.0.2.1:5060", b"[2001:db8::zz]:5060"), 400, False),
    ("IPv6 without ']' in Via", VALID.replace(b"192.0.2.1:5060", b"[2001:db8::1:5060"), 400, False),
    ("IPv6 with zone in Via", VALID.replace(b"192.0.2.1:5060", b"[fe80::1%eth0]:5060"), 400, False),
    ("bad IPv6 in Request-URI", VALID.replace(b"sip:bob@example.com SIP", b"sip:bob@[::g] SIP"), 400, True),
    ("port zero", VALID.replace(b"192.0.2.1:5060", b"192.0.2.1:0"), 400, False),
    ("port 65536", VALID.replace(b"192.0.2.1:5060", b"192.0.2.1:65536"), 400, False),
    ("port letters", VALID.replace(b"192.0.2.1:5060", b"192.0.2.1:abc"), 400, False),
    ("port of 5000 digits", VALID.replace(b"192.0.2.1:5060", b"192.0.2.1:" + b"5" * 5000), 400, False),
    ("port in Arabic digits", VALID.replace(b"192.0.2.1:5060", "192.0.2.1:٥٠٦٠".encode()), 400, False),
    ("port zero in Request-URI", VALID.replace(b"sip:bob@example.com SIP", b"sip:bob@example.com:0 SIP"), 400, True),
    ("tel Request-URI", VALID.replace(b"INVITE sip:bob@example.com", b"INVITE tel:+15551234"), 416, True),
    ("http Request-URI", VALID.replace(b"INVITE sip:bob@example.com", b"INVITE http://example.com/"), 416, True),
    ("bracketed Request-URI", VALID.replace(b"INVITE sip:bob@example.com", b"INVITE <sip:bob@example.com>"), 400, True),
    ("headers in Request-URI", VALID.replace(b"sip:bob@example.com SIP", b"sip:bob@example.com?Subject=x SIP"), 400, True),
    ("garbage Request-URI", VALID.replace(b"INVITE sip:bob@example.com", b"INVITE sip:@@@"), 400, True),
    ("escaped junk in user", VALID.replace(b"sip:bob@example.com SIP", b"sip:b%zzob@example.com SIP"), 400, True),
    ("mailto From", VALID.replace(b"<sip:alice@example.com>", b"<mailto:alice@example.com>"), 400, False),
    ("tel To", VALID.replace(b"To: Bob <sip:bob@example.com>", b"To: <tel:+15551234>"), 400, False),
    ("Via protocol 3.0", VALID.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/3.0/UDP"), 400, False),
    ("Via without sent-by", VALID.replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060", b"Via: SIP/2.0/UDP"), 400, False),
    ("Via with empty list element params", VALID.replace(b";branch=z9hG4bK776asdhds", b";;branch=z9hG4bK776asdhds"), 400, False),
    ("Via without branch", VALID.replace(b";branch=z9hG4bK776asdhds", b""), 400, True),
    ("second Via broken", VALID.replace(VIA, VIA + b"Via: SIP/2.0/UDP [::1\r\n"), 400, True),
    ("Max-Forwards not a number", VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"), 400, True),
    ("Max-Forwards 256", VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400, True),
    ("Max-Forwards negative", VALID.replace(b"Max-Forwards: 70", b"Max-Forwards: -1"), 400, True),
    ("Content-Length past the body", VALID.replace(b"Content-Length: 4", b"Content-Length: 40"), 400, True),
    ("Content-Length negative", VALID.replace(b"Content-Length: 4", b"Content-Length: -4"), 400, True),
    ("Content-Length not a number", VALID.replace(b"Content-Length: 4", b"Content-Length: four"), 400, True),
    ("Content-Length empty", VALID.replace(b"Content-Length: 4", b"Content-Length:"), 400, True),
    ("Content-Length of ten digits", VALID.replace(b"Content-Length: 4", b"Content-Length: 1234567890"), 400, True),
    ("Content-Length twice", VALID.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 4"), 400, True),
    ("Content-Length with two numbers", VALID.replace(b"Content-Length: 4", b"Content-Length: 4 4"), 400, True),
    ("param without name", VALID.replace(b";tag=1928301774", b";=1928301774"), 400, False),
    ("empty param", VALID.replace(b";tag=1928301774", b";;tag=1928301774"), 400, False),
    ("response with bad status", OK_200.replace(b" 200 ", b" 2x0 "), 400, False),
    ("response status 099", OK_200.replace(b" 200 ", b" 099 "), 400, False),
    ("response status 700", OK_200.replace(b" 200 ", b" 700 "), 400, False),
    ("response status of four digits", OK_200.replace(b" 200 ", b" 2000 "), 400, False),
    ("response without SP after status", OK_200.replace(b" 200 OK", b" 200"), 400, False),
    ("response version 3.0", OK_200.replace(b"SIP/2.0 200", b"SIP/3.0 200"), 505, False),
    ("response without Via", OK_200.replace(VIA, b""), 400, False),
    ("response without CSeq", OK_200.replace(CSEQ, b""), 400, False),
    ("response body cut short", OK_200.replace(b"Content-Length: 0", b"Content-Length: 10"), 400, False),
]


@pytest.mark.parametrize("name,data,status,addressable", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_corpus_raises_typed_error(name: str, data: bytes, status: int, addressable: bool) -> None:
    """STYLE.md "errors that carry the reply": one typed error with the status, and the request when a reply can be addressed."""
    with pytest.raises(SipParseError) as error:
        parse_message(data)
    assert error.value.status == status, error.value.reason
    assert error.value.reason
    assert (error.value.request is not None) == addressable, error.value.reason
    if error.value.request is not None:
        reply = make_response(error.value.request, status)
        parsed = parse_message(reply.to_bytes())
        assert isinstance(parsed, Response) and parsed.status == status
        assert parsed.call_id == "a84b4c76e66710@pc33.example.com"


def test_malformed_corpus_is_large_enough() -> None:
    """The brief: at least 40 hand-written malformed messages, and none of them duplicated."""
    assert len(MALFORMED) >= 40
    assert len({m[1] for m in MALFORMED}) == len(MALFORMED)


def test_duplicate_headers_reply_uses_the_first_of_each() -> None:
    """RFC 4475 §3.3.8: the 400 to multi01 is addressed from the first From/To/Call-ID/CSeq."""
    with pytest.raises(SipParseError) as error:
        parse_message(_vector("multi01"))
    assert error.value.request is not None
    reply = make_response(error.value.request, 400)
    assert reply.call_id == "multi01.98asdh@192.0.2.1" and reply.cseq == (5, "INVITE")
    assert len(reply.headers.get_all("To")) == 1 and reply.to.uri.user == "user"


# --- properties --------------------------------------------------------------------------------------

METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "MESSAGE", "UPDATE", "PRACK", "REFER", "NOTIFY"]
SPELLINGS = {
    "Via": ["Via", "v", "VIA", "via"],
    "From": ["From", "f", "FROM"],
    "To": ["To", "t", "tO"],
    "Call-ID": ["Call-ID", "i", "call-id", "CALL-ID"],
    "CSeq": ["CSeq", "cseq", "CSEQ"],
    "Contact": ["Contact", "m", "contact"],
    "Max-Forwards": ["Max-Forwards", "max-forwards"],
    "Subject": ["Subject", "s"],
    "Supported": ["Supported", "k"],
    "Content-Type": ["Content-Type", "c"],
}
word_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"),
    min_size=1,
    max_size=20,
).map(lambda s: " ".join(s.split())).filter(bool)
call_ids = st.builds(lambda a, b: f"{a}@{b}", tokens, tokens) | tokens


@st.composite
def message_headers(draw: st.DrawFn, method: str) -> Headers:
    """Headers of a valid message: Vias (one line or comma-joined), From/To/Call-ID/CSeq, extras."""
    headers = Headers()
    spell = lambda name: draw(st.sampled_from(SPELLINGS[name]))  # noqa: E731
    via_values = [str(v) for v in draw(st.lists(vias(), min_size=1, max_size=4))]
    if draw(st.booleans()):
        headers.add(spell("Via"), ", ".join(via_values))
    else:
        for value in via_values:
            headers.add(spell("Via"), value)
    sender = draw(name_addrs())
    sender = NameAddr(sender.uri, sender.display, sender.params.with_param("tag", draw(tokens)))
    headers.add(spell("From"), str(sender))
    headers.add(spell("To"), str(draw(name_addrs())))
    headers.add(spell("Call-ID"), draw(call_ids))
    headers.add(spell("CSeq"), f"{draw(st.integers(0, 2**32 - 1))} {method}")
    headers.add(spell("Max-Forwards"), str(draw(st.integers(0, 255))))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["Contact", "Subject", "Supported", "Content-Type", "X-Extension"]))
        if kind == "Contact":
            headers.add(spell(kind), ", ".join(str(a) for a in draw(st.lists(name_addrs(), min_size=1, max_size=2))))
        elif kind == "Subject":
            headers.add(spell(kind), draw(word_text))
        elif kind == "Supported":
            headers.add(spell(kind), ", ".join(draw(st.lists(tokens, min_size=1, max_size=3))))
        elif kind == "Content-Type":
            headers.add(spell(kind), "application/sdp")
        else:
            headers.add("X-" + draw(tokens), draw(word_text))
    return headers


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A valid request: any method token, a SIP/SIPS Request-URI (IPv6 too), any body."""
    method = draw(st.one_of(st.sampled_from(METHODS), tokens))
    target = draw(sip_uris())
    return Request(headers=draw(message_headers(method)), body=draw(st.binary(max_size=64)), method=method, uri=str(target))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    """A valid response: 100 to 699, any reason phrase text."""
    method = draw(st.sampled_from(METHODS))
    reason = draw(st.one_of(st.just(""), word_text))
    return Response(headers=draw(message_headers(method)), body=draw(st.binary(max_size=64)),
                    status=draw(st.integers(100, 699)), reason=reason)


def _equivalent(parsed: Message, original: Message) -> None:
    assert type(parsed) is type(original)
    assert [line for line in parsed.headers if canonical_name(line[0]) != "content-length"] == list(original.headers)
    assert parsed.body == original.body
    assert parsed.vias == original.vias and parsed.from_ == original.from_ and parsed.to == original.to
    assert parsed.cseq == original.cseq and parsed.call_id == original.call_id
    if isinstance(original, Request):
        assert isinstance(parsed, Request)
        assert (parsed.method, parsed.uri) == (original.method, original.uri)
        assert parse_uri(parsed.uri) == parse_uri(original.uri)
    else:
        assert isinstance(parsed, Response)
        assert (parsed.status, parsed.reason) == (original.status, original.reason)


@given(requests())
@settings(max_examples=300, deadline=None)
def test_generated_requests_round_trip(message: Request) -> None:
    """parse(to_bytes(m)) is m, and serialising the parsed message gives the same bytes."""
    wire = message.to_bytes()
    parsed = parse_message(wire)
    _equivalent(parsed, message)
    assert parsed.to_bytes() == wire
    assert parse_message(wire, stream=True).to_bytes() == wire


@given(responses())
@settings(max_examples=200, deadline=None)
def test_generated_responses_round_trip(message: Response) -> None:
    """The same round trip for responses, whose reason phrase may hold spaces and UTF-8."""
    wire = message.to_bytes()
    parsed = parse_message(wire)
    _equivalent(parsed, message)
    assert parsed.to_bytes() == wire


def _must_parse_or_raise(data: bytes) -> None:
    """The fuzz invariant, plus: a parsed message is a fixed point of serialise/parse,
    and an error's request, when set, yields a response that parses."""
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream)
        except SipParseError as e:
            assert isinstance(e.status, int) and e.reason
            if e.request is not None:
                reply = make_response(e.request, e.status, to_tag="t")
                assert isinstance(parse_message(reply.to_bytes()), Response)
            continue
        wire = message.to_bytes()
        assert parse_message(wire).to_bytes() == wire


@given(st.binary(max_size=2000))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_parse_or_raise_the_typed_error(data: bytes) -> None:
    """The fuzz invariant (h11): any bytes parse or raise SipParseError, nothing else."""
    _must_parse_or_raise(data)


SEEDS = [VALID, OK_200] + [_vector(v["name"]) for v in INDEX]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid or torture message with bit flips, cuts, insertions and duplicated spans."""
    wire = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not wire:
            break
        pos = draw(st.integers(0, len(wire) - 1))
        op = draw(st.sampled_from(["flip", "cut", "truncate", "insert", "insert-sip", "duplicate"]))
        if op == "flip":
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del wire[pos : pos + draw(st.integers(1, 10))]
        elif op == "truncate":
            del wire[pos:]
        elif op == "insert":
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=10))
        elif op == "insert-sip":
            wire[pos:pos] = draw(st.sampled_from([b"\r\n", b"\r\n ", b":", b";", b",", b"<", b">", b'"', b"\\", b"%",
                                                  b"@", b"[", b"]", b"\x00", b"SIP/2.0", b"\r\n\r\n", b"9" * 20]))
        else:
            end = min(len(wire), pos + draw(st.integers(1, 80)))
            wire[pos:pos] = wire[pos:end]
    return bytes(wire)


@given(mutated())
@settings(max_examples=1500, deadline=None)
def test_mutated_messages_parse_or_raise_the_typed_error(data: bytes) -> None:
    """Mutations of valid and RFC 4475 messages never escape the parser (and errors stay answerable)."""
    _must_parse_or_raise(data)


@given(st.lists(st.sampled_from([
    "INVITE sip:a@b SIP/2.0", "SIP/2.0 200 OK", "Via: SIP/2.0/UDP h;branch=z9hG4bK1", "v: SIP/2.0/TCP [::1]:5060;branch=z9hG4bKx",
    "From: <sip:a@b>;tag=1", 'f: "A \\"q\\"" <sip:a@b>', "To: <sip:c@d>", "t: sip:c@d;tag=2", "Call-ID: x", "i: y",
    "CSeq: 1 INVITE", "CSeq: 0009 INVITE", "Max-Forwards: 70", "Content-Length: 0", "l: 3", "Contact: *",
    " folded", "\t", "", "abc", "Route: <sip:p;lr>,<sip:q;lr>",
]), max_size=12))
@settings(max_examples=800, deadline=None)
def test_shuffled_header_lines_parse_or_raise_the_typed_error(lines: list[str]) -> None:
    """The fuzz invariant on messages assembled from real header lines in any order."""
    _must_parse_or_raise(("\r\n".join(lines) + "\r\n\r\nabc").encode())
