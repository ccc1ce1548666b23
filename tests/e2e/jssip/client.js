// A JsSIP user agent set up the way an app embedding JsSIP sets it up, with
// nothing but the gateway's WebSocket URL (?token=JWT) and the user's URI:
// no password, no gateway-specific code. Tests drive it as
// window.jssipClient and read window.jssipClient.state.
"use strict";

(() => {
  const state = {
    registration: "unregistered",
    registerStatus: null,
    registerCause: "",
    call: "idle",
    callCause: "",
  };
  let ua = null;
  let session = null;
  let remoteStream = null;

  // Chromium only feeds a remote WebRTC track into WebAudio while it also
  // plays somewhere, so the stream goes to an <audio> element as apps do.
  const audio = document.body.appendChild(document.createElement("audio"));
  function play(stream) {
    remoteStream = stream;
    audio.srcObject = stream;
    audio.play().catch(() => {});
  }

  window.jssipClient = {
    state,
    get remoteStream() {
      return remoteStream;
    },

    // authorizationJwt: the whole Authorization value JsSIP puts on its
    // requests (its authorization_jwt option), "Bearer <JWT>".
    start({ wsUrl, uri, authorizationJwt = null }) {
      const configuration = { sockets: [new JsSIP.WebSocketInterface(wsUrl)], uri };
      if (authorizationJwt) configuration.authorization_jwt = authorizationJwt;
      ua = new JsSIP.UA(configuration);
      state.registration = "registering";
      ua.on("registered", (event) => {
        state.registration = "registered";
        state.registerStatus = event.response.status_code;
      });
      ua.on("registrationFailed", (event) => {
        state.registration = "failed";
        state.registerStatus = event.response ? event.response.status_code : null;
        state.registerCause = String(event.cause);
      });
      ua.start();
    },

    call(target) {
      state.call = "calling";
      state.callCause = "";
      remoteStream = null;
      session = ua.call(target, {
        mediaConstraints: { audio: true, video: false },
        eventHandlers: {
          // Handlers given here are attached before JsSIP makes the
          // RTCPeerConnection, so its "track" event cannot be missed.
          peerconnection: (event) => {
            event.peerconnection.addEventListener("track", (track) => play(track.streams[0] || new MediaStream([track.track])));
          },
          confirmed: () => {
            state.call = "connected";
          },
          failed: (event) => {
            state.call = "failed";
            state.callCause = String(event.cause);
          },
          ended: (event) => {
            state.call = "ended";
            state.callCause = String(event.cause);
          },
        },
      });
    },

    hangup() {
      session.terminate();
    },

    // JsSIP's default DTMF transport: one SIP INFO per digit (application/dtmf-relay).
    sendDtmf(tones) {
      session.sendDTMF(tones);
    },

    stop() {
      ua.stop();
    },
  };
})();
