// The SIP user agent core of one signed-in user: builds and stamps
// requests, keeps the transaction tables, routes what arrives.
//
// Rules of operation:
// * Via and Contact carry a random ".invalid" host (RFC 7118 §5); the
//   gateway sends everything back over the WebSocket. Contact has ";ob"
//   (RFC 5626 §5.4): keep the dialog on this flow.
// * Requests other than REGISTER wait in a queue while the WebSocket is
//   down or not registered yet: after a reconnect the gateway hands a
//   parked dialog to the new flow when the same instance re-registers
//   (RFC 5626 §6), so a BYE sent earlier would reach nobody.
// * Incoming requests, in order: a repeat of one already seen is answered
//   as before; a Require we do not know gets 420 (§8.2.2.3); CANCEL finds
//   its INVITE by branch (§9.2) or gets 481; the ACK of a non-2xx is
//   absorbed; a request with a To tag goes to its dialog, else 481
//   (§12.2.2); a new INVITE goes to `onInvite`; OPTIONS gets 200; methods
//   we know but do not take get 405 with Allow, others 501 (§8.2.1).

import { ClientTransactions, ServerTransactions } from "./transactions.js";
import { dialogId } from "./dialog.js";
import { Headers, SipParseError, SipRequest, buildResponse, newBranch, parseMessage, randomToken } from "./message.js";

export const ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS";
const KNOWN_METHODS = new Set([
  "REGISTER", "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "PRACK",
  "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER",
]);
const UNDERSTOOD = new Set(["outbound", "path"]);
const MAX_QUEUED = 50;

export class UserAgent {
  constructor({ user, domain, instanceId, transmit, userAgent = "telebridge-softphone" }) {
    this.user = user;
    this.domain = domain;
    this.instanceId = instanceId;
    this.transmit = transmit;
    this.userAgent = userAgent;
    this.viaHost = `${randomToken(12)}.invalid`;
    this.contactUri = `sip:${randomToken(8)}@${this.viaHost};transport=ws;ob`;
    this.clientTransactions = new ClientTransactions((message, options) => this.send(message, options));
    this.serverTransactions = new ServerTransactions((message) => this.send(message, { urgent: true }));
    this.dialogs = new Map();
    this.ready = false;
    this.queue = [];
    this.onInvite = (request, entry) => this.respond(entry, 486);
  }

  get aor() {
    return `sip:${this.user}@${this.domain}`;
  }

  get contact() {
    return `<${this.contactUri}>`;
  }

  // `urgent` messages go out as soon as the socket is open: REGISTER, and
  // responses (they answer the flow the request came on).
  send(message, { urgent = false } = {}) {
    const text = message.toString();
    if ((this.ready || urgent) && this.transmit(text)) return;
    if (urgent) return;
    if (this.queue.length >= MAX_QUEUED) this.queue.shift();
    this.queue.push(text);
  }

  setReady(ready) {
    this.ready = ready;
    while (ready && this.queue.length) {
      if (!this.transmit(this.queue[0])) return;
      this.queue.shift();
    }
  }

  // A new transaction: stamp our Via (a fresh branch unless the request
  // has one, as a CANCEL does) and wait for the final response.
  request(request, { onProvisional, urgent = false } = {}) {
    if (!request.headers.has("Via")) this.stampVia(request);
    if (!request.headers.has("User-Agent")) request.headers.add("User-Agent", this.userAgent);
    return this.clientTransactions.start(request, { onProvisional, urgent });
  }

  // An ACK to a 2xx is its own transaction with no response (§13.2.2.4).
  sendAck(ack) {
    if (!ack.headers.has("Via")) this.stampVia(ack);
    this.send(ack);
  }

  stampVia(request, branch = newBranch()) {
    request.headers.lines.unshift(["Via", `SIP/2.0/WSS ${this.viaHost};branch=${branch}`]);
  }

  respond(entry, status, options = {}) {
    const response = buildResponse(entry.request, status, options);
    if (!response.headers.has("Server")) response.headers.add("Server", this.userAgent);
    this.serverTransactions.respond(entry, response);
    return response;
  }

  addDialog(id, handler) {
    this.dialogs.set(id, handler);
  }

  removeDialog(id) {
    this.dialogs.delete(id);
  }

  // An INVITE outside any dialog (§8.1.1): our own Call-ID and From tag.
  createInvite(target, sdp) {
    const headers = new Headers([
      ["Max-Forwards", "70"],
      ["To", `<${target}>`],
      ["From", `<${this.aor}>;tag=${randomToken(10)}`],
      ["Call-ID", randomToken(20)],
      ["CSeq", "1 INVITE"],
      ["Contact", this.contact],
      ["Allow", ALLOW],
      ["Supported", "outbound"],
      ["Content-Type", "application/sdp"],
    ]);
    return new SipRequest("INVITE", target, headers, sdp);
  }

  // §9.1: CANCEL copies the INVITE's Request-URI, top Via, Call-ID, From,
  // To, Route and CSeq number.
  createCancel(invite) {
    const headers = new Headers([
      ["Via", invite.headers.get("Via")],
      ["Max-Forwards", "70"],
      ["To", invite.headers.get("To")],
      ["From", invite.headers.get("From")],
      ["Call-ID", invite.callId],
      ["CSeq", `${invite.cseq.seq} CANCEL`],
    ]);
    for (const route of invite.headers.getAll("Route")) headers.add("Route", route);
    return new SipRequest("CANCEL", invite.uri, headers);
  }

  receive(text) {
    let message;
    try {
      message = parseMessage(text);
    } catch (error) {
      // Nothing can be answered without the headers that failed to parse,
      // and the gateway does not send such messages: drop it.
      if (error instanceof SipParseError) return;
      throw error;
    }
    if (message instanceof SipRequest) this.receiveRequest(message);
    else this.receiveResponse(message);
  }

  receiveResponse(response) {
    if (this.clientTransactions.receive(response)) return;
    // A 2xx to an INVITE outlives its transaction (§13.2.2.4): the dialog
    // answers each retransmission with its ACK again.
    if (response.cseq.method === "INVITE" && response.status >= 200 && response.status < 300) {
      const id = dialogId(response.callId, response.from.params.get("tag"), response.to.params.get("tag"));
      this.dialogs.get(id)?.receiveStray2xx(response);
    }
  }

  receiveRequest(request) {
    const seen = this.serverTransactions.find(request);
    if (seen && request.method === "ACK") {
      // The ACK of a non-2xx shares its INVITE's branch; one for a 2xx on
      // that branch (an RFC 2543 habit) still goes to the dialog.
      if (seen.lastResponse && seen.lastResponse.status >= 300) return;
    } else if (seen) {
      this.serverTransactions.repeat(seen);
      return;
    }
    if (request.method === "ACK") {
      this.toDialog(request, null);
      return;
    }
    const entry = this.serverTransactions.begin(request);
    const unknown = [...request.optionTags("Require")].filter((tag) => !UNDERSTOOD.has(tag));
    if (unknown.length && request.method !== "CANCEL") {
      this.respond(entry, 420, { headers: [["Unsupported", unknown.join(", ")]] });
      return;
    }
    if (request.method === "CANCEL") {
      this.cancel(request, entry);
    } else if (request.to.params.has("tag")) {
      this.toDialog(request, entry);
    } else if (request.method === "INVITE") {
      this.onInvite(request, entry);
    } else if (request.method === "OPTIONS") {
      this.respond(entry, 200, {
        toTag: randomToken(10),
        headers: [["Allow", ALLOW], ["Accept", "application/sdp"], ["Supported", "outbound"]],
      });
    } else {
      this.refuse(entry);
    }
  }

  refuse(entry) {
    if (KNOWN_METHODS.has(entry.request.method)) this.respond(entry, 405, { headers: [["Allow", ALLOW]] });
    else this.respond(entry, 501);
  }

  cancel(request, entry) {
    const invite = this.serverTransactions.findInvite(request.branch);
    if (!invite) {
      this.respond(entry, 481);
      return;
    }
    this.respond(entry, 200);
    // Only a pending INVITE is cancelled; once answered, CANCEL does nothing (§9.2).
    const pending = !invite.lastResponse || invite.lastResponse.status < 200;
    const handler = [...this.dialogs.values()].find((h) => h.serverInvite === invite);
    if (pending && handler) handler.cancelled();
  }

  toDialog(request, entry) {
    const id = dialogId(request.callId, request.to.params.get("tag"), request.from.params.get("tag"));
    const handler = this.dialogs.get(id);
    if (handler) handler.receiveRequest(request, entry);
    else if (entry) this.respond(entry, 481);
  }
}
