"""SDES keying of one plain SRTP stream (RFC 4568), sans-I/O.

Each RTP/SAVP m-line carries its own ``a=crypto`` lines: our key for what
we send, the peer's for what it sends. The peer's line is the first whose
suite we share (the same suite as ours, once we have offered one); when we
answer, our key takes the tag and suite the peer chose. A changed peer key
(a re-INVITE's re-key) gives a new SRTP session; an unchanged one keeps the
current session, and so its replay window and rollover counter.
"""

from __future__ import annotations

from telebridge.media.srtp import SdesCrypto, SrtpError, SrtpSession, new_crypto, parse_crypto


class NoUsableKey(Exception):
    """The m-line is not RTP/SAVP, or none of its ``a=crypto`` lines can be used."""


class SdesKeys:
    """One stream's keys: ours (offered, or made when answering) and the peer's."""

    def __init__(self, ours: SdesCrypto | None = None) -> None:
        self.ours = ours
        self._peer_master = b""

    def session(self, proto: str, crypto_lines: list[str], current: SrtpSession | None) -> SrtpSession:
        """The SRTP session for the peer's ``a=crypto`` lines (``current`` if its key is unchanged)."""
        theirs = None
        for value in crypto_lines:
            try:
                candidate = parse_crypto(value)
            except SrtpError:
                continue
            if self.ours is None or candidate.profile == self.ours.profile:
                theirs = candidate
                break
        if proto != "RTP/SAVP" or theirs is None:
            raise NoUsableKey("no usable SDES key (RTP/SAVP, a=crypto)")
        if self.ours is None or self.ours.tag != theirs.tag:
            master = (self.ours or new_crypto(theirs.tag, theirs.profile.name)).master
            self.ours = SdesCrypto(theirs.tag, theirs.profile, master)
        if current is not None and theirs.master == self._peer_master:
            return current
        self._peer_master = theirs.master
        return SrtpSession(theirs.profile, self.ours.master, theirs.master)
