"""SRTP through libsrtp: RFC 3711 Appendix B vectors, DTLS and SDES keying."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from telebridge.media.srtp import PROFILES, SrtpError, SrtpSession, new_crypto, parse_crypto

VECTOR = dict(
    line.split(" = ")
    for line in (Path(__file__).resolve().parents[1] / "vectors/srtp/aes_cm_128_hmac_sha1_80.txt").read_text().splitlines()
    if " = " in line
)
V = {k: bytes.fromhex(v) for k, v in VECTOR.items()}
PROFILE = PROFILES["AES_CM_128_HMAC_SHA1_80"]


def rfc3711_kdf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 §4.3.1 with key_derivation_rate 0: AES-CM keystream at (salt ^ label<<48) * 2^16."""
    x = int.from_bytes(master_salt, "big") ^ (label << 48)
    iv = (x << 16).to_bytes(16, "big")
    encryptor = Cipher(algorithms.AES(master_key), modes.CTR(iv)).encryptor()
    return encryptor.update(b"\x00" * length)


def test_rfc3711_b3_key_derivation_vectors() -> None:
    """RFC 3711 Appendix B.3: the session keys derived from the master key and salt."""
    assert rfc3711_kdf(V["master_key"], V["master_salt"], 0x00, 16) == V["session_cipher_key"]
    assert rfc3711_kdf(V["master_key"], V["master_salt"], 0x02, 14) == V["session_salt"]
    assert rfc3711_kdf(V["master_key"], V["master_salt"], 0x01, 20) == V["session_auth_key"]


def test_libsrtp_protects_to_the_known_answer() -> None:
    """With the B.3 master key, our session's output is the reference SRTP packet."""
    master = V["master_key"] + V["master_salt"]
    session = SrtpSession(PROFILE, local_master=master, remote_master=master)
    assert session.protect(V["rtp"]) == V["srtp"]
    assert session.unprotect(V["srtp"]) == V["rtp"]


def test_replay_and_tampering_are_refused() -> None:
    """RFC 3711 §3.3.2: a replayed or altered packet raises SrtpError."""
    master = V["master_key"] + V["master_salt"]
    sender = SrtpSession(PROFILE, master, master)
    receiver = SrtpSession(PROFILE, master, master)
    packet = sender.protect(V["rtp"])
    receiver.unprotect(packet)
    with pytest.raises(SrtpError):
        receiver.unprotect(packet)
    tampered = bytearray(sender.protect(V["rtp"][:2] + b"\x12\x35" + V["rtp"][4:]))
    tampered[15] ^= 1
    with pytest.raises(SrtpError):
        receiver.unprotect(bytes(tampered))
    with pytest.raises(SrtpError):
        receiver.unprotect(b"\x80\x00garbage")


def test_a_bytearray_goes_in_as_it_is_and_an_oversized_packet_is_an_srtp_error() -> None:
    """The relay hands its rewritten bytearray straight in; a datagram longer than the
    session's buffer (up to the media sockets' 8 KiB read, plus the trailer) is refused
    as a packet libsrtp would refuse, and the session keeps working."""
    master = V["master_key"] + V["master_salt"]
    sender, receiver = SrtpSession(PROFILE, master, master), SrtpSession(PROFILE, master, master)
    assert sender.protect(bytearray(V["rtp"])) == V["srtp"]
    huge = V["rtp"][:4] + b"\x00\x00\x00\x01" + V["rtp"][8:12] + bytes(8192)
    with pytest.raises(SrtpError, match="too long"):
        sender.protect(huge)
    with pytest.raises(SrtpError, match="too long"):
        receiver.unprotect_rtcp(bytes(9000))
    assert receiver.unprotect(bytearray(V["srtp"])) == V["rtp"]
    big = V["rtp"][:2] + b"\x90\x00" + V["rtp"][4:12] + bytes(8000)  # large but legal, a later seq
    assert receiver.unprotect(sender.protect(big)) == big


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_dtls_keying_both_directions(name: str) -> None:
    """RFC 5764 §4.2: client key, server key, client salt, server salt; each side's tx is the other's rx."""
    profile = PROFILES[name]
    dtls_name = {"AES_CM_128_HMAC_SHA1_80": b"SRTP_AES128_CM_SHA1_80", "AES_CM_128_HMAC_SHA1_32": b"SRTP_AES128_CM_SHA1_32", "AEAD_AES_128_GCM": b"SRTP_AEAD_AES_128_GCM"}[name]
    exported = bytes(range(2 * (profile.key_length + profile.salt_length)))
    client = SrtpSession.from_dtls(dtls_name, exported, we_are_client=True)
    server = SrtpSession.from_dtls(dtls_name, exported, we_are_client=False)
    rtp = struct.pack("!BBHII", 0x80, 111, 1, 960, 42) + b"opus" * 10
    assert server.unprotect(client.protect(rtp)) == rtp
    assert client.unprotect(server.protect(rtp)) == rtp
    rtcp = struct.pack("!BBHI", 0x81, 201, 1, 42) + b"\x00" * 24
    assert server.unprotect_rtcp(client.protect_rtcp(rtcp)) == rtcp


def test_sdes_crypto_line_round_trip() -> None:
    """RFC 4568 §9.1: ``tag suite inline:base64(key||salt)``."""
    ours = new_crypto(1)
    parsed = parse_crypto(str(ours))
    assert parsed == ours and len(parsed.master) == 30


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1 AES_CM_128_HMAC_SHA1_80",
        "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
        "1 F8_128_HMAC_SHA1_80 inline:AAAA",
        "1 AES_CM_128_HMAC_SHA1_80 uri:http://x",
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "|2^20|1:4",
    ],
)
def test_bad_crypto_lines_raise_srtp_error(value: str) -> None:
    """Every bad a=crypto is one typed error."""
    with pytest.raises(SrtpError):
        parse_crypto(value)
