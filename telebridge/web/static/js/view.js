// The page: shows the softphone's state and turns clicks into its methods.
// Every render reads the whole state, so nothing on screen can go stale.

const REGISTRATION_TEXT = {
  unregistered: "not signed in",
  registering: "registering…",
  registered: "registered",
  failed: "not registered",
};

const CALL_TEXT = {
  idle: "No call",
  calling: "Calling…",
  ringing: "Ringing…",
  incoming: "Incoming call",
  connected: "Connected",
  ended: "Call ended",
};

const $ = (id) => document.getElementById(id);

function show(element, visible) {
  element.hidden = !visible;
}

function duration(ms) {
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  const rest = String(seconds % 60).padStart(2, "0");
  return minutes >= 60 ? `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

function peerName(call) {
  if (!call || !call.invite) return "";
  const party = call.outgoing ? call.invite.to : call.invite.from;
  return party.display || party.uri.replace(/^sips?:/, "").replace(/;.*$/, "");
}

export class View {
  constructor(phone) {
    this.phone = phone;
    this.timer = null;
    this.audio = $("remote-audio");
    this.video = $("remote-video");
  }

  // Run `action`; whatever goes wrong is shown as the error.
  async guard(action) {
    try {
      await action();
    } catch (error) {
      this.phone.lastError = error.message;
      this.render();
    }
  }

  bind({ devTokens }) {
    const phone = this.phone;
    show($("dev-form"), devTokens);
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.guard(() => phone.signIn($("token").value));
    });
    $("dev-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.guard(() => phone.signInDev($("dev-user").value.trim()));
    });
    $("sign-out").addEventListener("click", () => this.guard(() => phone.signOut()));
    $("dial-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.guard(() => phone.call($("target").value));
    });
    $("answer").addEventListener("click", () => this.guard(() => phone.activeCall().answer()));
    $("reject").addEventListener("click", () => this.guard(() => phone.activeCall().reject()));
    $("hangup").addEventListener("click", () => this.guard(() => phone.activeCall().hangup()));
    $("hold").addEventListener("click", () => {
      this.guard(() => (phone.activeCall().held ? phone.activeCall().resume() : phone.activeCall().hold()));
    });
    $("mute").addEventListener("click", () => this.guard(() => phone.activeCall().mute(!phone.activeCall().muted)));
    $("camera").addEventListener("change", (event) => {
      phone.camera = event.target.checked;
      this.render();
    });
    $("keypad").addEventListener("click", (event) => {
      const digit = event.target.dataset && event.target.dataset.digit;
      if (digit) this.guard(() => phone.activeCall().sendDtmf(digit));
    });
  }

  // One stream for the call: the audio element plays it, the (muted) video
  // element shows it once it has a video track.
  playRemote(stream) {
    this.audio.srcObject = stream;
    if (stream.getVideoTracks().length && this.video.srcObject !== stream) this.video.srcObject = stream;
    this.render();
  }

  render() {
    const phone = this.phone;
    const signedIn = phone.registrationState !== "unregistered" && phone.user !== null;
    const badge = $("registration");
    badge.dataset.state = phone.registrationState;
    badge.textContent = phone.notice || REGISTRATION_TEXT[phone.registrationState];
    show($("sign-in"), !signedIn || phone.registrationState === "failed");
    show($("phone"), signedIn);
    $("me").textContent = phone.user || "";

    const error = $("error");
    error.textContent = phone.lastError;
    show(error, Boolean(phone.lastError));

    const call = phone.current;
    const state = phone.callState;
    $("call").dataset.state = state;
    let status = CALL_TEXT[state];
    if (call && state !== "ended") status += ` ${peerName(call)}`;
    if (call && state === "ended") {
      if (call.error) status = `Call failed: ${call.error}`;
      else if (call.note) status = `Call ended: ${call.note}`;
    }
    if (call && call.held) status += " (on hold)";
    if (call && call.remoteHeld) status += " (held by the other side)";
    $("call-status").textContent = status;

    const connected = state === "connected";
    show($("answer"), state === "incoming");
    show($("reject"), state === "incoming");
    show($("hangup"), ["calling", "ringing", "connected"].includes(state));
    show($("hold"), connected);
    show($("mute"), connected);
    show($("keypad"), connected);
    show(this.video, connected && Boolean(call && call.media.hasVideo));
    $("camera").checked = phone.camera;
    $("camera").disabled = phone.busy;
    $("hold").setAttribute("aria-pressed", String(Boolean(call && call.held)));
    $("hold").textContent = call && call.held ? "Resume" : "Hold";
    $("mute").setAttribute("aria-pressed", String(Boolean(call && call.muted)));
    $("mute").textContent = call && call.muted ? "Unmute" : "Mute";
    $("call-button").disabled = phone.registrationState !== "registered" || phone.busy;
    this.renderTimer(call, connected);
  }

  renderTimer(call, connected) {
    const tick = () => {
      const until = call && (call.endedAt ?? Date.now());
      $("call-timer").textContent = call && call.connectedAt ? duration(until - call.connectedAt) : "";
    };
    tick();
    if (connected && this.timer === null) this.timer = setInterval(tick, 1000);
    if (!connected && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}
