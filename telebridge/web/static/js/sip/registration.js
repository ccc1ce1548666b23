// Registration with the gateway (RFC 3261 §10.2, RFC 5626 §4.2).
//
// Rules of operation:
// * One contact with +sip.instance (kept in localStorage by the page) and
//   reg-id=1, and "Supported: path, outbound": the gateway keys the binding
//   by instance and reg-id, so a REGISTER from a new WebSocket after a
//   reconnect replaces the old flow instead of adding a second binding.
// * One Call-ID and From tag for the page's life, CSeq counting up
//   (§10.2.4): the registrar refuses a CSeq that goes backwards.
// * Refresh at the later of half the granted time and 30 s before it runs
//   out, so a slow reply cannot let the binding lapse.
// * 423 retries once with Min-Expires (§10.2.8). 408 and 5xx retry after
//   30 s; anything else (403: the token's user is not the From) fails.
// * Unregistering removes only our own contact (expires=0), never "*":
//   the user's other devices keep their bindings.

import { describeFailure } from "../failures.js";
import { Headers, SipRequest, parseNameAddr, randomToken } from "./message.js";

const RETRY_MS = 30000;

export class Registration {
  constructor(ua, { expires = 600, onChange = () => {} } = {}) {
    this.ua = ua;
    this.expires = expires;
    this.onChange = onChange;
    this.state = "unregistered";
    this.error = "";
    this.callId = randomToken(20);
    this.fromTag = randomToken(10);
    this.cseq = 0;
    this.timer = null;
    this.active = false;
    // Which register() is the latest: a REGISTER lost with an old
    // WebSocket times out long after a newer one succeeded, and must not
    // count.
    this.attempt = 0;
  }

  setState(state, error = "") {
    this.state = state;
    this.error = error;
    this.onChange();
  }

  build(expires) {
    const ua = this.ua;
    const contact = `${ua.contact};+sip.instance="<${ua.instanceId}>";reg-id=1;expires=${expires}`;
    return new SipRequest(
      "REGISTER",
      `sip:${ua.domain}`,
      new Headers([
        ["Max-Forwards", "70"],
        ["To", `<${ua.aor}>`],
        ["From", `<${ua.aor}>;tag=${this.fromTag}`],
        ["Call-ID", this.callId],
        ["CSeq", `${++this.cseq} REGISTER`],
        ["Contact", contact],
        ["Expires", String(expires)],
        ["Supported", "path, outbound"],
        ["Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"],
      ]),
    );
  }

  async register() {
    clearTimeout(this.timer);
    this.active = true;
    const attempt = ++this.attempt;
    this.setState("registering");
    const response = await this.ua.request(this.build(this.expires), { urgent: true }).done;
    if (!this.active || attempt !== this.attempt) return;
    if (response.status >= 200 && response.status < 300) {
      const granted = grantedExpires(response, this.ua) ?? this.expires;
      const refreshIn = Math.max(granted / 2, granted - 30);
      this.timer = setTimeout(() => this.register(), refreshIn * 1000);
      this.setState("registered");
      this.ua.setReady(true);
      return;
    }
    const minimum = Number(response.headers.get("Min-Expires"));
    if (response.status === 423 && minimum > this.expires) {
      this.expires = minimum;
      return this.register();
    }
    this.setState("failed", describeFailure(response.status, response.reason));
    if (response.status === 408 || response.status >= 500) {
      this.timer = setTimeout(() => this.register(), RETRY_MS);
    }
  }

  // The WebSocket went down: nothing to refresh until it is back, and no
  // answer to a REGISTER sent before will count.
  connectionLost() {
    clearTimeout(this.timer);
    this.active = false;
    this.attempt += 1;
    if (this.state !== "unregistered") this.setState("registering");
  }

  // Remove our binding. With `wait` false (the page is going away) the
  // request is sent and forgotten.
  async unregister({ wait = true } = {}) {
    clearTimeout(this.timer);
    const wasRegistered = this.state === "registered";
    this.active = false;
    this.setState("unregistered");
    if (!wasRegistered) return;
    const transaction = this.ua.request(this.build(0), { urgent: true });
    if (wait) await transaction.done;
  }
}

// The expiry the registrar granted our contact (RFC 3261 §10.2.4): its
// expires parameter in the 200's Contact list, else the Expires header.
function grantedExpires(response, ua) {
  for (const value of response.headers.getAll("Contact")) {
    const contact = parseNameAddr(value);
    const ours = contact.params.get("+sip.instance") === `<${ua.instanceId}>` || contact.uri === ua.contactUri;
    const expires = Number(contact.params.get("expires"));
    if (ours && expires > 0) return expires;
  }
  const header = Number(response.headers.get("Expires"));
  return header > 0 ? header : null;
}
