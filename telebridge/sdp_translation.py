"""WebRTC <-> plain SDP offer/answer translation (RFC 3264, RFC 8829), sans-I/O.

The gateway sits between a browser leg (``UDP/TLS/RTP/SAVPF``: ICE-lite,
DTLS-SRTP, rtcp-mux, BUNDLE) and a SIP leg (``RTP/AVP``, or ``RTP/SAVP``
with SDES when asked). Each direction is derived from the SDP itself, never
from flags a person must set right (rtpengine#1235, #983).

Rules of operation:

* m-lines keep their order and count on both legs (RFC 3264 §6); a stream
  one side rejects (port 0) is rejected toward the other.
* Audio offered toward the SIP leg: the browser's Opus, G.722, PCMU, PCMA
  and telephone-event/8000, in the browser's order and with its payload
  type numbers, so the answer maps back without a table. Video: VP8 and
  H.264. RED, CN, RTX, FEC and the rest stay on the browser side.
* Video feedback: only keyframe requests cross the gateway (``nack pli``,
  ``ccm fir``); NACK, REMB and transport-cc are not offered or answered,
  as nothing would act on them.
* The browser answer and the browser offer are ICE-lite (``a=ice-lite``),
  carry our ufrag/pwd, the SHA-256 fingerprint, ``a=setup:passive`` when
  answering and ``actpass`` when offering (RFC 5763 §5), ``a=rtcp-mux``,
  one host candidate and ``end-of-candidates`` (no trickle from us).
  BUNDLE: accepted when offered (all m-lines on one transport), and always
  offered by us (SIP.js requires it, INTEROP.md).
* The SIP leg never sees ICE, DTLS, msid, ssrc or extmap lines, nor rtcp-fb
  for audio.
* Transcoding (issue 5) is offered, never preferred: when transcoding is
  on, the codecs the gateway can make from Opus (PCMU, PCMA, G.722 and
  telephone-event/8000) are added *after* the browser's own to the SIP
  offer, and Opus after the SIP side's own to the browser offer. A peer
  that takes any codec of the other side picks it first and is relayed
  untouched; only one that takes none of them lands on an added codec.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from telebridge.media.srtp import SdesCrypto
from telebridge.sdp import Codec, Media, SdpError, SessionDescription

WEBRTC_PROTO = "UDP/TLS/RTP/SAVPF"
# RFC 4733 events run at their voice codec's clock: 48 kHz beside Opus, 8 kHz beside G.711/G.722.
AUDIO_FOR_SIP = {
    ("opus", 48000), ("g722", 8000), ("pcmu", 8000), ("pcma", 8000), ("telephone-event", 8000), ("telephone-event", 48000),
}
VIDEO_FOR_SIP = {("vp8", 90000), ("h264", 90000)}
CODEC_ATTRIBUTES = ("rtpmap", "fmtp", "rtcp-fb")
# The RTCP feedback the gateway relays for video (RFC 4585 §4.2, RFC 5104 §7.1).
KEYFRAME_FEEDBACK = ("nack pli", "ccm fir")


@dataclass(frozen=True, slots=True)
class WebrtcTransport:
    """Our side of the browser leg: ICE-lite credentials, DTLS fingerprint, one candidate."""

    ufrag: str
    pwd: str
    fingerprint: str
    address: str
    port: int


def _ip_version(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _session(address: str, session_id: int, version: int, webrtc: bool) -> SessionDescription:
    lines = [
        ("v", "0"),
        ("o", f"- {session_id} {version} IN {_ip_version(address)} {address}"),
        ("s", "telebridge"),
        ("t", "0 0"),
    ]
    if webrtc:
        lines.append(("a", "ice-lite"))
    return SessionDescription(lines=lines)


def relayable_video(codec: Codec) -> bool:
    """A video codec the gateway relays untouched (VP8, H.264)."""
    return (codec.name.lower(), codec.clock_rate) in VIDEO_FOR_SIP


def _wanted(media: Media, codec: Codec) -> bool:
    key = (codec.name.lower(), codec.clock_rate)
    return key in AUDIO_FOR_SIP if media.kind == "audio" else relayable_video(codec)


def _codec_lines(source: Media, payload_types: list[str]) -> list[tuple[str, str]]:
    """rtpmap/fmtp/rtcp-fb lines of ``source`` for these payload types (for video,
    only the keyframe requests among its rtcp-fb)."""
    wanted = set(payload_types)
    out = []
    for kind, value in source.lines:
        attr, _, rest = value.partition(":")
        if kind != "a" or attr not in CODEC_ATTRIBUTES:
            continue
        payload_type, _, parameters = rest.partition(" ")
        if payload_type not in wanted:
            continue
        if attr == "rtcp-fb" and source.kind == "video" and parameters.strip() not in KEYFRAME_FEEDBACK:
            continue
        out.append((kind, value))
    return out


def _rejected(source: Media, proto: str) -> Media:
    """``source`` refused (port 0). A non-RTP stream (a data channel) keeps its own
    proto and format: ``RTP/AVP webrtc-datachannel`` would be invalid SDP."""
    if not _is_rtp(source):
        return Media(source.kind, 0, source.proto, source.formats[:1] or ["0"])
    return Media(source.kind, 0, proto, source.formats[:1] or ["0"])


def _is_rtp(media: Media) -> bool:
    return media.kind in ("audio", "video") and "RTP" in media.proto


def offered(session: SessionDescription, media: Media) -> bool:
    """Whether an offer's m-line is wanted: a port, or port 0 with ``a=bundle-only``
    inside a BUNDLE group (Firefox's max-bundle, RFC 9143 §7.5.3), which is not a refusal."""
    if media.port:
        return True
    return media.has("bundle-only") and any(media.mid in group for group in session.bundle_groups)


def _webrtc_lines(transport: WebrtcTransport, setup: str, mid: str) -> list[tuple[str, str]]:
    ip = _ip_version(transport.address)
    return [
        ("c", f"IN {ip} {transport.address}"),
        ("a", f"mid:{mid}"),
        ("a", f"ice-ufrag:{transport.ufrag}"),
        ("a", f"ice-pwd:{transport.pwd}"),
        ("a", f"fingerprint:sha-256 {transport.fingerprint}"),
        ("a", f"setup:{setup}"),
        ("a", "rtcp-mux"),
        ("a", f"candidate:1 1 udp 2130706431 {transport.address} {transport.port} typ host"),
        ("a", "end-of-candidates"),
    ]


# What the gateway can transcode Opus to, with the static payload type each has (RFC 3551).
TRANSCODED_FOR_SIP = (("PCMU", 8000, 0), ("PCMA", 8000, 8), ("G722", 8000, 9))
OPUS_FMTP = "minptime=10;useinbandfec=1"


def _free_payload_type(media: Media, taken: set[int]) -> int | None:
    used = taken | {int(f) for f in media.formats if f.isdigit()}
    return next((pt for pt in [101, *range(96, 128)] if pt not in used), None)


def with_transcodable_codecs(media: Media) -> None:
    """Add, after what the browser offered, what we can transcode its Opus to."""
    codecs = media.codecs()
    if not any(c.name.lower() == "opus" for c in codecs):
        return
    have = {(c.name.lower(), c.clock_rate) for c in codecs}
    used = {int(f) for f in media.formats if f.isdigit()}
    for name, rate, static in TRANSCODED_FOR_SIP:
        if (name.lower(), rate) not in have and static not in used:
            media.formats.append(str(static))
            media.lines.append(("a", f"rtpmap:{static} {name}/{rate}"))
    if ("telephone-event", 8000) not in have and (pt := _free_payload_type(media, set())) is not None:
        media.formats.append(str(pt))
        media.lines += [("a", f"rtpmap:{pt} telephone-event/8000"), ("a", f"fmtp:{pt} 0-16")]


def with_opus(media: Media) -> None:
    """Add Opus (and telephone-event at its clock) after a SIP offer's codecs that lacks it."""
    codecs = media.codecs()
    names = {c.name.lower() for c in codecs}
    if "opus" in names or not names & {"pcmu", "pcma", "g722"}:
        return
    for name, rate, fmtp in (("opus", 48000, OPUS_FMTP), ("telephone-event", 48000, "0-16")):
        pt = _free_payload_type(media, set())
        if pt is None:
            return
        media.formats.append(str(pt))
        channels = "/2" if name == "opus" else ""
        media.lines += [("a", f"rtpmap:{pt} {name}/{rate}{channels}"), ("a", f"fmtp:{pt} {fmtp}")]


def with_codecs(media: Media, source: Media, codecs: list[Codec]) -> Media:
    """``media`` (its port, address, direction) carrying only ``codecs``, described as ``source`` does.

    What one side is shown when the other side's codec is transcoded: the
    browser sees its Opus where the SIP side answered PCMU, and so on."""
    out = Media(media.kind, media.port, media.proto, [str(c.payload_type) for c in codecs])
    out.lines = [line for line in media.lines if not (line[0] == "a" and line[1].partition(":")[0] in CODEC_ATTRIBUTES)]
    out.lines += _codec_lines(source, out.formats)
    return out


def plain_offer_from_webrtc(
    offer: SessionDescription,
    ports: list[int | None],
    address: str,
    session_id: int,
    crypto: list[SdesCrypto | None] | None = None,
    transcoding: bool = False,
) -> SessionDescription:
    """The SIP leg's offer for a browser's offer; ``ports[i]`` is our plain port for m-line i (None rejects it)."""
    if len(ports) != len(offer.media):
        raise SdpError("one port per m-line is needed")
    out = _session(address, session_id, 1, webrtc=False)
    for i, (media, port) in enumerate(zip(offer.media, ports)):
        keys = crypto[i] if crypto else None
        proto = "RTP/SAVP" if keys is not None else "RTP/AVP"
        codecs = [c for c in media.codecs() if _wanted(media, c)] if offered(offer, media) and media.proto == WEBRTC_PROTO else []
        if port is None or not codecs:
            out.media.append(_rejected(media, proto))
            continue
        formats = [str(c.payload_type) for c in codecs]
        plain = Media(media.kind, port, proto, formats)
        plain.lines.append(("c", f"IN {_ip_version(address)} {address}"))
        plain.lines += [line for line in _codec_lines(media, formats) if not line[1].startswith("rtcp-fb") or media.kind == "video"]
        if transcoding and media.kind == "audio":
            with_transcodable_codecs(plain)
        if media.attribute("ptime"):
            plain.lines.append(("a", f"ptime:{media.attribute('ptime')}"))
        plain.lines.append(("a", media.direction))
        if keys is not None:
            plain.lines.append(("a", f"crypto:{keys}"))
        out.media.append(plain)
    return out


def webrtc_answer_from_plain(
    offer: SessionDescription,
    plain_answer: SessionDescription,
    transport: WebrtcTransport,
    session_id: int,
) -> SessionDescription:
    """The browser's answer, built from its offer and the SIP leg's answer."""
    if len(plain_answer.media) != len(offer.media):
        raise SdpError("the SIP answer has a different number of m-lines")
    out = _session(transport.address, session_id, 1, webrtc=True)
    accepted_mids = []
    for index, (media, answered) in enumerate(zip(offer.media, plain_answer.media)):
        # The SIP side may number a codec differently from the browser's offer
        # (RFC 3264 §6.1 only says SHOULD): the browser hears its own numbers.
        mapping = payload_type_map(answered, media) if answered.port and _is_rtp(media) and _is_rtp(answered) else {}
        formats = [str(mapping[c.payload_type]) for c in answered.codecs() if c.payload_type in mapping] if mapping else []
        if not formats:
            out.media.append(_rejected(media, media.proto))
            continue
        mid = media.mid if media.mid is not None else str(index)
        accepted_mids.append(mid)
        m = Media(media.kind, transport.port, media.proto, formats)
        m.lines += _webrtc_lines(transport, "passive", mid)
        if media.has("rtcp-rsize"):
            m.lines.append(("a", "rtcp-rsize"))
        m.lines += _codec_lines(media, formats)
        m.lines.append(("a", _answer_direction(media.direction, answered.direction)))
        out.media.append(m)
    if offer.bundle_groups and accepted_mids:
        out.lines.append(("a", "group:BUNDLE " + " ".join(accepted_mids)))
    return out


def payload_type_map(answer: Media, offer: Media) -> dict[int, int]:
    """Each payload type of ``answer`` to the one ``offer`` used for the same codec
    (name, clock rate, channels); codecs the offer lacks are left out."""
    offered: dict[tuple[str, int, int], int] = {}
    for codec in offer.codecs():
        offered.setdefault((codec.name.lower(), codec.clock_rate, codec.channels), codec.payload_type)
    mapping = {}
    for codec in answer.codecs():
        match = offered.get((codec.name.lower(), codec.clock_rate, codec.channels))
        if match is not None:
            mapping[codec.payload_type] = match
    return mapping


def webrtc_offer_from_plain(
    plain_offer: SessionDescription, transport: WebrtcTransport, session_id: int, transcoding: bool = False
) -> SessionDescription:
    """The browser's offer for a call the SIP side started (we are actpass, ICE-lite, BUNDLE)."""
    out = _session(transport.address, session_id, 1, webrtc=True)
    mids = []
    taken: set[int] = set()
    for index, media in enumerate(plain_offer.media):
        codecs = [c for c in media.codecs() if media.kind == "audio" or relayable_video(c)] if media.port else []
        if not codecs or media.kind not in ("audio", "video"):
            out.media.append(_rejected(media, WEBRTC_PROTO))
            continue
        formats = [str(c.payload_type) for c in codecs]
        mid = str(index)
        mids.append(mid)
        m = Media(media.kind, transport.port, WEBRTC_PROTO, formats)
        m.lines += _webrtc_lines(transport, "actpass", mid)
        if transcoding and media.kind == "audio":
            extended = Media(media.kind, media.port, media.proto, list(media.formats), lines=list(media.lines))
            with_opus(extended)
            codecs = extended.codecs()
        codecs = _unique_in_bundle(codecs, taken)
        taken |= {c.payload_type for c in codecs}
        m.formats = [str(c.payload_type) for c in codecs]
        for codec in codecs:
            channels = f"/{codec.channels}" if codec.channels != 1 else ""
            m.lines.append(("a", f"rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}"))
            if codec.fmtp:
                m.lines.append(("a", f"fmtp:{codec.payload_type} {codec.fmtp}"))
            if media.kind == "video":
                # Without these the browser never asks for a keyframe, and a picture broken by loss stays broken.
                m.lines += [("a", f"rtcp-fb:{codec.payload_type} {feedback}") for feedback in KEYFRAME_FEEDBACK]
        m.lines.append(("a", media.direction))
        out.media.append(m)
    if mids:
        out.lines.append(("a", "group:BUNDLE " + " ".join(mids)))
    return out


def _unique_in_bundle(codecs: list[Codec], taken: set[int]) -> list[Codec]:
    """``codecs`` with each payload type an earlier m-line of the BUNDLE uses moved to a
    free dynamic one: plain SIP m-lines may share numbers (Linphone's audio and video
    both start at 96), a BUNDLE's may not (RFC 9143 §7.5.1)."""
    own = {c.payload_type for c in codecs}
    out = []
    for codec in codecs:
        if codec.payload_type in taken:
            free = next((pt for pt in range(96, 128) if pt not in taken and pt not in own), None)
            if free is None:
                continue  # no number left for it: the codec is not offered
            own.add(free)
            codec = replace(codec, payload_type=free)
        out.append(codec)
    return out


def plain_answer_from_webrtc(
    plain_offer: SessionDescription,
    browser_answer: SessionDescription,
    ports: list[int | None],
    address: str,
    session_id: int,
    crypto: list[SdesCrypto | None] | None = None,
) -> SessionDescription:
    """The SIP leg's answer once the browser answered our offer."""
    if len(browser_answer.media) != len(plain_offer.media) or len(ports) != len(plain_offer.media):
        raise SdpError("the browser answer has a different number of m-lines")
    out = _session(address, session_id, 1, webrtc=False)
    for i, (offered, answered, port) in enumerate(zip(plain_offer.media, browser_answer.media, ports)):
        keys = crypto[i] if crypto else None
        formats = [f for f in answered.formats if f in offered.formats] if answered.port else []
        if port is None or not formats:
            out.media.append(_rejected(offered, offered.proto))
            continue
        m = Media(offered.kind, port, offered.proto, formats)
        m.lines.append(("c", f"IN {_ip_version(address)} {address}"))
        m.lines += [line for line in _codec_lines(offered, formats) if not line[1].startswith("rtcp-fb")]
        m.lines.append(("a", answered.direction))
        if keys is not None:
            m.lines.append(("a", f"crypto:{keys}"))
        out.media.append(m)
    return out


def _answer_direction(offered: str, answered: str) -> str:
    """The browser answer's direction: what the SIP side answered, within what the browser offered (RFC 3264 §6.1)."""
    sends, receives = "send" in answered, "recv" in answered
    # Our answer's "send" is the SIP side sending to the browser.
    can_send = offered in ("sendrecv", "recvonly")
    can_receive = offered in ("sendrecv", "sendonly")
    send, recv = sends and can_send, receives and can_receive
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get((send, recv), "inactive")
