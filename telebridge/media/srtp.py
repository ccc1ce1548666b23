"""SRTP and SRTCP through libsrtp (pylibsrtp), and where the keys come from.

Rules of operation:

* One :class:`SrtpSession` per leg: an inbound libsrtp session keyed with
  the peer's master key and salt, an outbound one with ours. Replay
  protection is libsrtp's default (on, 128-packet window, RFC 3711 §3.3.2).
* Keys come from DTLS-SRTP (RFC 5764 §4.2: the exporter gives client key,
  server key, client salt, server salt) or from SDES ``a=crypto`` lines
  (RFC 4568 §9.1, ``inline:`` base64 of key || salt).
* Failures are :class:`SrtpError` (authentication, replay, garbage, a
  packet too long); the relay drops and counts them.
* Per packet, libsrtp is called straight through pylibsrtp's binding with
  a buffer and length cell made once per session: pylibsrtp's own
  ``Session.protect`` allocates per call (bench/results/2026-12-05-relay-n.md).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from typing import Any, Callable

import pylibsrtp
from pylibsrtp._binding import ffi, lib


# Room for any datagram the media sockets read (telebridge.media.udp_sockets) plus the longest trailer.
BUFFER_SIZE = 8192 + pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN
_CDATA, _LENGTH = ffi.new("char[]", BUFFER_SIZE), ffi.new("int *")
_BUFFER = ffi.buffer(_CDATA)


class SrtpError(Exception):
    """A packet libsrtp refused, or keying that cannot be used."""


@dataclass(frozen=True, slots=True)
class Profile:
    """An SRTP protection profile and its key sizes."""

    name: str  # the SDES crypto-suite / DTLS-SRTP profile name
    libsrtp: int
    key_length: int
    salt_length: int


PROFILES = {
    p.name: p
    for p in (
        Profile("AES_CM_128_HMAC_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
        Profile("AES_CM_128_HMAC_SHA1_32", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14),
        Profile("AEAD_AES_128_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    )
}
# OpenSSL's names for the DTLS-SRTP profiles (RFC 5764 §4.1.2, RFC 7714 §14.2).
DTLS_PROFILE_NAMES = {
    b"SRTP_AES128_CM_SHA1_80": "AES_CM_128_HMAC_SHA1_80",
    b"SRTP_AES128_CM_SHA1_32": "AES_CM_128_HMAC_SHA1_32",
    b"SRTP_AEAD_AES_128_GCM": "AEAD_AES_128_GCM",
}


def _libsrtp_call(
    session: pylibsrtp.Session, function: Callable[[Any, Any, Any], int], trailer: int, what: str
) -> Callable[[bytes | bytearray], bytes]:
    """``function`` (srtp_protect and the like) on ``session``'s libsrtp context, as one
    Python call per packet. The caller keeps ``session`` alive: it frees the context.

    ``pylibsrtp.Session.protect`` and friends cost a type check, a fresh ``int *``
    and a helper call per packet on top of libsrtp; here the work happens in one
    buffer and length cell shared by every session (libsrtp keeps nothing in them
    between calls, and all media runs on the reactor's thread), which also stays
    in cache from one call's packet to the next. The buffer takes any packet the
    media sockets read; a longer one is refused as an :class:`SrtpError`, not a
    ``ValueError``.
    """
    context, cdata, length, buffer = session._srtp[0], _CDATA, _LENGTH, _BUFFER
    limit = BUFFER_SIZE - trailer

    def call(data: bytes | bytearray) -> bytes:
        size = len(data)
        if size > limit:
            raise SrtpError(f"{what} failed: {size}-byte packet is too long")
        buffer[0:size] = data
        length[0] = size
        status = function(context, cdata, length)
        if status:
            raise SrtpError(f"{what} failed: {_reason(status)}")
        return buffer[0 : length[0]]

    return call


def _reason(status: int) -> str:
    return pylibsrtp.ERRORS[status] if 0 <= status < len(pylibsrtp.ERRORS) else f"libsrtp status {status}"


class SrtpSession:
    """Protect what we send, unprotect what we receive (packets as ``bytes`` or ``bytearray``).

    Each operation is a function made when the keys are, one Python call per packet.
    """

    #: RTP -> SRTP.
    protect: Callable[[bytes | bytearray], bytes]
    #: SRTP -> RTP; replays and forgeries raise.
    unprotect: Callable[[bytes | bytearray], bytes]
    #: RTCP -> SRTCP.
    protect_rtcp: Callable[[bytes | bytearray], bytes]
    #: SRTCP -> RTCP.
    unprotect_rtcp: Callable[[bytes | bytearray], bytes]

    def __init__(self, profile: Profile, local_master: bytes, remote_master: bytes) -> None:
        size = profile.key_length + profile.salt_length
        if len(local_master) != size or len(remote_master) != size:
            raise SrtpError(f"{profile.name} needs {size} bytes of key and salt")
        self.profile = profile
        rx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=remote_master, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile.libsrtp)
        )
        tx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=local_master, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.libsrtp)
        )
        self._libsrtp = (rx, tx)  # the contexts live as long as this session
        self.protect = _libsrtp_call(tx, lib.srtp_protect, pylibsrtp.SRTP_MAX_TRAILER_LEN, "protect")
        self.unprotect = _libsrtp_call(rx, lib.srtp_unprotect, 0, "unprotect")
        self.protect_rtcp = _libsrtp_call(tx, lib.srtp_protect_rtcp, pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN, "protect_rtcp")
        self.unprotect_rtcp = _libsrtp_call(rx, lib.srtp_unprotect_rtcp, 0, "unprotect_rtcp")

    @classmethod
    def from_dtls(cls, profile_name: bytes, exported: bytes, we_are_client: bool) -> SrtpSession:
        """Keys from the DTLS exporter (RFC 5764 §4.2)."""
        name = DTLS_PROFILE_NAMES.get(profile_name)
        if name is None:
            raise SrtpError(f"unsupported DTLS-SRTP profile {profile_name!r}")
        profile = PROFILES[name]
        k, s = profile.key_length, profile.salt_length
        if len(exported) != 2 * (k + s):
            raise SrtpError("wrong amount of exported keying material")
        client_key, server_key = exported[:k], exported[k : 2 * k]
        client_salt, server_salt = exported[2 * k : 2 * k + s], exported[2 * k + s :]
        client, server = client_key + client_salt, server_key + server_salt
        return cls(profile, client if we_are_client else server, server if we_are_client else client)


@dataclass(frozen=True, slots=True)
class SdesCrypto:
    """One ``a=crypto`` line (RFC 4568 §9.1)."""

    tag: int
    profile: Profile
    master: bytes  # key || salt

    def __str__(self) -> str:
        inline = base64.b64encode(self.master).decode()
        return f"{self.tag} {self.profile.name} inline:{inline}"


def parse_crypto(value: str) -> SdesCrypto:
    """Parse the value of ``a=crypto:`` (without the attribute name); total."""
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit() or len(parts[0]) > 9:
        raise SrtpError("a=crypto needs a tag, a suite and key parameters")
    profile = PROFILES.get(parts[1])
    if profile is None:
        raise SrtpError(f"unsupported crypto suite {parts[1][:40]!r}")
    # Only the first key; "|lifetime|MKI" suffixes are not supported (MKI changes the packet format).
    key_param = parts[2].split(";")[0]
    if not key_param.startswith("inline:"):
        raise SrtpError("only inline keys are supported")
    key_text = key_param[len("inline:") :]
    if "|" in key_text:
        key_text, _, rest = key_text.partition("|")
        if any(":" in piece for piece in rest.split("|")):
            raise SrtpError("MKI is not supported")
    try:
        master = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise SrtpError("inline key is not base64") from None
    if len(master) != profile.key_length + profile.salt_length:
        raise SrtpError(f"inline key has {len(master)} bytes, {profile.name} needs {profile.key_length + profile.salt_length}")
    return SdesCrypto(int(parts[0]), profile, master)


def new_crypto(tag: int, profile_name: str = "AES_CM_128_HMAC_SHA1_80") -> SdesCrypto:
    """Our own SDES key for a plain SIP leg (RFC 4568)."""
    profile = PROFILES[profile_name]
    return SdesCrypto(tag, profile, secrets.token_bytes(profile.key_length + profile.salt_length))

