// Entry point: reads the URL, builds the softphone and its view, and
// exposes window.softphone, the stable surface tests and automation drive.
//
// URL parameters: ?token=JWT signs in with a token; ?user=NAME&dev=1 signs
// in with a dev token; ?relay=1 sends media through TURN only
// (iceTransportPolicy "relay"); ?domain=D is the SIP domain (default: this
// page's host name).

import { devTokensOffered } from "./gateway.js";
import { Softphone } from "./softphone.js";
import { View } from "./view.js";

const INSTANCE_KEY = "telebridge.instance-id";

// RFC 5626 §4.1: one instance id per device, kept across page loads so
// that the gateway recognises the page when it comes back.
function instanceId() {
  const valid = /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  let id = null;
  try {
    id = localStorage.getItem(INSTANCE_KEY);
    if (!id || !valid.test(id)) {
      id = `urn:uuid:${crypto.randomUUID()}`;
      localStorage.setItem(INSTANCE_KEY, id);
    }
  } catch {
    // Storage refused (a privacy mode): an id for this page's life only.
    id = id || `urn:uuid:${crypto.randomUUID()}`;
  }
  return id;
}

const params = new URLSearchParams(location.search);
let view = null;
const phone = new Softphone({
  domain: params.get("domain") || location.hostname,
  instanceId: instanceId(),
  relayOnly: params.get("relay") === "1",
  onChange: () => view && view.render(),
  onRemoteStream: (stream) => view && view.playRemote(stream),
});
view = new View(phone);

window.softphone = {
  get state() {
    const call = phone.current;
    return {
      registration: phone.registrationState,
      call: phone.callState,
      held: Boolean(call && call.held),
      remoteHeld: Boolean(call && call.remoteHeld),
      muted: Boolean(call && call.muted),
    };
  },
  get lastError() {
    return phone.lastError;
  },
  get lastStatus() {
    return phone.current ? phone.current.status : null;
  },
  get user() {
    return phone.user;
  },
  get instanceId() {
    return phone.instanceId;
  },
  get pc() {
    return phone.current ? phone.current.media.pc : null;
  },
  get remoteStream() {
    return phone.remoteStream;
  },
  signIn: (token) => phone.signIn(token),
  signInDev: (user) => phone.signInDev(user),
  signOut: () => phone.signOut(),
  call: async (target) => phone.call(target),
  answer: () => phone.activeCall().answer(),
  reject: async () => phone.activeCall().reject(),
  hangup: async () => phone.activeCall().hangup(),
  hold: () => phone.activeCall().hold(),
  resume: () => phone.activeCall().resume(),
  restartIce: () => phone.activeCall().restartIce(),
  mute: async (muted = true) => phone.activeCall().mute(Boolean(muted)),
  sendDtmf: async (digits) => phone.activeCall().sendDtmf(String(digits)),
  dropSocket: async () => phone.dropSocket(),
  setCamera: async (on = true) => {
    phone.camera = Boolean(on);
    view.render();
  },
};

// pagehide, not beforeunload: it also fires when a mobile browser discards
// the tab, and it does not stop the page from entering the back/forward cache.
window.addEventListener("pagehide", () => phone.pageHidden());

async function start() {
  view.bind({ devTokens: await devTokensOffered() });
  view.render();
  const token = params.get("token");
  const user = params.get("user");
  if (token) {
    // Keep the token out of the history and of anything copied from the address bar.
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
    await phone.signIn(token);
  } else if (user && params.get("dev") === "1") {
    document.getElementById("dev-user").value = user;
    await phone.signInDev(user);
  }
}

start();
