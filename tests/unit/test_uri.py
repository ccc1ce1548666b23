"""SIP URIs, name-addr values and Via headers (RFC 3261 §19.1, §20.10, §20.42, §25.1).

The hypothesis strategies at the top are shared with ``test_message`` and
``test_framing``: they generate the values a peer may legally send.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.sip.errors import SipParseError
from telebridge.sip.uri import (
    NameAddr,
    Params,
    SipUri,
    Via,
    format_host,
    is_token,
    parse_host,
    parse_hostport,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    quote,
    read_quoted,
    split_outside_quotes,
)

# --- strategies -------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN = ALNUM + "-.!%*_+`'~"
HEX = "0123456789ABCDEFabcdef"

tokens = st.text(alphabet=TOKEN, min_size=1, max_size=12)
escapes = st.builds(lambda a, b: "%" + a + b, st.sampled_from(HEX), st.sampled_from(HEX))


def _escaped_text(plain: str, min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[str]:
    """Strings of ``plain`` characters and well-formed %-escapes."""
    piece = st.one_of(st.sampled_from(plain), escapes)
    return st.lists(piece, min_size=min_size, max_size=max_size).map("".join)


# RFC 3261 §25.1 user = 1*( unreserved / escaped / user-unreserved )
users = _escaped_text(ALNUM + "-_.!~*'()&=+$,;?/")
passwords = _escaped_text(ALNUM + "-_.!~*'()&=+$,", min_size=0)
domain_names = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z][a-z0-9-]{0,8}[a-z0-9]){0,3}\Z")
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hosts = st.one_of(domain_names, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(1, 65535))
param_values = st.text(alphabet=ALNUM + "-_.!~*'()[]/:&+$%`", min_size=1, max_size=10)
uri_params = st.lists(
    st.tuples(tokens, st.one_of(st.none(), param_values)), max_size=3
).map(lambda items: Params(tuple(items)))
uri_headers = st.lists(
    st.tuples(_escaped_text(ALNUM + "-_.!~*'()[]/?:+$"), _escaped_text(ALNUM + "-_.!~*'()[]/?:+$", min_size=0)),
    min_size=1,
    max_size=3,
).map(lambda pairs: "&".join(f"{n}={v}" for n, v in pairs))


@st.composite
def sip_uris(draw: st.DrawFn, headers: bool = False) -> SipUri:
    """A SIP or SIPS URI; with ``headers`` it may carry ``?h=v`` (not for a Request-URI)."""
    user = draw(st.one_of(st.none(), users))
    return SipUri(
        host=draw(hosts),
        user=user,
        port=draw(ports),
        scheme=draw(st.sampled_from(["sip", "sips"])),
        password=draw(st.one_of(st.none(), passwords)) if user is not None else None,
        params=draw(uri_params),
        headers=draw(st.one_of(st.none(), uri_headers)) if headers else None,
    )


# Anything but CR and LF (which a quoted-string cannot hold) and lone surrogates.
display_names = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=16),
)
quoted_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8
).map(quote)
header_params = st.lists(
    st.tuples(tokens, st.one_of(st.none(), param_values, quoted_values)), max_size=3
).map(lambda items: Params(tuple(items)))


@st.composite
def name_addrs(draw: st.DrawFn) -> NameAddr:
    """A From/To/Contact value: optional display name, URI, header parameters."""
    return NameAddr(uri=draw(sip_uris(headers=True)), display=draw(display_names), params=draw(header_params))


@st.composite
def vias(draw: st.DrawFn) -> Via:
    """A Via value with a branch and, sometimes, rport/received (RFC 3581)."""
    params = [("branch", "z9hG4bK" + draw(tokens))]
    extra = draw(
        st.lists(
            st.one_of(
                st.just(("rport", None)),
                st.integers(1, 65535).map(lambda p: ("rport", str(p))),
                st.one_of(ipv4, ipv6).map(lambda a: ("received", a)),
                st.tuples(tokens, st.one_of(st.none(), param_values)),
            ),
            max_size=2,
        )
    )
    return Via(
        transport=draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"])),
        host=draw(hosts),
        port=draw(ports),
        params=Params(tuple(params + extra)),
    )


# --- SIP URIs: RFC 3261 §19.1 -------------------------------------------------------


def test_uri_with_user_password_port_params_and_headers() -> None:
    """RFC 3261 §19.1.1: every component of a SIP URI is read and kept."""
    uri = parse_uri("sip:alice:secretword@atlanta.com:5060;transport=TCP;lr?subject=project&priority=urgent")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == ("sip", "alice", "secretword", "atlanta.com", 5060)
    assert uri.params.items == (("transport", "TCP"), ("lr", None))
    assert uri.headers == "subject=project&priority=urgent"
    assert str(uri) == "sip:alice:secretword@atlanta.com:5060;transport=TCP;lr?subject=project&priority=urgent"


def test_sips_scheme_is_case_insensitive_and_written_lower_case() -> None:
    """RFC 3261 §19.1.4: the scheme compares case-insensitively."""
    uri = parse_uri("SIPS:Bob@Biloxi.COM")
    assert (uri.scheme, uri.user, uri.host) == ("sips", "Bob", "Biloxi.COM")
    assert str(uri) == "sips:Bob@Biloxi.COM"


def test_uri_without_user_part() -> None:
    """RFC 3261 §19.1.1: userinfo is optional (e.g. a registrar's URI)."""
    uri = parse_uri("sip:registrar.biloxi.com")
    assert (uri.user, uri.password, uri.host, uri.port) == (None, None, "registrar.biloxi.com", None)


def test_ipv6_reference_is_stored_bare_and_written_bracketed() -> None:
    """RFC 3261 §25.1 IPv6reference: brackets in the URI, none in the host value."""
    uri = parse_uri("sip:bob@[2001:db8::10]:5070;transport=tls")
    assert (uri.host, uri.port, uri.transport) == ("2001:db8::10", 5070, "tls")
    assert str(uri) == "sip:bob@[2001:db8::10]:5070;transport=tls"
    assert parse_uri("sip:[::1]").host == "::1"
    assert format_host("::1") == "[::1]" and format_host("192.0.2.1") == "192.0.2.1"


def test_param_lookups_ignore_case_but_spelling_is_kept() -> None:
    """RFC 3261 §19.1.4: parameter names compare case-insensitively."""
    uri = parse_uri("sip:carol@chicago.com;Transport=UDP;LR")
    assert uri.transport == "udp" and "lr" in uri.params and uri.params.get("TRANSPORT") == "UDP"
    assert str(uri) == "sip:carol@chicago.com;Transport=UDP;LR"
    moved = uri.with_params(transport="tcp", maddr="192.0.2.4")
    assert str(moved) == "sip:carol@chicago.com;Transport=tcp;LR;maddr=192.0.2.4"
    assert str(replace(moved, params=moved.params.without("LR"))) == "sip:carol@chicago.com;Transport=tcp;maddr=192.0.2.4"


def test_escapes_in_user_part_are_kept_verbatim() -> None:
    """RFC 4475 §3.1.1.3 / §3.1.1.4: %-escapes (even %00) are not unescaped by the parser."""
    assert parse_uri("sip:sips%3Auser%40example.com@example.net").user == "sips%3Auser%40example.com"
    assert parse_uri("sip:null-%00-null@example.com").user == "null-%00-null"


def test_user_part_may_hold_semicolons_and_question_marks() -> None:
    """RFC 4475 §3.1.1.9 and §3.1.1.2: user-unreserved includes ';' '?' '/' and friends."""
    assert parse_uri("sip:user;par=u%40example.net@example.com").user == "user;par=u%40example.net"
    uri = parse_uri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com")
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.params.items == ()


def test_escaped_headers_are_kept() -> None:
    """RFC 3261 §19.1.1: headers are hname=hvalue pairs; escapes stay escaped (RFC 4475 §3.3.14)."""
    uri = parse_uri("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    assert uri.headers == "Route=%3Csip:sip.example.com%3E"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:user@",
        "sip:user@exa mple.com",
        "sip:us er@example.com",
        "sip:b%zzob@example.com",
        "sip:bob%4@example.com",
        "sip:bob:pass word@example.com",
        "sip:bob:p%zz@example.com",
        "sip:bob@example.com;",
        "sip:bob@example.com;;lr",
        "sip:bob@example.com;=x",
        "sip:bob@example.com;x=",
        'sip:bob@example.com;x="quoted"',
        "sip:bob@example.com?",
        "sip:bob@example.com?subject",
        "sip:bob@example.com?=x",
        "sip:bob@example.com?a=b c",
        "sip:bob@example.com?a=%G1",
        "sip:bob@example.com?a%4=1",
        "sip:bob@[2001:db8::zz]",
        "sip:bob@[2001:db8::1",
        "sip:bob@[2001:db8::1]x",
        "sip:bob@[fe80::1%25eth0]",
        "sip:bob@192.0.2.1:0",
        "sip:bob@192.0.2.1:65536",
        "sip:bob@192.0.2.1:abc",
        "sip:bob@192.0.2.1:",
        "sip:bob@192.0.2.1:5060:5061",
        "sip:bob@192.0.2.1:" + "9" * 5000,
        "sip:bob@192.0.2.1:\u0665",
        "<sip:bob@example.com>",
        "sip",
        ":bob@example.com",
        "1sip:bob@example.com",
    ],
)
def test_malformed_uris_raise_400(text: str) -> None:
    """RFC 3261 §25.1 grammar: anything else is a SipParseError with status 400."""
    with pytest.raises(SipParseError) as error:
        parse_uri(text)
    assert error.value.status == 400, error.value.reason


@pytest.mark.parametrize("text", ["tel:+15551234", "mailto:bob@example.com", "http://www.example.com", "soap.beep://192.0.2.103:3002", "urn:service:sos"])
def test_other_schemes_raise_416(text: str) -> None:
    """RFC 3261 §21.4.12: an unsupported (but well-formed) scheme is 416."""
    with pytest.raises(SipParseError) as error:
        parse_uri(text)
    assert error.value.status == 416


def test_host_and_hostport_helpers() -> None:
    """RFC 3261 §25.1 hostport: host names, IPv4, bracketed IPv6, optional port."""
    assert parse_host("Example.COM", "test") == "Example.COM"
    assert parse_hostport("[::1]:5061", "test") == ("::1", 5061)
    assert parse_hostport("192.0.2.1", "test") == ("192.0.2.1", None)
    with pytest.raises(SipParseError):
        parse_host("", "test")


# --- name-addr / addr-spec: RFC 3261 §20.10 -------------------------------------------


def test_name_addr_with_quoted_display_name_and_escapes() -> None:
    """RFC 3261 §25.1 quoted-string: quoted-pairs unescape (RFC 4475 §3.1.1.1)."""
    addr = parse_name_addr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8')
    assert addr.display == 'J Rosenberg \\"'
    assert addr.uri.user == "jdrosen" and addr.tag == "98asjd8"


def test_quoted_display_name_may_hold_escaped_control_characters() -> None:
    """RFC 3261 §25.1 quoted-pair: %x00-09 / %x0B-0C / %x0E-7F may be escaped (RFC 4475 §3.1.1.2)."""
    addr = parse_name_addr('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:a@example.com>')
    assert addr.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert parse_name_addr(str(addr)) == addr


def test_unquoted_display_name_is_tokens_joined_by_single_spaces() -> None:
    """RFC 3261 §25.1 display-name = *(token LWS); no LWS before '<' is tolerated (RFC 4475 §3.1.1.6)."""
    assert parse_name_addr("token1~` token2'+_   token3*%!.- <sip:mundane@example.com>").display == "token1~` token2'+_ token3*%!.-"
    assert parse_name_addr("caller<sip:caller@example.com>;tag=323").display == "caller"
    assert parse_name_addr("Jörg <sip:j@example.com>").display == "Jörg"


def test_unquoted_display_name_with_separators_is_rejected() -> None:
    """RFC 4475 §3.1.2.15: a comma (or quote) in an unquoted display name is a 400."""
    for text in ["Bell, Alexander <sip:a.g.bell@example.com>;tag=43", 'Bob "B" <sip:b@example.com>', "a@b <sip:b@example.com>"]:
        with pytest.raises(SipParseError) as error:
            parse_name_addr(text)
        assert error.value.status == 400


def test_without_brackets_parameters_belong_to_the_header() -> None:
    """RFC 3261 §20.10: in an addr-spec, ;params after the URI are header parameters (RFC 4475 §3.3.12)."""
    addr = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=1")
    assert addr.uri.params.items == ()
    assert addr.params.items == (("unknownparam", None), ("tag", "1"))
    assert addr.display is None and addr.tag == "1"


def test_inside_brackets_parameters_belong_to_the_uri() -> None:
    """RFC 3261 §20.10: inside <...> the ;params are URI parameters (RFC 4475 §3.3.13)."""
    addr = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>;expires=60")
    assert addr.uri.params.items == (("unknownparam", None),)
    assert addr.params.items == (("expires", "60"),)


def test_addr_spec_with_comma_or_question_mark_must_use_brackets() -> None:
    """RFC 3261 §20.10: a URI with ',', '?' or ';' in it needs <> (RFC 4475 §3.1.2.13)."""
    with pytest.raises(SipParseError):
        parse_name_addr("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    assert parse_name_addr("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_spaces_inside_brackets_are_tolerated() -> None:
    """RFC 4475 §3.1.2.14: liberal parsers may ignore spaces around the addr-spec."""
    assert parse_name_addr('"Watson, Thomas" < sip:t.watson@example.org >').uri.host == "example.org"


def test_header_parameters_may_be_quoted_strings() -> None:
    """RFC 3261 §25.1 gen-value = token / host / quoted-string, in header parameters only."""
    addr = parse_name_addr('<sip:a@example.com>;+sip.instance="<urn:uuid:1234>";q=0.5')
    assert addr.params.get("+sip.instance") == '"<urn:uuid:1234>"'
    assert addr.params.get("Q") == "0.5"


def test_with_tag_adds_or_replaces_the_tag() -> None:
    """RFC 3261 §19.3: the tag is a header parameter of From/To."""
    addr = parse_name_addr("Bob <sip:bob@biloxi.com>")
    assert addr.tag is None
    tagged = addr.with_tag("a6c85cf")
    assert str(tagged) == '"Bob" <sip:bob@biloxi.com>;tag=a6c85cf'
    assert tagged.with_tag("x").tag == "x" and len(tagged.with_tag("x").params.items) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '"Mr. J. User <sip:j.user@example.com>',
        '"Bob" sip:bob@example.com',
        "Bob <sip:bob@example.com",
        "Bob <sip:bob@example.com> junk",
        "<sip:bob@example.com>;",
        "<sip:bob@example.com>;tag=a b",
        '<sip:bob@example.com>;x="open',
        '<sip:bob@example.com>;x="a"b',
        "<tel:+1555>",
        "isbn:2983792873",
    ],
)
def test_malformed_addresses_raise(text: str) -> None:
    """RFC 3261 §20.10 / §25.1: unbalanced quotes or brackets and junk are SipParseError."""
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_quote_escapes_what_a_quoted_string_cannot_hold() -> None:
    """RFC 3261 §25.1: '"', '\\' and controls become quoted-pairs; CR/LF (no escape exists) become spaces."""
    assert quote('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert quote("a\x00b\x7f") == '"a\\\x00b\\\x7f"'
    assert quote("evil\r\nVia: x") == '"evil  Via: x"'
    assert read_quoted(quote("a\tb\x01"), 0) == ("a\tb\x01", len(quote("a\tb\x01")))


def test_read_quoted_errors() -> None:
    """RFC 3261 §25.1: a quoted-string ends with '"'; '\\' escapes one non-CR/LF character."""
    for text in ['"abc', '"abc\\', '"a\\\nb"', "abc"]:
        with pytest.raises(SipParseError):
            read_quoted(text, 0)


def test_split_outside_quotes_and_brackets() -> None:
    """RFC 3261 §7.3.1: separators inside quoted strings or <...> do not split."""
    assert split_outside_quotes('"Doe, John" <sip:j@a;x=1,2>;q=0.5, <sip:k@b>', ",") == [
        '"Doe, John" <sip:j@a;x=1,2>;q=0.5',
        " <sip:k@b>",
    ]
    for text in ['"open, x', "<sip:a@b, x", "a>, b"]:
        with pytest.raises(SipParseError):
            split_outside_quotes(text, ",")


def test_parse_params_rules() -> None:
    """RFC 3261 §25.1 generic-param: token [= gen-value], LWS around '=' allowed."""
    assert parse_params(" tag = 1 ; lr ", "test", allow_quoted=False).items == (("tag", "1"), ("lr", None))
    with pytest.raises(SipParseError):
        parse_params('x="y"', "test", allow_quoted=False)


def test_is_token() -> None:
    """RFC 3261 §25.1 token: alphanum and -.!%*_+`'~, at least one."""
    assert is_token("!interesting-Method0123456789_*+`.%indeed'~")
    assert not is_token("") and not is_token("a b") and not is_token("a,b") and not is_token("é")


# --- Via: RFC 3261 §20.42, RFC 3581 ------------------------------------------------------


def test_via_with_branch_rport_and_received() -> None:
    """RFC 3261 §20.42 and RFC 3581 §4: sent-by, branch, rport flag, received."""
    via = parse_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport;received=203.0.113.9")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "192.0.2.1", 5060, "z9hG4bK776asdhds")
    assert via.sent_by == ("192.0.2.1", 5060)
    assert "rport" in via.params and via.params.get("rport") is None
    assert via.params.get("received") == "203.0.113.9"
    filled = via.with_params(rport="40000")
    assert str(filled) == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport=40000;received=203.0.113.9"


def test_via_with_ipv6_sent_by_and_wss() -> None:
    """RFC 7118 §5.1: WSS transport; RFC 3261 §25.1: IPv6 sent-by in brackets."""
    via = parse_via("SIP/2.0/wss [2001:db8::9]:443;branch=z9hG4bK2;received=2001:db8::1")
    assert (via.transport, via.host, via.port) == ("WSS", "2001:db8::9", 443)
    assert str(via) == "SIP/2.0/WSS [2001:db8::9]:443;branch=z9hG4bK2;received=2001:db8::1"


def test_via_with_lws_everywhere() -> None:
    """RFC 4475 §3.1.1.1: LWS is allowed around '/', ';' and '='."""
    via = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
    assert (via.transport, via.host, via.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")


def test_via_with_unknown_transport_is_kept() -> None:
    """RFC 4475 §3.1.1.10: other-transport is any token."""
    assert parse_via("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en").transport == "UNKNOWN"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0",
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host;branch=z9hG4bK1",
        "SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
        "HTTP/2.0/UDP host",
        "SIP/2.0/U,P host",
        "SIP/2.0/UDP host:0",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP host;branch=a b",
    ],
)
def test_malformed_via_raises(text: str) -> None:
    """RFC 3261 §20.42: only SIP/2.0 with a transport token and a valid sent-by."""
    with pytest.raises(SipParseError):
        parse_via(text)


# --- properties -------------------------------------------------------------------------


@given(sip_uris(headers=True))
@settings(max_examples=400, deadline=None)
def test_generated_uris_round_trip(uri: SipUri) -> None:
    """RFC 3261 §19.1: parse(str(uri)) == uri for any URI we can write."""
    assert parse_uri(str(uri)) == uri


@given(name_addrs())
@settings(max_examples=400, deadline=None)
def test_generated_name_addrs_round_trip(addr: NameAddr) -> None:
    """RFC 3261 §20.10: display names (quoted, any characters), URIs and header params survive."""
    assert parse_name_addr(str(addr)) == addr


@given(vias())
@settings(max_examples=300, deadline=None)
def test_generated_vias_round_trip(via: Via) -> None:
    """RFC 3261 §20.42: parse(str(via)) == via."""
    assert parse_via(str(via)) == via


@given(st.text(max_size=200))
@settings(max_examples=500, deadline=None)
def test_uri_parsers_are_total(text: str) -> None:
    """The fuzz invariant (h11) for every URI-level parser: parse or SipParseError."""
    for parse in (parse_uri, parse_name_addr, parse_via):
        try:
            parse(text)
        except SipParseError:
            pass


@given(st.text(alphabet='sip:@;=?&%<>"\\[]., /ab1', max_size=60))
@settings(max_examples=500, deadline=None)
def test_uri_parsers_are_total_on_sip_like_text(text: str) -> None:
    """The fuzz invariant on text made of the URI grammar's own separators."""
    for parse in (parse_uri, parse_name_addr, parse_via):
        try:
            parse(text)
        except SipParseError:
            pass
