"""The media half of one call: a relay bridge and the SDP each side sees.

Rules of operation:

* One bridge per call: a WebRTC leg toward the browser (ICE-lite,
  DTLS-SRTP, rtcp-mux) and a plain leg toward the SIP side, on ports from
  the shared pool. Ports are taken when the first offer arrives and given
  back by :meth:`CallMedia.close`, whatever ends the call.
* The first audio m-line is relayed, and the first video m-line when both
  sides share VP8 or H.264 (:mod:`telebridge.media.video`): the browser
  sends it inside the audio's BUNDLE, the SIP side gets a plain video leg
  on a port pair of its own (with its own SDES key when the SIP leg is
  SRTP). A browser video stream outside the audio's BUNDLE group is refused
  (port 0), as are all other m-lines, on both sides.
* The browser sees one answer for the whole call: the first SDP from the
  SIP side (a 183 or the 200) makes it, and later SDP from that side
  (another fork's, a re-INVITE's) only moves the plain leg. That is what
  keeps one SRTP context and one SSRC toward the browser (INTEROP.md 4, 5).
* DTLS role follows ``a=setup`` (RFC 5763 §5): passive when the browser
  offered, and as the browser's answer says when we offered actpass.
* Media timeouts run only once the call is answered: ringing has no media.
* Transcoding, only where the two sides share no voice codec (and
  ``transcoding`` is on): the first answer decides, once per call. The
  browser is then shown its own Opus where the SIP side has PCMU, PCMA or
  G.722 (and the SIP side its own codec), and a
  :class:`~telebridge.media.transcode.Transcoder` runs each way. The
  browser's RFC 4733 digits are regenerated toward the SIP side at its
  payload type and clock.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from twisted.internet.interfaces import IReactorTime

from telebridge.media.dtls import DtlsCertificate, DtlsEndpoint
from telebridge.media.dtmf_events import EventReader
from telebridge.media.ice import IceLiteAgent, new_credentials
from telebridge.media.inband_dtmf import InbandDigits
from telebridge.media.legs import OutgoingStream, PlainLeg, WebrtcLeg, use_clock_rate
from telebridge.media.quality import StreamQuality, call_quality
from telebridge.media.recording import CallRecording
from telebridge.media.recording_tap import RecordingTap
from telebridge.media.relay import MediaBridge, PortPool
from telebridge.media.sdes import NoUsableKey, SdesKeys
from telebridge.media.srtp import SdesCrypto, new_crypto
from telebridge.media.transcode import Transcoder
from telebridge.media.udp_sockets import UdpSocketSet
from telebridge.media.video import VIDEO_CLOCK, VideoPath
from telebridge.media.voice_codecs import RTP_CLOCK, make_decoder, make_encoder, pcm_rate_between
from telebridge.sdp import Codec, Media, SdpError, SessionDescription, fingerprint, ice_credentials, parse_sdp
from telebridge.sdp_translation import (
    KEYFRAME_FEEDBACK,
    WebrtcTransport,
    offered,
    payload_type_map,
    relayable_video,
    with_codecs,
    plain_answer_from_webrtc,
    plain_offer_from_webrtc,
    webrtc_answer_from_plain,
    webrtc_offer_from_plain,
)


class MediaRefused(Exception):
    """The offer or answer cannot be relayed; ``status`` is the SIP answer (488)."""

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# What a browser is offered for a SIP INVITE without SDP (see offer_for_delayed_offer).
G711_OFFER = (
    "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)


def _first_audio(session: SessionDescription) -> int:
    for index, media in enumerate(session.media):
        if media.kind == "audio" and offered(session, media):
            return index
    raise MediaRefused("no audio stream offered")


def _ports_for(session: SessionDescription, ports: dict[int, int]) -> list[int | None]:
    """Our plain port for each m-line (``ports``: by m-line index), None for the refused ones."""
    return [ports.get(i) for i in range(len(session.media))]


def _relayable_video(session: SessionDescription, audio: int, webrtc: bool) -> int | None:
    """The first video m-line the gateway can relay: VP8 or H.264, from a browser in the
    audio's BUNDLE group (one transport for both), from the SIP side over RTP or SDES-SRTP."""
    for index, media in enumerate(session.media):
        if media.kind != "video" or not offered(session, media) or not any(relayable_video(c) for c in media.codecs()):
            continue
        if webrtc:
            mids = {session.media[audio].mid, media.mid}
            return index if any(mids <= set(group) for group in session.bundle_groups) else None
        return index if media.proto in ("RTP/AVP", "RTP/SAVP") else None
    return None


def _payload_types(media: Media) -> set[int]:
    return {int(f) for f in media.formats if f.isdigit()}


def _renumbering(sip: Media, browser: Media) -> dict[int, int]:
    """SIP payload type -> our browser offer's, where it had to move (the same codecs, in order)."""
    relayed = [c for c in sip.codecs() if sip.kind == "audio" or relayable_video(c)]
    return {s.payload_type: b.payload_type for s, b in zip(relayed, browser.codecs()) if s.payload_type != b.payload_type}


def _video_payload_types(session: SessionDescription, audio: int, video: int) -> set[int]:
    """The payload types that mean video on the bundled transport: the video m-line's,
    less any the audio m-line also claims (a BUNDLE must not share them, RFC 9143 §7.5.1;
    audio wins where a client does)."""
    return _payload_types(session.media[video]) - _payload_types(session.media[audio])


def _address(session: SessionDescription, media: Media) -> tuple[str, int]:
    host = media.connection
    if host is None:
        session_c = [value.split() for kind, value in session.lines if kind == "c"]
        host = session_c[0][2] if session_c and len(session_c[0]) == 3 else None
    if host is None:
        raise MediaRefused("the SDP has no connection address")
    host = host.split("/")[0]
    try:
        # An IP literal only: a name would need a DNS lookup on the packet path.
        ipaddress.ip_address(host)
    except ValueError:
        raise MediaRefused(f"the SDP's connection address {host[:60]!r} is not an IP address") from None
    return host, media.port


def _clock_rate(media: Media) -> int:
    codecs = media.codecs()
    if not codecs:
        raise MediaRefused("no codec in common")
    return codecs[0].clock_rate


NOT_VOICE = ("telephone-event", "cn", "red", "ulpfec", "rtx")
PACKET_TIMES_MS = (10, 20, 30, 40, 60)


def _first_voice(media: Media) -> Codec | None:
    return next((c for c in media.codecs() if c.name.lower() not in NOT_VOICE), None)


def _is_voice(payload_type: int, media: Media) -> bool:
    return any(c.payload_type == payload_type and c.name.lower() not in NOT_VOICE for c in media.codecs())


def _events_at(media: Media, clock_rate: int) -> list[Codec]:
    """telephone-event at ``clock_rate`` in ``media`` (none or one, in practice)."""
    return [c for c in media.codecs() if c.name.lower() == "telephone-event" and c.clock_rate == clock_rate][:1]


def _ptime_ms(media: Media) -> int:
    value = media.attribute("ptime") or ""
    return int(value) if value.isdigit() and int(value) in PACKET_TIMES_MS else 20


def _with_audio(session: SessionDescription, index: int, media: Media) -> SessionDescription:
    return SessionDescription(list(session.lines), [media if i == index else m for i, m in enumerate(session.media)])


def _codec_names(media: Media) -> dict[int, str]:
    return {c.payload_type: c.name.lower() for c in media.codecs()}


def _parse(sdp: bytes, who: str) -> SessionDescription:
    """``sdp`` parsed, its rtpmap lines included (read lazily elsewhere), or a 400."""
    try:
        session = parse_sdp(sdp)
        for media in session.media:
            media.codecs()
    except (SdpError, UnicodeDecodeError) as e:
        raise MediaRefused(f"bad SDP from the {who}: {e}", status=400) from None
    return session


class CallMedia:
    """A call's bridge, built from whichever side offers first."""

    def __init__(
        self,
        reactor: IReactorTime,
        pool: PortPool,
        sockets: UdpSocketSet,
        certificate: DtlsCertificate,
        address: str,
        on_end: Callable[[str], None],
        media_timeout: float = 30.0,
        latch_window: float = 2.0,
        new_session_id: Callable[[], int] = lambda: secrets.randbits(48),
        transcoding: bool = False,
        inband_dtmf: bool = False,
        sip_srtp: str = "never",
    ) -> None:
        self.reactor = reactor
        self.pool = pool
        self.sockets = sockets
        self.certificate = certificate
        self.address = address
        self.on_end = on_end
        self.media_timeout = media_timeout
        self.latch_window = latch_window
        self.session_id = new_session_id()
        self.bridge: MediaBridge | None = None
        self._browser_offer: SessionDescription | None = None
        self._plain_offer: SessionDescription | None = None
        self._browser_answer: bytes | None = None
        self._plain_answer: bytes | None = None
        self._sip_answer: SessionDescription | None = None
        #: The plain SDP the SIP side last got from us (our offer or our answer).
        self._plain_sent: SessionDescription | None = None
        self._audio = 0
        #: The relayed video m-line's index, while video is relayed.
        self._video: int | None = None
        #: Per m-line, SIP payload type -> the one our browser offer gave it instead (BUNDLE uniqueness).
        self._renumbered: dict[int, dict[int, int]] = {}
        self._transport: WebrtcTransport | None = None
        self._answered = False
        self._delayed = False
        self.transcoding = transcoding
        self.inband_dtmf = inband_dtmf
        self.sip_srtp = sip_srtp
        #: SDES keys of the SIP side's audio and video (RTP/SAVP), when that leg is encrypted.
        self._audio_keys: SdesKeys | None = None
        self._video_keys: SdesKeys | None = None
        #: The SIP side's SDP as the browser is shown it (its own codec, or Opus when transcoded).
        self._sip_for_browser: SessionDescription | None = None
        #: The browser's answer to our offer (a call the SIP side started).
        self._browser_answered: SessionDescription | None = None
        self._recording: CallRecording | None = None

    # -- the browser offers (it calls out) -----------------------------------------

    def offer_from_browser(self, sdp: bytes, sip_transports: tuple[str, ...] = ()) -> bytes:
        """The plain offer for the SIP side, made from the browser's offer; RTP/SAVP with
        our SDES key when ``sip_srtp`` asks for it on these SIP transports."""
        offer = _parse(sdp, "browser")
        self._audio = _first_audio(offer)
        audio = offer.media[self._audio]
        credentials = ice_credentials(offer, audio)
        remote_fingerprint = fingerprint(offer, audio)
        if credentials is None or remote_fingerprint is None:
            raise MediaRefused("the browser's offer lacks ICE credentials or a DTLS fingerprint")
        # A trial translation (on the discard port) says whether any codec can
        # go to the SIP side before any port is taken.
        plain_offer = plain_offer_from_webrtc(
            offer, _ports_for(offer, {self._audio: 9}), self.address, self.session_id, transcoding=self.transcoding
        )
        if not plain_offer.media[self._audio].port:
            raise MediaRefused("no codec the SIP side could take")
        # Our DTLS role: passive, unless the browser insists on being passive itself.
        dtls_client = (offer.media_attribute(audio, "setup") or "actpass") == "passive"
        self._build(credentials, remote_fingerprint, dtls_client, None, _clock_rate(plain_offer.media[self._audio]))
        assert self.bridge is not None
        if self.sip_srtp == "always" or (self.sip_srtp == "tls" and sip_transports and set(sip_transports) == {"TLS"}):
            self._audio_keys = SdesKeys(new_crypto(1))
        self._video = _relayable_video(offer, self._audio, webrtc=True)
        if self._video is not None:
            self._add_video(_video_payload_types(offer, self._audio, self._video), None)
            if self._audio_keys is not None:
                self._video_keys = SdesKeys(new_crypto(1))
        plain_offer = plain_offer_from_webrtc(
            offer, self._plain_ports(offer), self.address, self.session_id,
            crypto=self._crypto_per_stream(offer), transcoding=self.transcoding,
        )
        self._browser_offer = offer
        self._plain_sent = plain_offer
        return str(plain_offer).encode()

    def answer_from_sip(self, sdp: bytes) -> bytes:
        """The browser's answer; the first SIP answer makes it, later ones only move the plain leg."""
        answer, media = self._answer_to(self._browser_offer, sdp, "SIP side")
        assert self._browser_offer is not None and self.bridge is not None
        if not media.port or not media.formats:
            raise MediaRefused("the SIP side rejected the audio stream")
        self.bridge.plain.set_remote(_address(answer, media), self.reactor.seconds())  # type: ignore[attr-defined]
        if self._audio_keys is not None:
            self._key_plain_leg(self.bridge.plain, self._audio_keys, media, "answered")
        browser_media = self._browser_offer.media[self._audio]
        self._sip_answer = answer
        first = self._browser_answer is None
        if first:
            view = self._browser_view_of_answer(answer, media, browser_media)
            # Kept only when transcoding: a relayed call follows the latest SIP answer.
            self._sip_for_browser = view if view is not answer else None
            assert self._transport is not None
            browser = webrtc_answer_from_plain(self._browser_offer, view, self._transport, self.session_id)
            if not browser.media[self._audio].port:
                raise MediaRefused("no codec in common")
            self._browser_answer = str(browser).encode()
        if self.bridge.transcoders is None:
            for leg in (self.bridge.plain, self.bridge.webrtc):
                use_clock_rate(leg, _clock_rate(media))  # type: ignore[arg-type]
            self._map_payload_types(media, browser_media, self.bridge.webrtc.outgoing, self.bridge.plain.outgoing)
        if self._video is not None:
            self._video_answered(answer.media[self._video], self._browser_offer.media[self._video], first)
        return self._browser_answer

    def _video_answered(self, video: Media, browser_video: Media, first: bool) -> None:
        """The SIP answer's video: the first answer decides whether it is relayed (the
        browser's answer says so), later ones only move where it goes."""
        bridge = self.bridge
        assert bridge is not None and bridge.video_plain is not None and bridge.webrtc.video is not None
        if not video.port or not video.formats:
            if first:
                self._drop_video()
            return
        bridge.video_plain.set_remote(_address(self._sip_answer, video), self.reactor.seconds())  # type: ignore[arg-type, attr-defined]
        if self._video_keys is not None:
            self._key_plain_leg(bridge.video_plain, self._video_keys, video, "answered")
        if first:
            self._map_payload_types(video, browser_video, bridge.webrtc.video.outgoing, bridge.video_plain.outgoing)

    def _plain_ports(self, session: SessionDescription) -> list[int | None]:
        assert self.bridge is not None
        ports = {self._audio: self.bridge.plain_port}
        if self._video is not None and self.bridge.video_port is not None:
            ports[self._video] = self.bridge.video_port
        return _ports_for(session, ports)

    def _add_video(self, payload_types: set[int], remote: tuple[str, int] | None) -> None:
        """A plain video leg toward the SIP side, and the browser leg's video path."""
        assert self.bridge is not None
        plain = PlainLeg(remote=remote, outgoing=OutgoingStream.new(VIDEO_CLOCK), latch_window=self.latch_window, media_timeout=None)
        self.bridge.add_video(VideoPath(payload_types), plain)

    def _drop_video(self) -> None:
        """The video stream was refused: its ports go back now, and it is refused from now on."""
        assert self.bridge is not None
        self.bridge.drop_video()
        self._video = None

    def _crypto_per_stream(self, session: SessionDescription) -> list[SdesCrypto | None] | None:
        """Our a=crypto for each m-line of the SIP side's SDP (None: plain RTP throughout)."""
        keys = {self._audio: self._audio_keys, self._video: self._video_keys}
        if not any(k is not None for k in keys.values()):
            return None
        return [k.ours if (k := keys.get(i)) is not None else None for i in range(len(session.media))]

    @staticmethod
    def _key_plain_leg(leg: PlainLeg, keys: SdesKeys, media: Media, what: str) -> None:
        """SRTP toward the SIP side from the m-line's a=crypto (RFC 4568)."""
        try:
            leg.srtp = keys.session(media.proto, [value or "" for value in media.attributes("crypto")], leg.srtp)
        except NoUsableKey as e:
            raise MediaRefused(f"the SIP side {what} {media.kind} with {e}") from None

    def _browser_view_of_answer(self, answer: SessionDescription, media: Media, browser_media: Media) -> SessionDescription:
        """The SIP answer as the browser is to see it; starts transcoding when they share no voice codec."""
        voice = _first_voice(media)
        if voice is None:
            raise MediaRefused("no voice codec in the SIP side's answer")
        browser_codecs = browser_media.codecs()
        if any(voice.same_codec(c) for c in browser_codecs):
            return answer
        opus = next((c for c in browser_codecs if c.name.lower() == "opus" and c.clock_rate == 48000), None)
        if not self.transcoding or opus is None or voice.name.lower() not in RTP_CLOCK:
            raise MediaRefused("no codec in common")
        sip_events = _events_at(media, voice.clock_rate)
        browser_events = _events_at(browser_media, 48000) if sip_events else []
        # A browser may still send a codec of its offer that the SIP side also took.
        shared = {b: s for s, b in payload_type_map(media, browser_media).items() if _is_voice(b, browser_media)}
        self._transcode(browser=(opus, browser_events), sip=(voice, sip_events), sip_ptime_ms=_ptime_ms(media), to_sip_as_is=shared)
        return _with_audio(answer, self._audio, with_codecs(media, browser_media, [opus, *browser_events]))

    def _transcode(
        self, browser: tuple[Codec, list[Codec]], sip: tuple[Codec, list[Codec]], sip_ptime_ms: int, to_sip_as_is: dict[int, int]
    ) -> None:
        """Opus toward the browser, the SIP side's codec toward it, a Transcoder each way."""
        assert self.bridge is not None
        (opus, browser_events), (voice, sip_events) = browser, sip
        name = voice.name.lower()
        rate = pcm_rate_between("opus", name)
        to_plain = Transcoder(
            make_decoder("opus", rate), make_encoder(name, rate, sip_ptime_ms), opus.payload_type, voice.payload_type,
            source_clock=48000, sink_clock=RTP_CLOCK[name],
            event_payload_type=browser_events[0].payload_type if browser_events else None, sink_name=voice.name,
            passthrough=to_sip_as_is,
        )
        to_webrtc = Transcoder(
            make_decoder(name, rate), make_encoder("opus", rate), voice.payload_type, opus.payload_type,
            source_clock=RTP_CLOCK[name], sink_clock=48000,
            event_payload_type=sip_events[0].payload_type if sip_events else None,
        )
        to_plain.on_digit = lambda digit, duration_ms: self._dtmf_toward_sip(digit, duration_ms)
        if browser_events:
            # The SIP side's events, regenerated at the browser's telephone-event and clock.
            event = browser_events[0]
            to_webrtc.on_digit = lambda digit, duration_ms: self._dtmf_toward_browser(digit, duration_ms, event)
        self.bridge.transcode(to_plain, to_webrtc)
        use_clock_rate(self.bridge.webrtc, 48000)
        use_clock_rate(self.bridge.plain, RTP_CLOCK[name])

    def _dtmf_toward_sip(self, digit: str, duration_ms: int) -> None:
        self.send_dtmf(digit, duration_ms)

    def _dtmf_toward_browser(self, digit: str, duration_ms: int, event: Codec) -> None:
        if self.bridge is not None:
            self.bridge.send_dtmf_to_browser(digit, duration_ms, event.payload_type, event.clock_rate)

    @staticmethod
    def _map_payload_types(sip: Media, browser: Media, to_browser: OutgoingStream, to_sip: OutgoingStream) -> None:
        """Packets keep their codec across the relay when the two sides number it differently."""
        mapping = payload_type_map(sip, browser)
        to_browser.payload_types = {s: b for s, b in mapping.items() if s != b}
        to_sip.payload_types = {b: s for s, b in mapping.items() if s != b}

    def _answer_to(self, offer: SessionDescription | None, sdp: bytes, who: str) -> tuple[SessionDescription, Media]:
        """The answer from ``who`` to our ``offer``, checked to match it, and its audio stream."""
        answer = _parse(sdp, who)
        if offer is None or self.bridge is None:
            raise MediaRefused("no offer is pending")
        if len(answer.media) != len(offer.media):
            raise MediaRefused(f"the answer from the {who} has a different number of streams")
        return answer, answer.media[self._audio]

    # -- the SIP side offers (a call to the browser) -------------------------------

    def offer_from_sip(self, sdp: bytes) -> bytes:
        """The browser's offer (ICE-lite, actpass), made from the SIP side's offer."""
        offer = _parse(sdp, "SIP side")
        self._audio = _first_audio(offer)
        browser_offer = self._offer_to_browser(offer, _address(offer, offer.media[self._audio]))
        assert self.bridge is not None
        if offer.media[self._audio].proto == "RTP/SAVP":
            self._audio_keys = SdesKeys()
            self._key_plain_leg(self.bridge.plain, self._audio_keys, offer.media[self._audio], "offered RTP/SAVP")
        if self._video is not None and offer.media[self._video].proto == "RTP/SAVP":
            self._video_keys = SdesKeys()
            self._key_plain_leg(self.bridge.video_plain, self._video_keys, offer.media[self._video], "offered RTP/SAVP")  # type: ignore[arg-type]
        return browser_offer

    def offer_for_delayed_offer(self) -> bytes:
        """The browser's offer when the SIP side's INVITE had none (RFC 3261 §13.2.1).

        Our 200 to the SIP side then carries the offer (what the browser
        accepted) and its ACK the answer. Only G.711 is offered: every SIP
        peer takes it, so the codec it picks is one the browser sends.
        """
        self._delayed = True
        self._audio = 0
        return self._offer_to_browser(parse_sdp(G711_OFFER), None)

    def answer_in_ack(self, sdp: bytes) -> None:
        """The SIP side's answer, in the ACK of a delayed-offer call: where its media goes."""
        answer, media = self._answer_to(self._sip_offer_sent(), sdp, "SIP side")
        if not media.port or not media.formats:
            raise MediaRefused("the SIP side rejected the audio stream")
        assert self.bridge is not None
        self.bridge.plain.set_remote(_address(answer, media), self.reactor.seconds())  # type: ignore[attr-defined]
        self._sip_answer = answer
        self._follow_sip_direction(media)

    @property
    def delayed(self) -> bool:
        """Whether the SIP side's answer is still to come in its ACK."""
        return self._delayed and self._sip_answer is None

    def _sip_offer_sent(self) -> SessionDescription | None:
        return self._plain_sent if self._delayed else None

    def _offer_to_browser(self, offer: SessionDescription, remote: tuple[str, int] | None) -> bytes:
        media = offer.media[self._audio]
        video = _relayable_video(offer, self._audio, webrtc=False)
        video_remote = _address(offer, offer.media[video]) if video is not None else None
        self._build(None, None, False, remote, _clock_rate(media))
        assert self._transport is not None
        # Only the relayed m-lines go to the browser; the others are refused on both sides.
        relayed = {self._audio, video}
        kept = SessionDescription(list(offer.lines), [m if i in relayed else Media(m.kind, 0, m.proto, m.formats) for i, m in enumerate(offer.media)])
        browser_offer = webrtc_offer_from_plain(kept, self._transport, self.session_id, transcoding=self.transcoding)
        self._renumbered = {i: _renumbering(kept.media[i], browser_offer.media[i]) for i in relayed if i is not None}
        if video is not None:
            self._video = video
            self._add_video(_video_payload_types(browser_offer, self._audio, video), video_remote)
        self._plain_offer = kept
        return str(browser_offer).encode()

    def answer_from_browser(self, sdp: bytes) -> bytes:
        """The SIP side's answer once the browser answered our offer."""
        answer, media = self._answer_to(self._plain_offer, sdp, "browser")
        assert self._plain_offer is not None and self.bridge is not None
        credentials = ice_credentials(answer, media)
        remote_fingerprint = fingerprint(answer, media)
        if credentials is None or remote_fingerprint is None or not media.port:
            raise MediaRefused("the browser's answer lacks ICE, DTLS or audio")
        self._browser_answered = answer
        if self._video is not None and not (answer.media[self._video].port and answer.media[self._video].formats):
            self._drop_video()
        webrtc = self.bridge.webrtc
        webrtc.ice.set_remote_credentials(*credentials)
        if (answer.media_attribute(media, "setup") or "active") == "passive":
            # We must be the DTLS client; a passive browser has sent nothing yet.
            webrtc.dtls = DtlsEndpoint(self.certificate, is_client=True, remote_fingerprint=remote_fingerprint)
        else:
            # An active browser may have finished its handshake before its
            # answer reached us: keep it, and check the certificate now.
            webrtc.dtls.set_remote_fingerprint(remote_fingerprint)
        plain_view = self._in_sip_numbers(self._sip_view_of_answer(answer, media))
        self._map_renumbered()
        plain = plain_answer_from_webrtc(
            self._plain_offer, plain_view, self._plain_ports(answer), self.address, self.session_id,
            crypto=self._crypto_per_stream(self._plain_offer),
        )
        self._plain_answer = str(plain).encode()
        self._plain_sent = plain
        return self._plain_answer

    def _renumbered_streams(self) -> list[tuple[int, dict[int, int]]]:
        """The m-lines whose numbers we moved and the relay still sees as the browser numbers
        them (not a transcoded audio stream: its transcoders speak each side's own)."""
        assert self.bridge is not None
        return [
            (index, mapping) for index, mapping in self._renumbered.items()
            if mapping and not (index == self._audio and self.bridge.transcoders is not None)
        ]

    def _in_sip_numbers(self, answer: SessionDescription) -> SessionDescription:
        """The browser's answer with the payload types we renumbered given back their SIP numbers."""
        media = list(answer.media)
        for index, mapping in self._renumbered_streams():
            back = {str(b): str(s) for s, b in mapping.items()}
            m = media[index]
            media[index] = Media(m.kind, m.port, m.proto, [back.get(f, f) for f in m.formats], m.port_count, list(m.lines))
        return SessionDescription(list(answer.lines), media)

    def _map_renumbered(self) -> None:
        """The relay renumbers what crosses it, as our browser offer did."""
        assert self.bridge is not None
        streams = {self._audio: (self.bridge.webrtc.outgoing, self.bridge.plain.outgoing)}
        if self._video is not None and self.bridge.webrtc.video is not None and self.bridge.video_plain is not None:
            streams[self._video] = (self.bridge.webrtc.video.outgoing, self.bridge.video_plain.outgoing)
        for index, mapping in self._renumbered_streams():
            if index in streams:
                to_browser, to_sip = streams[index]
                to_browser.payload_types = dict(mapping)
                to_sip.payload_types = {b: s for s, b in mapping.items()}

    def _sip_view_of_answer(self, answer: SessionDescription, media: Media) -> SessionDescription:
        """The browser's answer as the SIP side is to see it; starts transcoding when the
        browser took the Opus we added to a SIP offer that had none."""
        assert self._plain_offer is not None
        sip_media = self._plain_offer.media[self._audio]
        voice = _first_voice(media)
        sip_codecs = sip_media.codecs()
        if voice is None or any(voice.same_codec(c) for c in sip_codecs) or voice.name.lower() != "opus":
            return answer
        sip_voice = next((c for c in sip_codecs if c.name.lower() in RTP_CLOCK), None)
        if sip_voice is None:
            raise MediaRefused("no codec in common")
        browser_events = _events_at(media, 48000)
        sip_events = _events_at(sip_media, sip_voice.clock_rate) if browser_events else []
        # The browser numbers the SIP side's codecs as the SIP offer does, and may send them.
        as_is = {c.payload_type: c.payload_type for c in sip_codecs if c.name.lower() not in NOT_VOICE}
        self._transcode(browser=(voice, browser_events), sip=(sip_voice, sip_events), sip_ptime_ms=_ptime_ms(sip_media), to_sip_as_is=as_is)
        self._sip_for_browser = _with_audio(self._plain_offer, self._audio, with_codecs(sip_media, media, [voice, *browser_events]))
        return _with_audio(answer, self._audio, with_codecs(media, sip_media, [sip_voice, *sip_events]))

    # -- later offers from the SIP side (hold, refresh, codec re-offer) ------------

    def reoffer_from_sip(self, sdp: bytes) -> bytes:
        """Answer the SIP side's re-INVITE ourselves; the browser is not disturbed."""
        offer = _parse(sdp, "SIP side")
        if self.bridge is None or len(offer.media) <= self._audio:
            raise MediaRefused("the re-offer does not match the call")
        # Checked before anything changes: a refused re-offer leaves the call as it was (RFC 3261 §14.2).
        kept = self._agreed_codecs_only(offer)
        media = offer.media[self._audio]
        if media.port:
            self.bridge.plain.set_remote(_address(offer, media), self.reactor.seconds())  # type: ignore[attr-defined]
            if self._audio_keys is not None:
                self._key_plain_leg(self.bridge.plain, self._audio_keys, media, "re-offered")  # a new key re-keys the leg
        self._follow_sip_direction(media)
        video = offer.media[self._video] if self._video is not None and self._video < len(offer.media) else None
        if video is not None and video.port and self.bridge.video_plain is not None:
            self.bridge.video_plain.set_remote(_address(offer, video), self.reactor.seconds())  # type: ignore[attr-defined]
            if self._video_keys is not None:
                self._key_plain_leg(self.bridge.video_plain, self._video_keys, video, "re-offered")
        if self.bridge.transcoders is None:
            browser = self._browser_offer or self._browser_answered
            if browser is not None:
                # The SIP side may number the same codecs anew (its numbers are the ones it sends).
                self._map_payload_types(kept.media[self._audio], browser.media[self._audio], self.bridge.webrtc.outgoing, self.bridge.plain.outgoing)
        ports = self._plain_ports(offer)
        answer = SessionDescription(list(offer.lines), kept.media)
        mirrored = plain_answer_from_webrtc(
            offer, _mirror_direction(answer), ports, self.address, self.session_id, crypto=self._crypto_per_stream(offer)
        )
        return str(mirrored).encode()

    def _agreed_codecs_only(self, offer: SessionDescription) -> SessionDescription:
        """The SIP side's re-offer with each relayed stream limited to the codecs this call
        agreed on that side: the browser is not asked again, so it sends what it sends.
        A stream left with no codec but telephone-event refuses the re-offer (488)."""
        agreed = self._sip_answer or self._plain_sent
        media = list(offer.media)
        for index in (self._audio, self._video):
            if index is None or agreed is None or index >= len(media) or index >= len(agreed.media) or not media[index].port:
                continue
            ours = agreed.media[index].codecs()
            keep = [c for c in media[index].codecs() if any(c.same_codec(a) for a in ours)]
            if not [c for c in keep if c.name.lower() != "telephone-event"]:
                names = ", ".join(sorted({c.name for c in ours if c.name.lower() != "telephone-event"}))
                raise MediaRefused(f"the re-offer's {media[index].kind} has none of the call's codecs ({names})")
            media[index] = with_codecs(media[index], media[index], keep)
        return SessionDescription(list(offer.lines), media)

    def reoffer_from_browser(self, sdp: bytes) -> bytes:
        """Answer the browser's re-INVITE (hold, ICE restart) from what the SIP side agreed."""
        offer = _parse(sdp, "browser")
        agreed = self._sip_side
        if self.bridge is None or self._transport is None or agreed is None or len(offer.media) != len(agreed.media):
            raise MediaRefused("the re-offer does not match the call")
        credentials = ice_credentials(offer, offer.media[self._audio])
        ice = self.bridge.webrtc.ice
        if credentials is not None and credentials != (ice.remote_ufrag, ice.remote_password):
            # An ICE restart: our side takes new credentials too (RFC 8445 §9).
            local = new_credentials()
            ice.restart(local, credentials)
            self._transport = replace(self._transport, ufrag=local[0], pwd=local[1])
        answer = webrtc_answer_from_plain(offer, agreed, self._transport, self.session_id)
        return str(answer).encode()

    def sip_reoffer(self, browser_sdp: bytes) -> bytes | None:
        """The re-offer for the SIP side when the browser's re-offer changes its direction
        (hold, resume), so the PBX can play music on hold; ``None`` when nothing changed."""
        try:
            offer = parse_sdp(browser_sdp)
        except (SdpError, UnicodeDecodeError):
            return None
        last = self._plain_sent
        if last is None or len(offer.media) <= self._audio or len(last.media) <= self._audio:
            return None
        wanted = offer.media[self._audio].direction
        if last.media[self._audio].direction == wanted:
            return None
        media = [Media(m.kind, m.port, m.proto, list(m.formats), m.port_count, list(m.lines)) for m in last.media]
        audio = media[self._audio]
        for direction in ("sendrecv", "sendonly", "recvonly", "inactive"):
            audio.remove_attribute(direction)
        audio.lines.append(("a", wanted))
        self._plain_sent = SessionDescription(_next_version(last.lines), media)
        return str(self._plain_sent).encode()

    def keyframe_from_browser(self) -> bool:
        """Ask the browser's camera for a keyframe (the SIP side asked by INFO); False without video."""
        return self.bridge is not None and self.bridge.keyframe_from_browser()

    def keyframes_by_info(self, ask: Callable[[], None]) -> None:
        """When the SIP side's video negotiated no keyframe feedback (RTCP PLI/FIR), the
        browser's keyframe requests also reach it as ``ask()`` (a SIP INFO, RFC 5168)."""
        sip = self._sip_answer or self._plain_offer
        if self.bridge is None or self.bridge.keyframes is None or self._video is None or sip is None:
            return
        feedback = {value.partition(" ")[2].strip() for value in sip.media[self._video].attributes("rtcp-fb")}
        if not feedback & set(KEYFRAME_FEEDBACK):
            self.bridge.keyframes.ask_sip_by_info = ask

    def digits_as_info(self, on_digit: Callable[[str, int], None]) -> None:
        """The browser's RFC 4733 digits go to ``on_digit`` (to become SIP INFO) instead of
        on to the SIP side as events."""
        browser = self._browser_offer or self._browser_answered
        if self.bridge is None or browser is None:
            return
        if self.bridge.transcoders is not None:
            self.bridge.transcoders[0].on_digit = on_digit
            return
        events = [c for c in browser.media[self._audio].codecs() if c.name.lower() == "telephone-event"]
        if events:
            self.bridge.catch_digits({c.payload_type: EventReader(c.clock_rate) for c in events}, on_digit)

    def send_dtmf(self, digit: str, duration_ms: int) -> bool:
        """Play a digit toward the SIP side as RFC 4733 events; False when the SIP
        side did not agree to telephone-event at the voice codec's rate."""
        agreed = self._sip_answer or self._plain_sent
        if self.bridge is None or agreed is None or len(agreed.media) <= self._audio:
            return False
        media = agreed.media[self._audio]
        codecs = media.codecs()
        voice = [c for c in codecs if c.name.lower() != "telephone-event"]
        events = [c for c in codecs if c.name.lower() == "telephone-event" and voice and c.clock_rate == voice[0].clock_rate]
        if not events:
            return False
        return self.bridge.send_dtmf(digit, duration_ms, events[0].payload_type, events[0].clock_rate)

    def current_plain_sdp(self) -> bytes | None:
        """What the SIP side last got from us, for a session refresh that changes nothing."""
        return str(self._plain_sent).encode() if self._plain_sent is not None else None

    def sip_reanswer(self, sdp: bytes) -> None:
        """The SIP side's answer to our re-offer: follow its address if it moved."""
        try:
            answer = parse_sdp(sdp)
        except (SdpError, UnicodeDecodeError):
            return
        if self.bridge is None or len(answer.media) <= self._audio or not answer.media[self._audio].port:
            return
        try:
            remote = _address(answer, answer.media[self._audio])
        except MediaRefused:
            return
        self.bridge.plain.set_remote(remote, self.reactor.seconds())  # type: ignore[attr-defined]
        self._follow_sip_direction(answer.media[self._audio])

    def _follow_sip_direction(self, media: Media) -> None:
        """Hold and resume on the SIP side: what it receives, and whether its silence is a fault."""
        assert self.bridge is not None
        self.bridge.follow_plain_direction(media.direction if media.port else "inactive", self._answered)

    @property
    def _sip_side(self) -> SessionDescription | None:
        """What the SIP side said about the streams (its answer, or its offer), as the browser sees it."""
        if self._sip_for_browser is not None:
            return self._sip_for_browser
        if self._sip_answer is not None:
            return self._sip_answer
        return self._plain_offer

    # -- common --------------------------------------------------------------------

    def answered(self) -> None:
        """The call is up: media timeouts start now (and in-band digit detection, if configured)."""
        self._answered = True
        if self.bridge is not None:
            self.bridge.expect_media(True)
            if self.inband_dtmf:
                self._detect_inband_digits()

    def _detect_inband_digits(self) -> None:
        """Tones in the SIP side's G.711 become RFC 4733 events toward the browser too,
        at the telephone-event the browser agreed for its voice codec's clock."""
        assert self.bridge is not None
        sip = self._sip_answer or self._plain_offer
        browser = self._browser_answered or (parse_sdp(self._browser_answer) if self._browser_answer else None)
        if sip is None or browser is None:
            return
        digits = InbandDigits(_codec_names(sip.media[self._audio]))
        clock = self.bridge.webrtc.outgoing.rewriter.clock_rate
        events = _events_at(browser.media[self._audio], clock)
        if digits.usable and events:
            self.bridge.detect_inband(digits, events[0].payload_type, clock)

    def record(self, folder: Path, call_id: str, caller: str, callee: str, caller_is_browser: bool) -> None:
        """Record both directions from now on (raises RecordingError when the file cannot be made)."""
        browser = self._browser_offer or self._browser_answered
        sip = self._sip_answer or self._plain_offer
        if self.bridge is None or browser is None or sip is None or self._recording is not None:
            return
        browser_codecs = _codec_names(browser.media[self._audio])
        sip_codecs = _codec_names(sip.media[self._audio])
        self._recording = recording = CallRecording.open(folder, call_id, caller, callee, time.time())
        # The codec each side sends: the answer's first voice codec, or Opus toward the browser when transcoded.
        answer = (self._sip_answer or self._browser_answered or sip).media[self._audio]
        agreed = _first_voice(answer)
        sip_name = self.bridge.transcoders[0].sink_name if self.bridge.transcoders else (agreed.name if agreed else "")
        browser_name = "opus" if self.bridge.transcoders else sip_name
        recording.codecs(*((browser_name, sip_name) if caller_is_browser else (sip_name, browser_name)))
        self.bridge.record(RecordingTap(recording, browser_codecs, sip_codecs, caller_is_browser))

    def quality(self) -> list[StreamQuality]:
        """Each relayed stream as each leg saw it (nothing before the call had media)."""
        bridge = self.bridge
        return call_quality(bridge.webrtc, bridge.plain, bridge.video_plain) if bridge is not None else []

    def close(self, reason: str) -> None:
        """Release the ports and finish the recording; idempotent."""
        if self.bridge is not None:
            self.bridge.close(reason)
        if self._recording is not None:
            self._recording.close(time.time(), reason)

    def _build(
        self,
        credentials: tuple[str, str] | None,
        remote_fingerprint: str | None,
        dtls_client: bool,
        plain_remote: tuple[str, int] | None,
        clock_rate: int,
    ) -> None:
        if self.bridge is not None:
            raise MediaRefused("the call already has media", status=491)
        ufrag, pwd = new_credentials()
        ice = IceLiteAgent(ufrag, pwd)
        if credentials is not None:
            ice.set_remote_credentials(*credentials)
        webrtc = WebrtcLeg(
            ice, self.certificate, dtls_client=dtls_client, remote_fingerprint=remote_fingerprint,
            outgoing=OutgoingStream.new(clock_rate), media_timeout=self.media_timeout,
        )
        plain = PlainLeg(
            remote=plain_remote, outgoing=OutgoingStream.new(clock_rate),
            latch_window=self.latch_window, media_timeout=self.media_timeout,
        )
        self.bridge = MediaBridge(self.reactor, self.pool, self.sockets, webrtc, plain, interface=self.address, on_end=self.on_end)
        self.bridge.expect_media(False)
        self._transport = WebrtcTransport(ufrag, pwd, self.certificate.fingerprint, self.address, self.bridge.webrtc_port)


def _next_version(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Session lines with the o= version one higher: a changed SDP (RFC 3264 §8)."""
    out = []
    for kind, value in lines:
        fields = value.split()
        if kind == "o" and len(fields) == 6 and fields[2].isdigit():
            fields[2] = str(int(fields[2]) + 1)
            value = " ".join(fields)
        out.append((kind, value))
    return out


def _mirror_direction(offer: SessionDescription) -> SessionDescription:
    """An offer turned into the answer we would give it: directions mirrored (RFC 3264 §6.1)."""
    mirrored = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive", "sendrecv": "sendrecv"}
    media = []
    for m in offer.media:
        copy = Media(m.kind, m.port, m.proto, list(m.formats))
        copy.lines = [line for line in m.lines if line[1] not in mirrored]
        copy.lines.append(("a", mirrored[m.direction]))
        media.append(copy)
    return SessionDescription(list(offer.lines), media)
