"""STUN messages (RFC 8489) as ICE uses them (RFC 8445 §7), sans-I/O.

Rules of operation:

* :func:`parse_stun` is total: any bytes parse into a :class:`StunMessage` or
  raise :class:`StunError`; ``struct.error`` and friends never escape.
* Attributes are kept in order as (type, value bytes); typed accessors read
  the ones ICE needs. Unknown comprehension-optional attributes are kept.
* MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
  are computed over the message as it stood up to them, with the length
  field adjusted (RFC 8489 §14.5, §14.6, §14.7); checks use
  ``hmac.compare_digest``.
* :meth:`StunMessage.encode` writes attributes, then the integrity and
  fingerprint attributes asked for, in that order.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

MAGIC_COOKIE = 0x2112A442
FINGERPRINT_XOR = 0x5354554E
HEADER = struct.Struct("!HHI12s")

# Methods and classes (RFC 8489 §5).
BINDING = 0x001
REQUEST, INDICATION, SUCCESS, ERROR = 0b00, 0b01, 0b10, 0b11

# Attribute types (RFC 8489 §18.3, RFC 8445 §16.1).
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
XOR_MAPPED_ADDRESS = 0x0020
MESSAGE_INTEGRITY_SHA256 = 0x001C
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A

MAX_ATTRIBUTES = 64


class StunError(Exception):
    """Bytes that are not a usable STUN message; ``code`` is an error code to answer with."""

    def __init__(self, reason: str, code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def is_stun(data: bytes) -> bool:
    """RFC 7983 §7: first byte 0-3, and the magic cookie where RFC 8489 puts it."""
    return len(data) >= 20 and data[0] < 4 and data[4:8] == b"\x21\x12\xa4\x42"


@dataclass(slots=True)
class StunMessage:
    """One STUN message: method, class, transaction id and attributes."""

    method: int
    cls: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)
    # The raw bytes it was parsed from, for integrity checks.
    raw: bytes = b""

    def get(self, kind: int) -> bytes | None:
        """The first value of attribute ``kind``."""
        for attr_type, value in self.attributes:
            if attr_type == kind:
                return value
        return None

    def add(self, kind: int, value: bytes) -> StunMessage:
        """Append an attribute (returns self, for chaining)."""
        self.attributes.append((kind, value))
        return self

    @property
    def username(self) -> str | None:
        """USERNAME as text (RFC 8489 §14.3)."""
        value = self.get(USERNAME)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise StunError("USERNAME is not UTF-8") from None

    @property
    def priority(self) -> int | None:
        """PRIORITY (RFC 8445 §16.1)."""
        value = self.get(PRIORITY)
        if value is None:
            return None
        if len(value) != 4:
            raise StunError("PRIORITY must be 4 bytes")
        return int.from_bytes(value, "big")

    @property
    def use_candidate(self) -> bool:
        """USE-CANDIDATE present (the controlling agent nominates, RFC 8445 §7.1.1)."""
        return self.get(USE_CANDIDATE) is not None

    @property
    def error_code(self) -> tuple[int, str] | None:
        """(code, reason) from ERROR-CODE (RFC 8489 §14.8)."""
        value = self.get(ERROR_CODE)
        if value is None:
            return None
        if len(value) < 4:
            raise StunError("ERROR-CODE too short")
        code = (value[2] & 0x07) * 100 + value[3]
        return code, value[4:].decode("utf-8", "replace")

    def xor_mapped_address(self) -> tuple[str, int] | None:
        """XOR-MAPPED-ADDRESS (RFC 8489 §14.2)."""
        value = self.get(XOR_MAPPED_ADDRESS)
        if value is None:
            return None
        return decode_xor_address(value, self.transaction_id)

    def encode(self, integrity_key: bytes | None = None, sha256: bool = False, fingerprint: bool = True) -> bytes:
        """The wire form; MESSAGE-INTEGRITY(-SHA256) with ``integrity_key``, then FINGERPRINT."""
        body = b"".join(_attribute(t, v) for t, v in self.attributes)
        kind = _message_type(self.method, self.cls)
        if integrity_key is not None:
            mac_type, size = (MESSAGE_INTEGRITY_SHA256, 32) if sha256 else (MESSAGE_INTEGRITY, 20)
            head = HEADER.pack(kind, len(body) + 4 + size, MAGIC_COOKIE, self.transaction_id)
            mac = hmac.new(integrity_key, head + body, hashlib.sha256 if sha256 else hashlib.sha1).digest()
            body += _attribute(mac_type, mac)
        if fingerprint:
            head = HEADER.pack(kind, len(body) + 8, MAGIC_COOKIE, self.transaction_id)
            crc = (binascii.crc32(head + body) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            body += _attribute(FINGERPRINT, struct.pack("!I", crc))
        return HEADER.pack(kind, len(body), MAGIC_COOKIE, self.transaction_id) + body

    def check_integrity(self, key: bytes) -> bool:
        """Whether MESSAGE-INTEGRITY (or -SHA256) verifies with ``key`` (RFC 8489 §14.5-6)."""
        for mac_type, algorithm in ((MESSAGE_INTEGRITY_SHA256, hashlib.sha256), (MESSAGE_INTEGRITY, hashlib.sha1)):
            offset = _attribute_offset(self.raw, mac_type)
            if offset is None:
                continue
            size = algorithm().digest_size
            received = self.raw[offset + 4 : offset + 4 + size]
            head = bytearray(self.raw[:offset])
            struct.pack_into("!H", head, 2, offset - 20 + 4 + size)
            expected = hmac.new(key, bytes(head), algorithm).digest()
            return hmac.compare_digest(expected, received)
        return False

    def check_fingerprint(self) -> bool:
        """Whether FINGERPRINT is present and right (RFC 8489 §14.7)."""
        offset = _attribute_offset(self.raw, FINGERPRINT)
        if offset is None or offset + 8 != len(self.raw):
            return False
        (received,) = struct.unpack_from("!I", self.raw, offset + 4)
        return received == (binascii.crc32(self.raw[:offset]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def _message_type(method: int, cls: int) -> int:
    # RFC 8489 §5: the class bits sit at positions 4 and 8 of the method.
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7)


def _attribute(kind: int, value: bytes) -> bytes:
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\x00" * pad


def _attribute_offset(raw: bytes, kind: int) -> int | None:
    pos = 20
    while pos + 4 <= len(raw):
        attr_type, length = struct.unpack_from("!HH", raw, pos)
        if attr_type == kind:
            return pos
        pos += 4 + length + (4 - length % 4) % 4
    return None


def parse_stun(data: bytes) -> StunMessage:
    """Parse one STUN message (RFC 8489 §6); total."""
    if len(data) < 20:
        raise StunError("shorter than a STUN header")
    kind, length, cookie, transaction_id = HEADER.unpack_from(data)
    if kind & 0xC000:
        raise StunError("first two bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunError("wrong magic cookie")
    if length % 4 or 20 + length != len(data):
        raise StunError("length does not match the datagram")
    method = (kind & 0x000F) | ((kind & 0x00E0) >> 1) | ((kind & 0x3E00) >> 2)
    cls = ((kind >> 4) & 1) | ((kind >> 7) & 2)
    attributes: list[tuple[int, bytes]] = []
    pos = 20
    seen_integrity = seen_fingerprint = False
    while pos < len(data):
        if pos + 4 > len(data):
            raise StunError("truncated attribute header")
        attr_type, attr_length = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + attr_length
        if end > len(data):
            raise StunError("attribute runs past the message")
        if seen_fingerprint:
            raise StunError("attribute after FINGERPRINT")
        if seen_integrity and attr_type != FINGERPRINT and attr_type not in (MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256):
            # RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY are ignored.
            pos = end + (4 - attr_length % 4) % 4
            continue
        attributes.append((attr_type, data[pos + 4 : end]))
        if len(attributes) > MAX_ATTRIBUTES:
            raise StunError("too many attributes")
        seen_integrity = seen_integrity or attr_type in (MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256)
        seen_fingerprint = attr_type == FINGERPRINT
        pos = end + (4 - attr_length % 4) % 4
    return StunMessage(method, cls, transaction_id, attributes, bytes(data))


def encode_xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS value (RFC 8489 §14.2)."""
    address = ipaddress.ip_address(host)
    xport = port ^ (MAGIC_COOKIE >> 16)
    if address.version == 4:
        xaddr = int(address) ^ MAGIC_COOKIE
        return struct.pack("!BBHI", 0, 1, xport, xaddr)
    key = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + transaction_id, "big")
    return struct.pack("!BBH", 0, 2, xport) + (int(address) ^ key).to_bytes(16, "big")


def decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """(host, port) from an XOR-MAPPED-ADDRESS value."""
    if len(value) not in (8, 20):
        raise StunError("bad XOR-MAPPED-ADDRESS length")
    family, xport = value[1], struct.unpack_from("!H", value, 2)[0]
    port = xport ^ (MAGIC_COOKIE >> 16)
    if family == 1 and len(value) == 8:
        return str(ipaddress.IPv4Address(struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE)), port
    if family == 2 and len(value) == 20:
        key = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + transaction_id, "big")
        return str(ipaddress.IPv6Address(int.from_bytes(value[4:], "big") ^ key)), port
    raise StunError("bad XOR-MAPPED-ADDRESS family")


def error_value(code: int, reason: str) -> bytes:
    """ERROR-CODE value (RFC 8489 §14.8)."""
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")
