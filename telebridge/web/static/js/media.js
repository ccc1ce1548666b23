// A call's media in the browser: one RTCPeerConnection with an audio
// transceiver (and a video one when the camera is on), and the offers and
// answers it makes.
//
// Rules of operation:
// * No trickle ICE: gateways and PBXs read candidates from the SDP (RFC
//   7118 clients all do this), so every offer and answer waits for ICE
//   gathering to complete, bounded by `gatherTimeoutMs` so that a dead
//   STUN/TURN server cannot stall call set-up for long (JsSIP#804).
// * Signalling operations run one at a time, in call order: a 2xx's answer
//   never overtakes the 183's provisional one still being applied.
// * bundlePolicy "balanced" and rtcpMuxPolicy "require", as telebridge's
//   ICE-lite side expects; iceTransportPolicy "relay" when asked (TURN tests).
// * An offer or answer without a single candidate is refused with
//   NoCandidates: an ICE-lite gateway never sends checks itself (RFC 8445
//   §2.5), so the call could never connect and would sit silent. It happens
//   when relay-only media meets a TURN server that refuses our credentials
//   or cannot be reached (the icecandidateerror codes tell which).
// * Every remote track joins one remote stream: the gateway's SDP carries no
//   msid, so the browser gives each track a stream of its own, and the page
//   plays the audio and shows the video of the same call.
// * Hold and resume change the direction of every transceiver.

// ICE gathering ended with no candidate; `turnErrors` are the STUN error
// codes the TURN servers answered with (401: credentials refused).
export class NoCandidates extends Error {
  constructor(turnErrors) {
    super(`no ICE candidates (TURN errors: ${turnErrors.join(", ") || "none"})`);
    this.name = "NoCandidates";
    this.turnErrors = turnErrors;
  }
}

export class MediaSession {
  constructor({ iceServers = [], relayOnly = false, video = false, gatherTimeoutMs = 5000, onRemoteStream = () => {} } = {}) {
    this.config = {
      iceServers,
      bundlePolicy: "balanced",
      rtcpMuxPolicy: "require",
      iceTransportPolicy: relayOnly ? "relay" : "all",
    };
    this.video = video;
    this.gatherTimeoutMs = gatherTimeoutMs;
    this.onRemoteStream = onRemoteStream;
    this.pc = null;
    this.localStream = null;
    this.remoteStream = null;
    this.transceiver = null;
    this.agreedDirection = "sendrecv";
    this.turnErrors = [];
    this.chain = Promise.resolve();
  }

  // Run `operation` after every operation queued before it.
  serial(operation) {
    const result = this.chain.then(operation);
    this.chain = result.catch(() => {});
    return result;
  }

  async open() {
    if (this.pc) return;
    const camera = this.video ? { width: { ideal: 640 }, height: { ideal: 480 } } : false;
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: camera });
    this.pc = new RTCPeerConnection(this.config);
    // addTrack, not addTransceiver: only a transceiver made by addTrack is
    // reused for the m-line of its kind in a remote offer (JSEP §5.10), so an
    // answered call sends our microphone (and camera) rather than nothing.
    let audioSender = null;
    for (const track of this.localStream.getTracks()) {
      const sender = this.pc.addTrack(track, this.localStream);
      if (track.kind === "audio") audioSender = sender;
    }
    this.transceiver = this.pc.getTransceivers().find((t) => t.sender === audioSender);
    this.pc.addEventListener("icecandidateerror", (event) => this.turnErrors.push(event.errorCode));
    this.pc.addEventListener("track", (event) => {
      if (!this.remoteStream) this.remoteStream = new MediaStream();
      if (!this.remoteStream.getTracks().includes(event.track)) this.remoteStream.addTrack(event.track);
      this.onRemoteStream(this.remoteStream);
    });
  }

  // Our offer, complete with candidates; `direction` puts the call on hold
  // ("sendonly") or takes it off ("sendrecv").
  createOffer({ direction, iceRestart = false } = {}) {
    return this.serial(async () => {
      if (direction) this.setDirection(direction);
      // An ICE restart gathers anew: wait for that gathering to end, not
      // for the "complete" the previous one left behind.
      const regathered = iceRestart ? this.gatheringEnds() : null;
      await this.pc.setLocalDescription(await this.pc.createOffer({ iceRestart }));
      if (regathered) await regathered;
      return this.gatheredSdp();
    });
  }

  acceptOffer(sdp) {
    return this.serial(async () => {
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      const answer = await this.gatheredSdp();
      this.agreedDirection = this.transceiver.direction;
      return answer;
    });
  }

  // A 183's SDP is a provisional answer (early media); the 2xx's is final.
  applyAnswer(sdp, { provisional = false } = {}) {
    return this.serial(async () => {
      await this.pc.setRemoteDescription({ type: provisional ? "pranswer" : "answer", sdp });
      if (!provisional) this.agreedDirection = this.transceiver.direction;
    });
  }

  // Our offer was refused: back to the last agreed state.
  rollback() {
    return this.serial(async () => {
      if (this.pc.signalingState !== "stable") await this.pc.setLocalDescription({ type: "rollback" });
      this.setDirection(this.agreedDirection);
    });
  }

  setDirection(direction) {
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.currentDirection !== "stopped") transceiver.direction = direction;
    }
  }

  get hasVideo() {
    return Boolean(this.remoteStream && this.remoteStream.getVideoTracks().length);
  }

  // Whether the far side put the call on hold (RFC 3264 §8.4): its offer
  // said sendonly or inactive, so we may no longer send.
  get remoteHolding() {
    const current = this.transceiver && this.transceiver.currentDirection;
    return current === "recvonly" || current === "inactive";
  }

  mute(muted) {
    for (const track of this.localStream ? this.localStream.getAudioTracks() : []) track.enabled = !muted;
  }

  // RFC 4733 events through RTCDTMFSender; false when the call cannot carry them.
  sendDtmf(digits) {
    const dtmf = this.transceiver && this.transceiver.sender.dtmf;
    if (!dtmf || !dtmf.canInsertDTMF) return false;
    dtmf.insertDTMF(digits, 100, 70);
    return true;
  }

  close() {
    if (this.pc) this.pc.close();
    for (const track of this.localStream ? this.localStream.getTracks() : []) track.stop();
  }

  // Our local description once gathering is over, refused without candidates.
  async gatheredSdp() {
    await this.gathered();
    const sdp = this.pc.localDescription.sdp;
    if (!/^a=candidate:/m.test(sdp)) throw new NoCandidates(this.turnErrors);
    return sdp;
  }

  gathered() {
    return this.pc.iceGatheringState === "complete" ? Promise.resolve() : this.gatheringEnds();
  }

  // The next time gathering reaches "complete" (or the gathering timeout).
  gatheringEnds() {
    const pc = this.pc;
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") finish();
      };
      const finish = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const timer = setTimeout(finish, this.gatherTimeoutMs);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }
}
