"""SDP (RFC 8866): parsing and serialising, sans-I/O.

Rules of operation:

* :func:`parse_sdp` is total: any text parses into a
  :class:`SessionDescription` or raises :class:`SdpError` with a reason.
* Every line is kept, in order, including attributes we do not know
  (``a=extmap``, ``a=msid``, ``a=ssrc-group`` ...), so a description
  serialises back to the same text (CRLF line ends).
* Typed accessors read what the gateway needs: codecs (``rtpmap``/``fmtp``),
  direction, ICE credentials and candidates, DTLS fingerprint and setup,
  SDES crypto, mid and BUNDLE groups. Browsers' mDNS ``.local`` candidates
  are just candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_SDP = 65536
MAX_MEDIA = 16
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(Exception):
    """An SDP body that cannot be used."""


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload type from ``rtpmap`` (RFC 8866 §6.6) and its ``fmtp``."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def same_codec(self, other: Codec) -> bool:
        """Same encoding, rate and channels (payload type numbers may differ)."""
        return (self.name.lower(), self.clock_rate, self.channels) == (other.name.lower(), other.clock_rate, other.channels)


# Static payload types (RFC 3551 §6) that need no rtpmap.
STATIC_CODECS = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 18: ("G729", 8000), 3: ("GSM", 8000)}


@dataclass
class Media:
    """One ``m=`` section."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)  # (type, value), e.g. ("a", "mid:0")

    def attributes(self, name: str) -> list[str | None]:
        """Values of every ``a=name[:value]`` (``None`` for a flag)."""
        out: list[str | None] = []
        for kind, value in self.lines:
            if kind != "a":
                continue
            attr, sep, rest = value.partition(":")
            if attr == name:
                out.append(rest if sep else None)
        return out

    def attribute(self, name: str) -> str | None:
        """The first value of ``a=name`` (``""`` for a flag present without value)."""
        values = self.attributes(name)
        if not values:
            return None
        return values[0] if values[0] is not None else ""

    def has(self, name: str) -> bool:
        """Whether ``a=name`` is present."""
        return bool(self.attributes(name))

    def set_attribute(self, name: str, value: str | None) -> None:
        """Replace every ``a=name`` by one line (appended if absent)."""
        self.remove_attribute(name)
        self.lines.append(("a", name if value is None else f"{name}:{value}"))

    def remove_attribute(self, name: str) -> None:
        """Drop every ``a=name``."""
        self.lines = [(k, v) for k, v in self.lines if not (k == "a" and v.partition(":")[0] == name)]

    @property
    def direction(self) -> str:
        """sendrecv unless said otherwise (RFC 8866 §6.7)."""
        for name in DIRECTIONS:
            if self.has(name):
                return name
        return "sendrecv"

    @property
    def connection(self) -> str | None:
        """The media-level ``c=`` address, if any."""
        for kind, value in self.lines:
            if kind == "c":
                parts = value.split()
                return parts[2] if len(parts) == 3 else None
        return None

    @property
    def mid(self) -> str | None:
        """``a=mid`` (RFC 5888)."""
        return self.attribute("mid")

    def codecs(self) -> list[Codec]:
        """The formats in offer order, with their rtpmap and fmtp (RFC 8866 §6.6, §6.15)."""
        rtpmap: dict[int, tuple[str, int, int]] = {}
        for value in self.attributes("rtpmap"):
            if not value:
                continue
            pt_text, _, encoding = value.partition(" ")
            pieces = encoding.split("/")
            if not pt_text.isdigit() or len(pieces) < 2 or not pieces[1].isdigit():
                raise SdpError(f"bad rtpmap {value[:60]!r}")
            channels = int(pieces[2]) if len(pieces) > 2 and pieces[2].isdigit() else 1
            rtpmap[int(pt_text)] = (pieces[0], int(pieces[1]), channels)
        fmtp: dict[int, str] = {}
        for value in self.attributes("fmtp"):
            if value:
                pt_text, _, params = value.partition(" ")
                if pt_text.isdigit():
                    fmtp[int(pt_text)] = params
        out = []
        for fmt in self.formats:
            if not fmt.isdigit() or int(fmt) > 127:
                raise SdpError(f"bad payload type {fmt[:10]!r} in m={self.kind}")
            pt = int(fmt)
            if pt in rtpmap:
                name, rate, channels = rtpmap[pt]
            elif pt in STATIC_CODECS:
                name, rate = STATIC_CODECS[pt]
                channels = 1
            else:
                continue  # a dynamic type without rtpmap is unusable (RFC 8866 §6.6)
            out.append(Codec(pt, name, rate, channels, fmtp.get(pt)))
        return out

    def candidates(self) -> list[str]:
        """``a=candidate`` values (RFC 8839 §5.1)."""
        return [v for v in self.attributes("candidate") if v]


@dataclass
class SessionDescription:
    """A whole SDP body: session lines, then media sections."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)

    def session_attribute(self, name: str) -> str | None:
        """A session-level ``a=name`` value (``""`` for a flag)."""
        for kind, value in self.lines:
            if kind == "a":
                attr, sep, rest = value.partition(":")
                if attr == name:
                    return rest if sep else ""
        return None

    def media_attribute(self, media: Media, name: str) -> str | None:
        """A media attribute, falling back to the session level (RFC 8866 §5)."""
        value = media.attribute(name)
        return value if value is not None else self.session_attribute(name)

    @property
    def bundle_groups(self) -> list[list[str]]:
        """``a=group:BUNDLE`` mids (RFC 9143)."""
        groups = []
        for kind, value in self.lines:
            if kind == "a" and value.startswith("group:BUNDLE"):
                groups.append(value.split()[1:])
        return groups

    def __str__(self) -> str:
        out = [f"{k}={v}" for k, v in self.lines]
        for m in self.media:
            port = f"{m.port}/{m.port_count}" if m.port_count is not None else str(m.port)
            out.append(f"m={m.kind} {port} {m.proto} {' '.join(m.formats)}".rstrip())
            out.extend(f"{k}={v}" for k, v in m.lines)
        return "\r\n".join(out) + "\r\n"


def parse_sdp(text: str | bytes) -> SessionDescription:
    """Parse an SDP body (RFC 8866 §5); total."""
    if isinstance(text, bytes):
        if len(text) > MAX_SDP:
            raise SdpError("SDP body too large")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not UTF-8") from None
    if len(text) > MAX_SDP:
        raise SdpError("SDP body too large")
    session = SessionDescription()
    current: Media | None = None
    seen_version = False
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        line = raw.rstrip("\r")
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha() or not line[0].islower():
            raise SdpError(f"line {number} is not type=value: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if not seen_version:
            if kind != "v" or value != "0":
                raise SdpError("SDP must start with v=0")
            seen_version = True
        if kind == "m":
            current = _parse_m_line(value, number)
            session.media.append(current)
            if len(session.media) > MAX_MEDIA:
                raise SdpError("too many media sections")
        elif current is None:
            session.lines.append((kind, value))
        else:
            current.lines.append((kind, value))
    if not seen_version:
        raise SdpError("empty SDP")
    if not any(k == "o" for k, _ in session.lines):
        raise SdpError("SDP has no o= line")
    return session


def _parse_m_line(value: str, number: int) -> Media:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"line {number}: m= needs media, port and proto")
    kind, port_text, proto = parts[:3]
    port_text, slash, count_text = port_text.partition("/")
    if not port_text.isdigit() or int(port_text) > 65535 or (slash and not count_text.isdigit()):
        raise SdpError(f"line {number}: bad port {parts[1][:20]!r}")
    return Media(kind, int(port_text), proto, parts[3:], int(count_text) if slash else None)


def ice_credentials(session: SessionDescription, media: Media) -> tuple[str, str] | None:
    """(ufrag, pwd) of a media section, or of the session (RFC 8839 §5.4)."""
    ufrag = session.media_attribute(media, "ice-ufrag")
    pwd = session.media_attribute(media, "ice-pwd")
    if not ufrag or not pwd:
        return None
    return ufrag, pwd


def fingerprint(session: SessionDescription, media: Media) -> str | None:
    """The SHA-256 ``a=fingerprint`` (RFC 8122 §5); other hashes are not used."""
    value = session.media_attribute(media, "fingerprint")
    if not value:
        return None
    algorithm, _, digest = value.partition(" ")
    if algorithm.lower() != "sha-256":
        raise SdpError(f"unsupported fingerprint hash {algorithm[:20]!r}")
    return digest.strip()
