"""SIP messages: parsing, framing and serialisation (RFC 3261 §7, §18.3, §20).

Rules of operation:

* :func:`parse_message` takes one whole message (a UDP datagram or a
  WebSocket frame, RFC 7118 §5.2) and returns a :class:`Request` or
  :class:`Response`, or raises :class:`SipParseError` carrying the status to
  answer with. It never raises anything else.
* :class:`StreamFramer` cuts a TCP/TLS byte stream into messages by
  Content-Length (RFC 3261 §18.3), with a size cap (513 past it).
* Header names keep their original spelling; look-ups are case-insensitive
  and understand compact forms (RFC 3261 §7.3.3). Folded lines are unfolded.
* Values of list headers (Via, Contact, Route, ...) may be combined with
  commas on one line or spread over several lines; :meth:`Headers.get_all`
  returns the individual values either way (RFC 3261 §7.3.1).
* Serialising always writes a correct Content-Length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Union

from telebridge.sip.errors import SipParseError
from telebridge.sip.uri import (
    NameAddr,
    Via,
    is_token,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_outside_quotes,
)

# RFC 3261 §7.3.3 and later registrations (RFC 3265, 3515, 3892, 4028).
COMPACT_FORMS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1).
LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "path",
        "service-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "allow-events",
        "in-reply-to",
    }
)

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

DEFAULT_MAX_SIZE = 65536

# Headers a request may carry once only (RFC 3261 §7.3.1: only list headers
# may repeat; RFC 4475 §3.3.8 and §3.3.9 answer duplicates with 400).
_SINGLE_HEADERS = ("call-id", "cseq", "from", "to", "max-forwards", "content-length")

# RFC 3261 §25.1: SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.ASCII | re.IGNORECASE)

# C0 controls other than HTAB, and DEL: allowed in a header only as a
# quoted-pair inside a quoted-string (RFC 3261 §25.1), as in RFC 4475 §3.1.1.2.
_CONTROLS = frozenset(chr(c) for c in range(0x20) if c != 0x09) | {"\x7f"}


def canonical_name(name: str) -> str:
    """The look-up key of a header name: lower case, compact form expanded."""
    lowered = name.lower()
    return COMPACT_FORMS.get(lowered, lowered)


class Headers:
    """An ordered list of (name, value) header lines.

    Names keep the spelling they arrived with; every look-up is by
    :func:`canonical_name`, so ``v``, ``VIA`` and ``Via`` are one header.
    """

    __slots__ = ("_lines",)

    def __init__(self, lines: Iterable[tuple[str, str]] = ()) -> None:
        self._lines: list[tuple[str, str]] = list(lines)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._lines == other._lines

    def __repr__(self) -> str:
        return f"Headers({self._lines!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first line's whole value for ``name``."""
        key = canonical_name(name)
        for line_name, value in self._lines:
            if canonical_name(line_name) == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value for ``name``; list headers are split at top-level commas."""
        key = canonical_name(name)
        values = [value for line_name, value in self._lines if canonical_name(line_name) == key]
        if key not in LIST_HEADERS:
            return values
        out = []
        for value in values:
            out.extend(piece.strip() for piece in split_outside_quotes(value, ",") if piece.strip())
        return out

    def add(self, name: str, value: str) -> None:
        """Append a line."""
        self._lines.append((name, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a line before the first one of the same name (or at the top).

        A proxy's own Via and Record-Route go on top (RFC 3261 §16.6).
        """
        key = canonical_name(name)
        for i, (line_name, _) in enumerate(self._lines):
            if canonical_name(line_name) == key:
                self._lines.insert(i, (name, value))
                return
        self._lines.insert(0, (name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every line for ``name`` with one line, kept in place."""
        key = canonical_name(name)
        for i, (line_name, _) in enumerate(self._lines):
            if canonical_name(line_name) == key:
                self._lines[i] = (line_name, value)
                self._lines[i + 1 :] = [
                    line for line in self._lines[i + 1 :] if canonical_name(line[0]) != key
                ]
                return
        self._lines.append((name, value))

    def remove(self, name: str) -> None:
        """Drop every line for ``name``."""
        key = canonical_name(name)
        self._lines = [line for line in self._lines if canonical_name(line[0]) != key]

    def remove_first_value(self, name: str) -> None:
        """Drop the first value of a list header (a response's top Via, §18.1.2)."""
        key = canonical_name(name)
        for i, (line_name, value) in enumerate(self._lines):
            if canonical_name(line_name) == key:
                rest = [p.strip() for p in split_outside_quotes(value, ",")][1:]
                if rest:
                    self._lines[i] = (line_name, ", ".join(rest))
                else:
                    del self._lines[i]
                return

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers(self._lines)


@dataclass(eq=False, slots=True)
class _Message:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return _required(self.headers, "Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) from CSeq (RFC 3261 §20.16)."""
        return parse_cseq(_required(self.headers, "CSeq"))

    @property
    def vias(self) -> list[Via]:
        """All Via values, top first."""
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via")
        return parse_via(values[0])

    @property
    def branch(self) -> str | None:
        """The top Via's branch."""
        return self.top_via.branch

    @property
    def from_(self) -> NameAddr:
        """The From address."""
        return parse_name_addr(_required(self.headers, "From"))

    @property
    def to(self) -> NameAddr:
        """The To address."""
        return parse_name_addr(_required(self.headers, "To"))

    @property
    def from_tag(self) -> str | None:
        """The From tag."""
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag (set once a dialog exists, RFC 3261 §12)."""
        return self.to.tag

    def _header_bytes(self, start_line: str) -> bytes:
        lines = [start_line]
        lines.extend(
            f"{name}: {value}"
            for name, value in self.headers
            if canonical_name(name) != "content-length"
        )
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@dataclass(eq=False, slots=True)
class Request(_Message):
    """A SIP request. ``uri`` is the Request-URI text."""

    method: str = ""
    uri: str = ""

    def to_bytes(self) -> bytes:
        """The wire form, with Content-Length set from the body."""
        return self._header_bytes(f"{self.method} {self.uri} SIP/2.0") + self.body

    def copy(self) -> Request:
        """An independent copy (headers copied, body shared: bytes are immutable)."""
        return Request(headers=self.headers.copy(), body=self.body, method=self.method, uri=self.uri)


@dataclass(eq=False, slots=True)
class Response(_Message):
    """A SIP response."""

    status: int = 200
    reason: str = "OK"

    def to_bytes(self) -> bytes:
        """The wire form, with Content-Length set from the body."""
        return self._header_bytes(f"SIP/2.0 {self.status} {self.reason}") + self.body

    def copy(self) -> Response:
        """An independent copy."""
        return Response(headers=self.headers.copy(), body=self.body, status=self.status, reason=self.reason)


Message = Union[Request, Response]


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"missing {name}")
    return value


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq: 4711 INVITE``; the number fits in 32 bits (§20.16).

    Leading zeros are allowed (RFC 4475 §3.1.1.1). A UAC starts below 2**31
    (§8.1.1.5), but a peer may legally have counted up to 2**32 - 1.
    """
    parts = value.split()
    if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
        raise SipParseError(f"bad CSeq {value[:40]!r}")
    digits = parts[0].lstrip("0") or "0"
    if len(digits) > 10 or int(digits) >= 2**32:
        raise SipParseError("CSeq number too large")
    number = int(digits)
    if not is_token(parts[1]):
        raise SipParseError("bad CSeq method")
    return number, parts[1]


def reason_phrase(status: int) -> str:
    """The usual reason phrase for ``status``."""
    return REASON_PHRASES.get(status, "Unknown")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
) -> Response:
    """Build a response to ``request`` (RFC 3261 §8.2.6.2).

    Copies every Via, From, To, Call-ID and CSeq (and Record-Route for
    dialog-forming 1xx/2xx, §12.1.1); adds ``to_tag`` to To when it has none.
    """
    headers = Headers()
    for name, value in request.headers:
        key = canonical_name(name)
        if key in ("via", "from", "call-id", "cseq"):
            headers.add(name, value)
        elif key == "to":
            if to_tag is not None and status != 100:
                try:
                    has_tag = parse_name_addr(value).tag is not None
                except SipParseError:
                    has_tag = True
                if not has_tag:
                    value = f"{value};tag={to_tag}"
            headers.add(name, value)
        elif key == "record-route" and 100 < status < 300:
            headers.add(name, value)
    return Response(headers=headers, status=status, reason=reason or reason_phrase(status))


def _decode_head(head: bytes) -> list[str]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not valid UTF-8") from None
    # Lines end in CRLF (RFC 3261 §7); a bare LF is tolerated, as most stacks do.
    lines = text.replace("\r\n", "\n").split("\n")
    for line in lines:
        _check_controls(line)
    return lines


def _check_controls(line: str) -> None:
    """Reject control characters (NUL above all) outside quoted-pairs."""
    if not any(c in _CONTROLS for c in line):
        return
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if quoted and c == "\\" and i + 1 < len(line) and line[i + 1] not in "\r\n":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c in _CONTROLS:
            what = "NUL byte" if c == "\x00" else f"control character {c!r}"
            raise SipParseError(f"{what} in headers")
        i += 1


def _parse_header_lines(lines: list[str]) -> Headers:
    headers: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t":
            # Folded continuation (RFC 3261 §7.3.1): joins the previous value.
            if not headers:
                raise SipParseError("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep:
            raise SipParseError(f"header line without ':': {line[:40]!r}")
        if not is_token(name):
            raise SipParseError(f"bad header name {name[:40]!r}")
        if any(c in value for c in "\r"):
            raise SipParseError(f"stray CR in header {name[:40]}")
        headers.append((name, value.strip(" \t")))
    return Headers(headers)


def _parse_start_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ", 2)
    if len(parts) != 3 or not all(parts[:2]):
        raise SipParseError(f"bad start line {line[:60]!r}")
    return parts[0], parts[1], parts[2]


def _check_version(version: str) -> None:
    if version.upper() != "SIP/2.0":
        if _VERSION.fullmatch(version):
            raise SipParseError(f"unsupported version {version[:20]!r}", status=505)
        # Trailing spaces (RFC 4475 §3.1.2.10) or junk: malformed, not 505.
        raise SipParseError(f"bad protocol {version[:20]!r}")


def _parse_content_length(headers: Headers) -> int | None:
    values = headers.get_all("Content-Length")
    if not values:
        return None
    if len(values) > 1:
        # RFC 4475 §3.3.9: no way to know which one frames the body.
        raise SipParseError("more than one Content-Length")
    value = values[0].strip()
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise SipParseError(f"bad Content-Length {value[:20]!r}")
    return int(value)


def _validate_request(request: Request) -> None:
    """Check the headers every request must carry (RFC 3261 §8.1.1)."""
    partial = _routing_headers(request.headers)
    try:
        for key in _SINGLE_HEADERS:
            if sum(1 for name, _ in request.headers if canonical_name(name) == key) > 1:
                # RFC 4475 §3.3.8: answered 400, from the first of each.
                raise SipParseError(f"more than one {key} header")
        vias = request.vias
        if not vias:
            raise SipParseError("missing Via")
        if not request.branch:
            # RFC 2543 peers send no branch; we need one to match transactions.
            raise SipParseError("Via has no branch")
        try:
            request.from_
            request.to
        except SipParseError as e:
            # 416 is about the Request-URI only (RFC 3261 §21.4.12); a From or
            # To we cannot read is a bad request (RFC 4475 §3.3.4).
            raise SipParseError(e.reason) from None
        request.call_id
        number, method = request.cseq
    except SipParseError as e:
        # Enough to answer if the routing headers themselves were readable.
        raise SipParseError(e.reason, e.status, _replyable(request, partial)) from None
    if method != request.method:
        raise SipParseError(
            "CSeq method does not match the request",
            request=_replyable(request, partial),
        )
    try:
        target = parse_uri(request.uri)
    except SipParseError as e:
        raise SipParseError(f"bad Request-URI: {e.reason}", e.status, request) from None
    if target.headers is not None:
        # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI
        # (RFC 4475 §3.1.2.11).
        raise SipParseError("bad Request-URI: it carries headers", request=request)
    mf = request.headers.get("Max-Forwards")
    # 1*DIGIT, leading zeros allowed (RFC 4475 §3.1.1.1), at most 255 (§20.22).
    if mf is not None:
        digits = mf.lstrip("0") or "0"
        if not (mf.isascii() and mf.isdigit() and len(digits) <= 3 and int(digits) <= 255):
            raise SipParseError("bad Max-Forwards", request=request)


def _routing_headers(headers: Headers) -> Headers:
    """The headers a response is built from (RFC 3261 §8.2.6.2).

    Every Via, and the first From, To, Call-ID and CSeq (a duplicate would
    make the response itself malformed).
    """
    out = Headers()
    for name, value in headers:
        key = canonical_name(name)
        if key == "via" or (key in ("from", "to", "call-id", "cseq") and out.get(key) is None):
            out.add(name, value)
    return out


def _replyable(request: Request, partial: Headers) -> Request | None:
    """The partial request if a response could be addressed from it."""
    probe = Request(headers=partial, method=request.method, uri=request.uri)
    try:
        probe.top_via
        probe.from_
        probe.to
        probe.call_id
        probe.cseq
    except SipParseError:
        return None
    return probe


def parse_message(data: bytes, *, stream: bool = False) -> Message:
    """Parse one complete message.

    For datagrams (``stream=False``) a missing Content-Length means the rest
    of the datagram is the body, and a larger one is an error (RFC 3261
    §18.3); bytes past it are ignored.
    """
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    data = data.lstrip(b"\r\n")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipParseError("no blank line after headers")
    lines = _decode_head(head)
    headers = _parse_header_lines(lines[1:])
    if lines[0][:4].upper() == "SIP/":
        return _parse_response(lines[0], headers, body, stream)
    try:
        method, uri, version = _parse_start_line(lines[0])
        if not is_token(method):
            raise SipParseError(f"bad method {method[:20]!r}")
        _check_version(version)
        length = _body_length(headers, body, stream)
        request = Request(headers=headers, body=body[:length], method=method, uri=uri)
        _validate_request(request)
    except SipParseError as e:
        if e.request is not None:
            raise
        # A bad start line or body does not stop us answering when the
        # routing headers were readable (e.g. 505 for SIP/3.0, RFC 3261 §8.2.6).
        words = lines[0].split(" ")
        probe = Request(headers=headers, method=words[0], uri=words[1] if len(words) > 1 else "")
        raise SipParseError(e.reason, e.status, _replyable(probe, _routing_headers(headers))) from None
    return request


def _body_length(headers: Headers, body: bytes, stream: bool) -> int:
    """How much of ``body`` is the message body (RFC 3261 §18.3, §20.14)."""
    length = _parse_content_length(headers)
    if length is None:
        if stream:
            raise SipParseError("missing Content-Length on a stream transport")
        length = len(body)
    if length > len(body):
        raise SipParseError("body shorter than Content-Length")
    return length


def _parse_response(start: str, headers: Headers, body: bytes, stream: bool) -> Response:
    version, code, reason = _parse_start_line(start)
    _check_version(version)
    # RFC 3261 §7.2 / §21: three digits, 100 to 699 (RFC 4475 §3.1.2.19).
    if len(code) != 3 or not code.isascii() or not code.isdigit() or not "100" <= code <= "699":
        raise SipParseError(f"bad status code {code[:10]!r}")
    length = _body_length(headers, body, stream)
    response = Response(headers=headers, body=body[:length], status=int(code), reason=reason)
    try:
        response.top_via
        response.call_id
        response.cseq
        response.from_
        response.to
    except SipParseError as e:
        raise SipParseError(f"unusable response: {e.reason}") from None
    return response


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLFCRLF ping on a stream (RFC 5626 §3.5.1); answer with CRLF."""


class StreamFramer:
    """Cut a TCP/TLS byte stream into SIP messages.

    Feed bytes with :meth:`feed`; it returns the complete messages (and
    keep-alive pings) found so far. A message whose headers or body would
    pass ``max_size`` raises 513, a missing Content-Length 400; after a
    raised error the stream is unusable and the transport should answer
    and close. Messages completed before a framing error in the same chunk
    are returned first and the error is raised by the next :meth:`feed`,
    so what comes out never depends on how the stream was cut.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._error: SipParseError | None = None

    @property
    def pending(self) -> bool:
        """True while part of a message is buffered."""
        return bool(self._buffer.strip(b"\r\n"))

    def feed(self, data: bytes) -> list[Message | KeepAlive | SipParseError]:
        """Add ``data``; return what it completed, in order.

        A message that framed correctly but did not parse comes back as its
        :class:`SipParseError`; only a framing error is raised.
        """
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[Message | KeepAlive | SipParseError] = []
        while True:
            try:
                item = self._next()
            except SipParseError as e:
                if not out:
                    raise
                self._error = e
                return out
            if item is None:
                return out
            out.append(item)

    def _next(self) -> Message | KeepAlive | SipParseError | None:
        buf = self._buffer
        if buf.startswith(b"\r\n\r\n"):
            del buf[:4]
            return KeepAlive()
        # Stray CRLFs between messages (pongs, §7.5) are skipped.
        while buf[:2] == b"\r\n" and len(buf) >= 4 and buf[2:4] != b"\r\n":
            del buf[:2]
        if buf in (b"\r\n", b"\r\n\r", b"\r"):
            return None
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_size:
                raise SipParseError("headers too large", status=513)
            return None
        head_end = end + 4
        if head_end > self.max_size:
            raise SipParseError("headers too large", status=513)
        headers = _parse_header_lines(_decode_head(bytes(buf[:end]))[1:])
        length = _parse_content_length(headers)
        if length is None:
            raise SipParseError("missing Content-Length on a stream transport")
        if head_end + length > self.max_size:
            raise SipParseError("message too large", status=513)
        if len(buf) < head_end + length:
            return None
        data = bytes(buf[: head_end + length])
        del buf[: head_end + length]
        try:
            return parse_message(data, stream=True)
        except SipParseError as e:
            # The framing held, so the stream stays usable: hand the error
            # over like a message and let the transport answer 400.
            return e
