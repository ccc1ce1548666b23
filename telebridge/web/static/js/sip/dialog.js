// One INVITE dialog's state (RFC 3261 §12): its identifiers, route set,
// remote target and sequence numbers, and the requests built inside it.

import { Headers, SipRequest, parseNameAddr, parseUri } from "./message.js";

export function dialogId(callId, localTag, remoteTag) {
  return `${callId}\n${localTag}\n${remoteTag}`;
}

export class Dialog {
  constructor({ callId, localTag, remoteTag, local, remote, remoteTarget, routeSet, localSeq, remoteSeq }) {
    this.callId = callId;
    this.localTag = localTag;
    this.remoteTag = remoteTag;
    this.local = local; // our From header value, tag included
    this.remote = remote; // their To header value, tag included
    this.remoteTarget = remoteTarget;
    this.routeSet = routeSet;
    this.localSeq = localSeq;
    this.remoteSeq = remoteSeq;
  }

  // §12.1.2: the UAC side, from our INVITE and the response that made the dialog.
  static fromUac(invite, response) {
    return new Dialog({
      callId: invite.callId,
      localTag: invite.from.params.get("tag"),
      remoteTag: response.to.params.get("tag"),
      local: invite.headers.get("From"),
      remote: response.headers.get("To"),
      remoteTarget: contactUri(response) ?? invite.uri,
      routeSet: response.headers.getAll("Record-Route").reverse(),
      localSeq: invite.cseq.seq,
      remoteSeq: null,
    });
  }

  // §12.1.1: the UAS side, from their INVITE and the tag we answer with.
  static fromUas(invite, localTag) {
    return new Dialog({
      callId: invite.callId,
      localTag,
      remoteTag: invite.from.params.get("tag"),
      local: `${invite.headers.get("To")};tag=${localTag}`,
      remote: invite.headers.get("From"),
      remoteTarget: contactUri(invite) ?? invite.from.uri,
      routeSet: invite.headers.getAll("Record-Route"),
      localSeq: 0,
      remoteSeq: invite.cseq.seq,
    });
  }

  get id() {
    return dialogId(this.callId, this.localTag, this.remoteTag);
  }

  // §12.2.2: a request whose CSeq is below the last one seen is out of order.
  acceptRemoteSeq(seq) {
    if (this.remoteSeq !== null && seq < this.remoteSeq) return false;
    this.remoteSeq = seq;
    return true;
  }

  // §12.2: a target refresh (re-INVITE or its 2xx) may move the remote target.
  refreshTarget(message) {
    this.remoteTarget = contactUri(message) ?? this.remoteTarget;
  }

  // §12.2.1.1: a request inside the dialog. ACK and CANCEL reuse the
  // INVITE's sequence number (pass `seq`); everything else takes the next.
  createRequest(method, { seq, headers = [], body = "" } = {}) {
    if (seq === undefined) seq = ++this.localSeq;
    let uri = this.remoteTarget;
    let routes = this.routeSet;
    if (routes.length && !parseUri(parseNameAddr(routes[0]).uri).params.has("lr")) {
      // A strict router (RFC 2543): it goes in the Request-URI and the
      // remote target becomes the last route (§12.2.1.1).
      uri = parseNameAddr(routes[0]).uri;
      routes = [...routes.slice(1), `<${this.remoteTarget}>`];
    }
    const out = new Headers([
      ["Max-Forwards", "70"],
      ["From", this.local],
      ["To", this.remote],
      ["Call-ID", this.callId],
      ["CSeq", `${seq} ${method}`],
    ]);
    for (const route of routes) out.add("Route", route);
    for (const [name, value] of headers) out.add(name, value);
    return new SipRequest(method, uri, out, body);
  }
}

function contactUri(message) {
  const contact = message.headers.get("Contact");
  return contact ? parseNameAddr(contact).uri : null;
}
