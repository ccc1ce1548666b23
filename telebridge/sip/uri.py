"""SIP URIs, name-addr values and Via headers (RFC 3261 §19.1, §20, §25.1).

Rules of operation:

* Every ``parse_*`` function is total: any input either parses or raises
  :class:`~telebridge.sip.errors.SipParseError` with a readable reason.
* Parameter names keep their original spelling; look-ups ignore case
  (RFC 3261 §19.1.4 compares them case-insensitively).
* IPv6 references are stored without brackets and written with them.
* Serialising a parsed value gives an equivalent value (not always the
  same bytes: optional whitespace is normalised).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Iterator

from telebridge.sip.errors import SipParseError

# RFC 3261 §25.1 "token" characters.
TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
# Characters allowed unescaped in a user part (unreserved / user-unreserved / escapes).
_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/%"
)
_PARAM_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/:&+$%"
)
# RFC 3261 §25.1 password: unreserved / escaped / "&" / "=" / "+" / "$" / ",".
_PASSWORD_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,%"
)
# RFC 3261 §25.1 hname / hvalue: hnv-unreserved / unreserved / escaped.
_HEADER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/?:+$%"
)
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
SIP_SCHEMES = ("sip", "sips")
# Longest decimal we ever convert: Python refuses int() of very long digit
# strings (ValueError), and no SIP number needs more than this.
_MAX_DIGITS = 10


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token."""
    return bool(text) and all(c in TOKEN_CHARS for c in text)


@dataclass(frozen=True, slots=True)
class Params:
    """An ordered ``;name[=value]`` list, looked up case-insensitively."""

    items: tuple[tuple[str, str | None], ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first parameter called ``name`` (``None`` for a flag)."""
        lowered = name.lower()
        for key, value in self.items:
            if key.lower() == lowered:
                return value
        return default

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lowered = name.lower()
        return any(key.lower() == lowered for key, _ in self.items)

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self.items)

    def with_param(self, name: str, value: str | None) -> Params:
        """A copy with ``name`` set (replacing an existing one in place)."""
        lowered = name.lower()
        out = []
        replaced = False
        for key, old in self.items:
            if key.lower() == lowered:
                if not replaced:
                    out.append((key, value))
                    replaced = True
            else:
                out.append((key, old))
        if not replaced:
            out.append((name, value))
        return Params(tuple(out))

    def without(self, name: str) -> Params:
        """A copy with every parameter called ``name`` removed."""
        lowered = name.lower()
        return Params(tuple((k, v) for k, v in self.items if k.lower() != lowered))

    def __str__(self) -> str:
        return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.items)


def parse_params(text: str, what: str, allow_quoted: bool) -> Params:
    """Parse ``;a=b;c`` (the leading ``;`` already removed from each piece)."""
    items: list[tuple[str, str | None]] = []
    for piece in split_outside_quotes(text, ";"):
        piece = piece.strip()
        if not piece:
            raise SipParseError(f"empty parameter in {what}")
        name, sep, value = piece.partition("=")
        name = name.strip()
        if not is_token(name):
            raise SipParseError(f"bad parameter name {name!r} in {what}")
        if not sep:
            items.append((name, None))
            continue
        value = value.strip()
        if value.startswith('"'):
            if not allow_quoted:
                raise SipParseError(f"quoted parameter value not allowed in {what}")
            _, end = read_quoted(value, 0)
            if end != len(value):
                raise SipParseError(f"junk after quoted value of {name!r} in {what}")
        elif not value or not all(c in _PARAM_CHARS or c in TOKEN_CHARS for c in value):
            raise SipParseError(f"bad value for parameter {name!r} in {what}")
        items.append((name, value))
    return Params(tuple(items))


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string at ``text[start]``; return (unescaped, index after).

    RFC 3261 §25.1: ``\\`` escapes the next character (not CR or LF).
    """
    if start >= len(text) or text[start] != '"':
        raise SipParseError("expected a quoted string")
    out = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] in "\r\n":
                raise SipParseError("bad escape in quoted string")
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise SipParseError("unterminated quoted string")


def quote(text: str) -> str:
    """Write ``text`` as a quoted-string, escaping ``"`` and ``\\``.

    RFC 3261 §25.1: other control characters are only allowed as a
    quoted-pair, so they are escaped too; CR and LF cannot appear in a
    quoted-string at all and become spaces (no header injection).
    """
    out = []
    for c in text:
        if c in "\r\n":
            out.append(" ")
        elif c in '"\\' or c < " " or c == "\x7f":
            out.append("\\" + c)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` except inside quoted strings and ``<...>``.

    Used for comma-separated header values (RFC 3261 §7.3.1) and for
    parameter lists; an unterminated quote or bracket is an error.
    """
    parts = []
    current: list[str] = []
    i = 0
    depth = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            _, end = read_quoted(text, i)
            current.append(text[i:end])
            i = end
            continue
        if c == "<":
            depth += 1
        elif c == ">":
            if depth == 0:
                raise SipParseError("unbalanced '>'")
            depth -= 1
        elif c == sep and depth == 0:
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    if depth:
        raise SipParseError("unterminated '<'")
    parts.append("".join(current))
    return parts


def parse_host(text: str, what: str) -> str:
    """Validate a host (name, IPv4 or bracketed IPv6); return it unbracketed."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise SipParseError(f"unterminated IPv6 reference in {what}")
        inner = text[1:-1]
        try:
            if "%" in inner:
                # Zone IDs are not part of RFC 3261 IPv6reference.
                raise ValueError
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise SipParseError(f"bad IPv6 address {inner[:60]!r} in {what}") from None
        return inner
    if not text or not all(c in _HOST_CHARS for c in text):
        raise SipParseError(f"bad host {text!r} in {what}")
    return text


def format_host(host: str) -> str:
    """Bracket IPv6 addresses for use in a URI or Via."""
    return f"[{host}]" if ":" in host else host


def parse_hostport(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` with IPv6 brackets; validate both."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError(f"unterminated IPv6 reference in {what}")
        host_text, rest = text[: close + 1], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 reference in {what}")
        port_text = rest[1:] if rest else None
    else:
        host_text, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
    host = parse_host(host_text, what)
    if port_text is None:
        return host, None
    if (
        not port_text.isascii()
        or not port_text.isdigit()
        or len(port_text) > _MAX_DIGITS
        or not 0 < int(port_text) < 65536
    ):
        raise SipParseError(f"bad port {port_text[:20]!r} in {what}")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1)."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: Params = field(default_factory=Params)
    headers: str | None = None

    @property
    def transport(self) -> str | None:
        """The ``transport`` URI parameter, lower-cased."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def with_params(self, **values: str | None) -> SipUri:
        """A copy with the given URI parameters set."""
        params = self.params
        for name, value in values.items():
            params = params.with_param(name, value)
        return replace(self, params=params)

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += ":" + self.password
            userinfo += "@"
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{format_host(self.host)}{port}{self.params}{headers}"


def parse_uri(text: str) -> SipUri:
    """Parse a SIP or SIPS URI; other schemes raise 416 (RFC 3261 §21.4.12)."""
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    if not sep or not scheme:
        raise SipParseError(f"not a URI: {text[:80]!r}")
    if not scheme[0].isalpha() or not all(c in _SCHEME_CHARS for c in scheme):
        # Not a scheme at all (e.g. "<sip" from a bracketed Request-URI): a
        # syntax error, 400, not an unsupported scheme (RFC 4475 §3.1.2.7).
        raise SipParseError(f"not a URI: {text[:80]!r}")
    if scheme.lower() not in SIP_SCHEMES:
        raise SipParseError(f"unsupported URI scheme {scheme[:20]!r}", status=416)
    user: str | None = None
    password: str | None = None
    # '@' may appear unescaped only as the end of userinfo (§25.1: not in
    # params or headers), while the user part may hold ';' and '?'.
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, psep, pw = userinfo.partition(":")
        if not user or not all(c in _USER_CHARS for c in user):
            raise SipParseError(f"bad user part in URI {text[:80]!r}")
        _check_escapes(user, text)
        if psep:
            if not all(c in _PASSWORD_CHARS for c in pw):
                raise SipParseError(f"bad password in URI {text[:80]!r}")
            _check_escapes(pw, text)
            password = pw
    rest, qsep, headers = rest.partition("?")
    if qsep:
        _check_headers(headers, text)
    hostport, psep, param_text = rest.partition(";")
    host, port = parse_hostport(hostport, "URI")
    params = parse_params(param_text, "URI", allow_quoted=False) if psep else Params()
    return SipUri(
        host=host,
        user=user,
        port=port,
        scheme=scheme.lower(),
        password=password,
        params=params,
        headers=headers if qsep else None,
    )


def _check_headers(headers: str, whole: str) -> None:
    """RFC 3261 §19.1.1: ``hname=hvalue`` pairs joined by ``&``."""
    for pair in headers.split("&"):
        name, sep, value = pair.partition("=")
        if not name or not sep or not all(c in _HEADER_CHARS for c in name + value):
            raise SipParseError(f"bad headers in URI {whole[:80]!r}")
        _check_escapes(name, whole)
        _check_escapes(value, whole)


def _check_escapes(part: str, whole: str) -> None:
    for i, c in enumerate(part):
        if c == "%":
            hexpair = part[i + 1 : i + 3]
            if len(hexpair) != 2 or not all(h in "0123456789abcdefABCDEF" for h in hexpair):
                raise SipParseError(f"bad %-escape in URI {whole[:80]!r}")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route value: ``"Display" <uri>;params`` (RFC 3261 §20.10)."""

    uri: SipUri
    display: str | None = None
    params: Params = field(default_factory=Params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (dialog identifier, RFC 3261 §19.3)."""
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy carrying ``tag``."""
        return replace(self, params=self.params.with_param("tag", tag))

    def __str__(self) -> str:
        display = quote(self.display) + " " if self.display is not None else ""
        return f"{display}<{self.uri}>{self.params}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse a name-addr or addr-spec with header parameters.

    Without angle brackets, ``;params`` after the URI belong to the header,
    not the URI (RFC 3261 §20.10).
    """
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text.startswith('"'):
        display, end = read_quoted(text, 0)
        rest = text[end:].lstrip()
        if not rest.startswith("<"):
            raise SipParseError("quoted display name without <uri>")
    elif "<" in text:
        lt = text.index("<")
        words = text[:lt].split()
        # RFC 3261 §25.1: an unquoted display-name is *(token LWS); a comma
        # or quote there means the sender forgot the quotes (RFC 4475
        # §3.1.2.15). Non-ASCII letters are tolerated for interop.
        if not all(all(c in TOKEN_CHARS or c > "\x7f" for c in word) for word in words):
            raise SipParseError("unquoted display name is not a sequence of tokens")
        display = " ".join(words) or None
        rest = text[lt:]
    else:
        uri_text, sep, param_text = text.partition(";")
        if "," in uri_text or "?" in uri_text:
            raise SipParseError("addr-spec with ',' or '?' must use <...>")
        params = parse_params(param_text, "address", allow_quoted=True) if sep else Params()
        return NameAddr(uri=parse_uri(uri_text), params=params)
    gt = rest.find(">")
    if gt < 0:
        raise SipParseError("unterminated '<' in address")
    uri = parse_uri(rest[1:gt])
    tail = rest[gt + 1 :].strip()
    if tail and not tail.startswith(";"):
        raise SipParseError("junk after '>' in address")
    params = parse_params(tail[1:], "address", allow_quoted=True) if tail else Params()
    return NameAddr(uri=uri, display=display, params=params)


VIA_TRANSPORTS = ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS")


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42, with RFC 3581 ``rport``)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)

    @property
    def branch(self) -> str | None:
        """The transaction branch (RFC 3261 §8.1.1.7)."""
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) as the sender wrote them."""
        return self.host, self.port

    def with_params(self, **values: str | None) -> Via:
        """A copy with the given parameters set."""
        params = self.params
        for name, value in values.items():
            params = params.with_param(name, value)
        return replace(self, params=params)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {format_host(self.host)}{port}{self.params}"


def parse_via(text: str) -> Via:
    """Parse one Via value; the protocol must be SIP/2.0."""
    text = text.strip()
    parts = text.split("/", 2)
    if len(parts) != 3:
        raise SipParseError("bad Via protocol")
    name, version, rest = (p.strip() for p in parts)
    if name.upper() != "SIP" or version != "2.0":
        raise SipParseError(f"unsupported Via protocol {name[:10]}/{version[:10]}")
    pieces = rest.split(None, 1)
    if len(pieces) != 2:
        raise SipParseError("Via without sent-by")
    transport, sent = pieces
    if not is_token(transport):
        raise SipParseError("bad Via transport")
    hostport, sep, param_text = sent.partition(";")
    host, port = parse_hostport(hostport.strip(), "Via")
    params = parse_params(param_text, "Via", allow_quoted=True) if sep else Params()
    return Via(transport=transport.upper(), host=host, port=port, params=params)
