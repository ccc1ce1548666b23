// SIP transactions over a reliable transport (RFC 3261 §17).
//
// Rules of operation:
// * A WebSocket never loses a message, so no request is retransmitted
//   (§17.1.1.2, §17.1.2.2: timers A and E apply to unreliable transports
//   only). What remains are the deadlines: timer B (an INVITE with no
//   response at all) and timer F (a non-INVITE with no final response),
//   both 64*T1; when they fire the caller gets a local 408.
// * Responses are matched to client transactions by the top Via branch and
//   the CSeq method (§17.1.3), so a CANCEL's 200 never ends its INVITE.
// * A non-2xx final response to an INVITE is acknowledged here with an ACK
//   on the same branch (§17.1.1.3); a 2xx is the dialog's business (§13.2.2.4).
// * Server transactions remember their last response for 64*T1, so a
//   request seen again (after a reconnect, say) gets the same answer, and a
//   CANCEL can find the INVITE it cancels (§9.2).

import { Headers, SipRequest, buildResponse } from "./message.js";

export const T1 = 500;
export const TIMEOUT = 64 * T1;

function clientKey(branch, method) {
  return `${branch} ${method}`;
}

class ClientTransaction {
  constructor(table, request, onProvisional, urgent) {
    this.table = table;
    this.request = request;
    this.onProvisional = onProvisional;
    this.urgent = urgent;
    this.key = clientKey(request.branch, request.method);
    this.gotResponse = false;
    this.timer = null;
    this.done = new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  // (Re)arm the deadline: when it passes the transaction ends with a local 408.
  armTimeout(ms = TIMEOUT) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.finish(buildResponse(this.request, 408, { reason: "Request Timeout (no answer)" })), ms);
  }

  receive(response) {
    this.gotResponse = true;
    if (response.status < 200) {
      // Timer B covers an INVITE only until its first response (§17.1.1.2).
      if (this.request.method === "INVITE") clearTimeout(this.timer);
      this.onProvisional(response);
      return;
    }
    if (this.request.method === "INVITE" && response.status >= 300) {
      this.table.send(ackForFailure(this.request, response), { urgent: this.urgent });
    }
    this.finish(response);
  }

  finish(response) {
    clearTimeout(this.timer);
    this.table.pending.delete(this.key);
    this.resolve(response);
  }
}

// §17.1.1.3: the ACK of a non-2xx final response, on the INVITE's branch.
function ackForFailure(invite, response) {
  const headers = new Headers([
    ["Via", invite.headers.get("Via")],
    ["Max-Forwards", "70"],
    ["To", response.headers.get("To")],
    ["From", invite.headers.get("From")],
    ["Call-ID", invite.callId],
    ["CSeq", `${invite.cseq.seq} ACK`],
  ]);
  for (const route of invite.headers.getAll("Route")) headers.add("Route", route);
  return new SipRequest("ACK", invite.uri, headers);
}

export class ClientTransactions {
  constructor(send) {
    this.send = send;
    this.pending = new Map();
  }

  // Send `request` (its Via already stamped); the transaction's `done`
  // resolves with the final response, and provisional responses go to
  // `onProvisional` as they come. `urgent` is passed on to `send`.
  start(request, { onProvisional = () => {}, urgent = false } = {}) {
    const transaction = new ClientTransaction(this, request, onProvisional, urgent);
    this.pending.set(transaction.key, transaction);
    transaction.armTimeout();
    this.send(request, { urgent });
    return transaction;
  }

  // The transaction `response` belongs to, if it is still waiting.
  receive(response) {
    const key = clientKey(response.branch, response.cseq.method);
    const transaction = this.pending.get(key);
    if (!transaction) return false;
    transaction.receive(response);
    return true;
  }
}

function serverKey(request) {
  // The ACK of a non-2xx response shares its INVITE's branch (§17.2.3).
  const method = request.method === "ACK" ? "INVITE" : request.method;
  return `${request.branch} ${method}`;
}

export class ServerTransactions {
  constructor(send) {
    this.send = send;
    this.known = new Map();
  }

  // The transaction this request belongs to, if it was seen before.
  find(request) {
    return this.known.get(serverKey(request)) ?? null;
  }

  findInvite(branch) {
    return this.known.get(`${branch} INVITE`) ?? null;
  }

  begin(request) {
    const entry = { request, lastResponse: null, timer: null };
    this.known.set(serverKey(request), entry);
    return entry;
  }

  respond(entry, response) {
    entry.lastResponse = response;
    this.send(response);
    if (response.status >= 200 && entry.timer === null) {
      entry.timer = setTimeout(() => this.known.delete(serverKey(entry.request)), TIMEOUT);
    }
  }

  // A request seen again: answer it as before (nothing yet if it is pending).
  repeat(entry) {
    if (entry.lastResponse) this.send(entry.lastResponse);
  }
}
