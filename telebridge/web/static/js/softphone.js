// The softphone: signing in, the user agent's life across reconnects, and
// one call at a time. app.js exposes it as window.softphone and view.js
// shows it; neither holds any state of its own.
//
// Rules of operation:
// * Signing in first asks /api/ice-servers with the token: a 401 there is
//   "the gateway refused your token", which a failed WebSocket handshake
//   could never tell the page.
// * Each reconnect re-checks the token the same way (and, signed in with a
//   dev token, fetches a fresh one first), so an expired token stops the
//   retries instead of hammering the gateway.
// * A second incoming call while one is active gets 486.

import { Call } from "./call.js";
import { CONNECTION_LOST, TOKEN_REFUSED } from "./failures.js";
import { TokenRefused, fetchDevToken, fetchIceServers, tokenClaims } from "./gateway.js";
import { MediaSession } from "./media.js";
import { randomToken } from "./sip/message.js";
import { Registration } from "./sip/registration.js";
import { SipSocket } from "./sip/socket.js";
import { UserAgent } from "./sip/ua.js";

const UNREGISTER_WAIT_MS = 2000;

export class Softphone {
  constructor({ domain, instanceId, relayOnly = false, onChange = () => {}, onRemoteStream = () => {} }) {
    this.domain = domain;
    this.instanceId = instanceId;
    this.relayOnly = relayOnly;
    this.onChange = onChange;
    this.onRemoteStream = onRemoteStream;
    this.registrationState = "unregistered";
    this.lastError = "";
    this.notice = "";
    this.user = null;
    this.token = null;
    this.devUser = null;
    this.iceServers = [];
    this.ua = null;
    this.socket = null;
    this.registration = null;
    this.current = null;
    this.remoteStream = null;
    // Whether the next call (made or answered) sends the camera too.
    this.camera = false;
  }

  get callState() {
    return this.current ? this.current.state : "idle";
  }

  get busy() {
    return this.current !== null && this.current.state !== "ended";
  }

  changed() {
    this.onChange();
  }

  fail(message) {
    if (this.busy) this.current.end(message);
    if (this.registration) this.registration.connectionLost();
    this.registrationState = "failed";
    this.lastError = message;
    this.notice = "";
    if (this.socket) this.socket.close();
    this.changed();
  }

  // ---- signing in and out --------------------------------------------------

  async signIn(token, { devUser = null } = {}) {
    await this.signOut();
    let claims;
    try {
      claims = tokenClaims(token);
    } catch (error) {
      this.fail(error.message);
      return false;
    }
    this.token = token.trim();
    this.user = claims.sub;
    this.devUser = devUser;
    this.lastError = "";
    this.registrationState = "registering";
    this.changed();
    try {
      this.iceServers = await fetchIceServers(this.token);
    } catch (error) {
      this.fail(error instanceof TokenRefused ? TOKEN_REFUSED : `cannot reach the gateway (${error.message})`);
      return false;
    }
    this.startUserAgent();
    return true;
  }

  async signInDev(user) {
    await this.signOut();
    let token;
    try {
      token = await fetchDevToken(user);
    } catch (error) {
      this.fail(error.message);
      return false;
    }
    return this.signIn(token, { devUser: user });
  }

  startUserAgent() {
    const ua = new UserAgent({
      user: this.user,
      domain: this.domain,
      instanceId: this.instanceId,
      transmit: (text) => socket.send(text),
    });
    ua.onInvite = (request, entry) => this.incoming(request, entry);
    const registration = new Registration(ua, { onChange: () => this.registrationChanged(registration) });
    let firstAttempt = true;
    const socket = new SipSocket({
      connectUrl: async () => {
        if (!firstAttempt) await this.renewToken();
        firstAttempt = false;
        const scheme = location.protocol === "https:" ? "wss" : "ws";
        return `${scheme}://${location.host}/sip?token=${encodeURIComponent(this.token)}`;
      },
      onOpen: () => registration.register(),
      onMessage: (text) => ua.receive(text),
      onDown: (info) => this.connectionDown(info),
      onGiveUp: (error) => this.fail(error instanceof TokenRefused ? TOKEN_REFUSED : error.message),
    });
    this.ua = ua;
    this.registration = registration;
    this.socket = socket;
    socket.start();
  }

  async renewToken() {
    if (this.devUser) this.token = await fetchDevToken(this.devUser);
    this.iceServers = await fetchIceServers(this.token);
  }

  registrationChanged(registration) {
    if (registration !== this.registration) return;
    this.registrationState = registration.state;
    if (registration.state === "registered") this.notice = "";
    if (registration.error) this.lastError = registration.error;
    this.changed();
  }

  connectionDown({ final, delayMs }) {
    this.ua.setReady(false);
    if (this.current) this.current.connectionLost();
    this.registration.connectionLost();
    if (final) {
      // A clean close: the gateway has ended our calls already.
      if (this.busy) this.current.end("the gateway closed the connection");
      this.registrationState = "unregistered";
      this.lastError = "the gateway closed the connection";
      this.notice = "";
    } else {
      this.notice = `${CONNECTION_LOST}; reconnecting in ${Math.ceil(delayMs / 1000)} s`;
    }
    this.changed();
  }

  async signOut() {
    const { socket, registration } = this;
    if (socket) {
      if (this.busy) this.current.hangup();
      const unregistered = registration.unregister();
      await Promise.race([unregistered, new Promise((resolve) => setTimeout(resolve, UNREGISTER_WAIT_MS))]);
      socket.close();
    }
    this.ua = this.socket = this.registration = null;
    this.user = this.token = this.devUser = null;
    this.registrationState = "unregistered";
    this.notice = "";
    this.changed();
  }

  // The page is going away: hang up and unregister without waiting. The
  // browser then closes the WebSocket with 1001 itself.
  pageHidden() {
    if (!this.socket) return;
    if (this.busy) this.current.hangup();
    this.registration.unregister({ wait: false });
  }

  // A deliberate abnormal close, for reconnect tests.
  dropSocket() {
    if (!this.socket) throw new Error("not signed in");
    this.socket.drop();
  }

  // ---- calls ---------------------------------------------------------------

  targetUri(target) {
    const text = String(target || "").trim();
    if (!text || /\s/.test(text)) throw new Error("enter a number, a user name or a SIP address");
    if (/^sips?:/i.test(text)) return text;
    if (text.includes("@")) return `sip:${text}`;
    return `sip:${text}@${this.domain}`;
  }

  newCall() {
    const media = new MediaSession({
      iceServers: this.iceServers,
      relayOnly: this.relayOnly,
      video: this.camera,
      onRemoteStream: (stream) => {
        this.remoteStream = stream;
        this.onRemoteStream(stream);
      },
    });
    const call = new Call(this.ua, media, () => {
      if (call !== this.current) return;
      if (call.error) this.lastError = call.error;
      this.changed();
    });
    this.current = call;
    this.remoteStream = null;
    return call;
  }

  call(target) {
    if (this.registrationState !== "registered") throw new Error("sign in before calling");
    if (this.busy) throw new Error("there is a call already");
    const uri = this.targetUri(target);
    this.lastError = "";
    this.newCall().dial(uri);
  }

  incoming(request, entry) {
    if (this.busy) {
      this.ua.respond(entry, 486, { toTag: randomToken(10) });
      return;
    }
    this.lastError = "";
    this.newCall().receiveInvite(request, entry);
  }

  activeCall() {
    if (!this.busy) throw new Error("there is no call");
    return this.current;
  }
}
