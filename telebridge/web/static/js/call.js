// One call: an INVITE session (RFC 3261 §13-15) with RFC 3264 offer/answer
// carried out by a MediaSession.
//
// Rules of operation:
// * States: calling (INVITE sent) -> ringing (180/183) -> connected ->
//   ended; incoming -> connected or ended.
// * Outgoing: the INVITE carries the complete SDP. A 1xx's SDP is applied
//   as a provisional answer (early media); the 2xx's SDP, or the 1xx's if
//   the 2xx has none, as the answer. Every 2xx is ACKed, retransmissions
//   too (§13.2.2.4); a 2xx that comes after we hung up is ACKed and ended
//   with BYE (§15).
// * Hanging up before any provisional response waits for one to CANCEL
//   (§9.1); after the CANCEL the INVITE gets 64*T1 to end.
// * Incoming: 180 at once. Answering sends 200 with our answer (or our
//   offer, when the INVITE had none: the answer then comes in the ACK),
//   repeated at T1, 2*T1, ... up to T2 until the ACK; without an ACK after
//   64*T1 the call ends with BYE (§13.3.1.4). A CANCEL ends it with 487.
// * Re-INVITE from the far side: 200 with a fresh answer; 491 while our own
//   re-INVITE is pending, 500 with Retry-After while theirs is (§14.2).
// * Our re-INVITE (hold, resume, ICE restart): 491 retries after the random wait of
//   §14.1; 408 and 481 end the call; other failures roll the offer back.
// * ICE failing under a connected call gets one ICE restart; failing again
//   ends the call with BYE ("the call's audio path was lost").
// * The WebSocket dropping ends a call not yet connected (the gateway's
//   INVITE transaction failed with the flow); a connected call stays, its
//   requests waiting in the user agent's queue for the reconnect.

import { AUDIO_PATH_LOST, CONNECTION_LOST, describeFailure, describeMediaError } from "./failures.js";
import { Dialog } from "./sip/dialog.js";
import { randomToken } from "./sip/message.js";
import { T1, TIMEOUT } from "./sip/transactions.js";
import { ALLOW } from "./sip/ua.js";

const T2 = 4000;
const DTMF = /^[0-9A-Da-d*#,]+$/;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Call {
  constructor(ua, media, onChange) {
    this.ua = ua;
    this.media = media;
    this.onChange = onChange;
    this.state = "idle";
    this.error = "";
    this.note = "";
    this.status = null;
    this.outgoing = false;
    this.dialog = null;
    this.invite = null;
    this.inviteTransaction = null;
    this.serverInvite = null;
    this.answering = false;
    this.earlySdp = null;
    this.hangupWanted = false;
    this.cancelSent = false;
    this.lastAck = null;
    this.awaitingAck = null;
    this.ackTimer = null;
    this.renegotiating = false;
    this.held = false;
    this.muted = false;
    this.connectedAt = null;
    this.endedAt = null;
  }

  setState(state) {
    this.state = state;
    this.onChange();
  }

  get remoteHeld() {
    return this.state === "connected" && this.media.remoteHolding;
  }

  // ---- outgoing ------------------------------------------------------------

  async dial(target) {
    this.outgoing = true;
    this.setState("calling");
    let sdp;
    try {
      await this.media.open();
      sdp = await this.media.createOffer();
    } catch (error) {
      this.end(describeMediaError(error));
      return;
    }
    if (this.state === "ended") return;
    this.invite = this.ua.createInvite(target, sdp);
    this.inviteTransaction = this.ua.request(this.invite, { onProvisional: (response) => this.provisional(response) });
    await this.inviteFinal(await this.inviteTransaction.done);
  }

  provisional(response) {
    if (this.hangupWanted) {
      this.sendCancel();
      return;
    }
    if (response.status === 100) return;
    if (this.state === "calling") this.setState("ringing");
    if (response.sdp && !this.earlySdp) {
      this.earlySdp = response.sdp;
      this.media.applyAnswer(response.sdp, { provisional: true }).catch(() => {
        this.earlySdp = null;
      });
    }
  }

  async inviteFinal(response) {
    this.status = response.status;
    if (response.status >= 300) {
      const cancelled = this.cancelSent && response.status === 487;
      this.end(cancelled ? "" : describeFailure(response.status, response.reason));
      return;
    }
    this.dialog = Dialog.fromUac(this.invite, response);
    this.ua.addDialog(this.dialog.id, this);
    this.acknowledge(response);
    if (this.hangupWanted) {
      this.bye();
      this.retire();
      return;
    }
    const sdp = response.sdp ?? this.earlySdp;
    if (!sdp) {
      this.bye();
      this.end("the other side answered without a media description");
      return;
    }
    try {
      await this.media.applyAnswer(sdp);
    } catch (error) {
      this.bye();
      this.end(describeMediaError(error));
      return;
    }
    if (this.state !== "ended") this.connected();
  }

  acknowledge(response) {
    this.lastAck = this.dialog.createRequest("ACK", { seq: response.cseq.seq });
    this.ua.sendAck(this.lastAck);
  }

  receiveStray2xx(response) {
    if (this.lastAck && response.cseq.seq === this.lastAck.cseq.seq) this.ua.send(this.lastAck);
  }

  sendCancel() {
    if (this.cancelSent || !this.inviteTransaction) return;
    this.cancelSent = true;
    this.ua.request(this.ua.createCancel(this.invite));
    this.inviteTransaction.armTimeout(TIMEOUT);
  }

  // ---- incoming ------------------------------------------------------------

  receiveInvite(request, entry) {
    this.invite = request;
    this.serverInvite = entry;
    this.dialog = Dialog.fromUas(request, randomToken(10));
    this.ua.addDialog(this.dialog.id, this);
    this.ua.respond(entry, 180, { toTag: this.dialog.localTag, headers: [["Contact", this.ua.contact]] });
    this.setState("incoming");
  }

  async answer() {
    if (this.state !== "incoming" || this.answering) throw new Error("there is no incoming call to answer");
    this.answering = true;
    const offer = this.invite.sdp;
    let sdp;
    try {
      await this.media.open();
      sdp = offer ? await this.media.acceptOffer(offer) : await this.media.createOffer();
    } catch (error) {
      if (this.state !== "ended") {
        this.ua.respond(this.serverInvite, offer ? 488 : 500, { toTag: this.dialog.localTag });
        this.end(describeMediaError(error));
      }
      return;
    }
    if (this.state === "ended") return;
    this.sendAnswer(this.serverInvite, sdp, !offer);
    this.connected();
  }

  reject(status = 486) {
    if (this.state !== "incoming") throw new Error("there is no incoming call to reject");
    this.ua.respond(this.serverInvite, status, { toTag: this.dialog.localTag });
    this.end("", "call declined");
  }

  // The caller's CANCEL (the user agent has already answered it 200).
  cancelled() {
    this.ua.respond(this.serverInvite, 487, { toTag: this.dialog.localTag });
    this.end("", "the caller hung up");
  }

  sendAnswer(entry, sdp, offerInAnswer) {
    const response = this.ua.respond(entry, 200, {
      toTag: this.dialog.localTag,
      headers: [
        ["Contact", this.ua.contact],
        ["Allow", ALLOW],
        ["Supported", "outbound"],
        ["Content-Type", "application/sdp"],
      ],
      body: sdp,
    });
    this.awaitingAck = { seq: entry.request.cseq.seq, offerInAnswer };
    let interval = T1;
    let waited = 0;
    const repeat = () => {
      waited += interval;
      if (waited >= TIMEOUT) {
        this.awaitingAck = null;
        this.bye();
        this.end("the gateway never confirmed the call (no ACK)");
        return;
      }
      this.ua.send(response, { urgent: true });
      interval = Math.min(interval * 2, T2);
      this.ackTimer = setTimeout(repeat, interval);
    };
    clearTimeout(this.ackTimer);
    this.ackTimer = setTimeout(repeat, interval);
  }

  receiveAck(ack) {
    if (!this.awaitingAck || ack.cseq.seq !== this.awaitingAck.seq) return;
    clearTimeout(this.ackTimer);
    const { offerInAnswer } = this.awaitingAck;
    this.awaitingAck = null;
    if (!offerInAnswer) return;
    if (!ack.sdp) {
      this.bye();
      this.end("the other side did not answer our media offer");
      return;
    }
    this.media.applyAnswer(ack.sdp).then(
      () => this.onChange(),
      (error) => {
        this.bye();
        this.end(describeMediaError(error));
      },
    );
  }

  // ---- inside the dialog ---------------------------------------------------

  receiveRequest(request, entry) {
    if (request.method === "ACK") {
      this.receiveAck(request);
      return;
    }
    if (this.state === "ended") {
      this.ua.respond(entry, 481);
      return;
    }
    if (!this.dialog.acceptRemoteSeq(request.cseq.seq)) {
      this.ua.respond(entry, 500, { reason: "Server Internal Error (CSeq out of order)" });
      return;
    }
    switch (request.method) {
      case "BYE":
        this.ua.respond(entry, 200);
        this.end("", "the other side hung up");
        break;
      case "INVITE":
        this.reinvited(request, entry);
        break;
      case "OPTIONS":
        this.ua.respond(entry, 200, { headers: [["Allow", ALLOW], ["Accept", "application/sdp"]] });
        break;
      default:
        this.ua.refuse(entry);
    }
  }

  async reinvited(request, entry) {
    if (this.renegotiating) {
      this.ua.respond(entry, 491);
      return;
    }
    if (this.awaitingAck || this.state !== "connected") {
      const retryAfter = String(1 + Math.floor(Math.random() * 10));
      this.ua.respond(entry, 500, { headers: [["Retry-After", retryAfter]] });
      return;
    }
    this.renegotiating = true;
    this.dialog.refreshTarget(request);
    let sdp;
    try {
      sdp = request.sdp ? await this.media.acceptOffer(request.sdp) : await this.media.createOffer();
    } catch {
      await this.media.rollback().catch(() => {});
      this.ua.respond(entry, 488);
      return;
    } finally {
      this.renegotiating = false;
    }
    if (this.state !== "connected") return;
    this.sendAnswer(entry, sdp, !request.sdp);
    this.onChange();
  }

  // Our re-INVITE with the audio direction changed, or new ICE credentials
  // (after a network change); true when it took.
  async renegotiate(direction, iceRestart = false) {
    if (this.state !== "connected") throw new Error("there is no connected call");
    if (this.renegotiating || this.awaitingAck) throw new Error("the call is being renegotiated; try again");
    this.renegotiating = true;
    try {
      for (let attempt = 1; ; attempt++) {
        const sdp = await this.media.createOffer({ direction, iceRestart });
        const request = this.dialog.createRequest("INVITE", {
          headers: [
            ["Contact", this.ua.contact],
            ["Allow", ALLOW],
            ["Supported", "outbound"],
            ["Content-Type", "application/sdp"],
          ],
          body: sdp,
        });
        const response = await this.ua.request(request).done;
        if (this.state !== "connected") return false;
        if (response.status >= 200 && response.status < 300 && response.sdp) {
          this.dialog.refreshTarget(response);
          this.acknowledge(response);
          await this.media.applyAnswer(response.sdp);
          return true;
        }
        if (response.status < 300) {
          this.acknowledge(response);
          this.bye();
          this.end("the other side answered without a media description");
          return false;
        }
        await this.media.rollback();
        if (response.status === 491 && attempt < 3) {
          // §14.1: the Call-ID's owner waits 2.1-4 s, the other side 0-2 s.
          await sleep(this.outgoing ? 2100 + Math.random() * 1900 : Math.random() * 2000);
          if (this.state !== "connected") return false;
          continue;
        }
        if (response.status === 408 || response.status === 481) {
          this.bye();
          this.end(describeFailure(response.status, response.reason));
          return false;
        }
        this.error = describeFailure(response.status, response.reason);
        return false;
      }
    } finally {
      this.renegotiating = false;
      this.onChange();
    }
  }

  async hold() {
    if (!this.held && (await this.renegotiate("sendonly"))) this.held = true;
    this.onChange();
  }

  async resume() {
    if (this.held && (await this.renegotiate("sendrecv"))) this.held = false;
    this.onChange();
  }

  // A new ICE session on the same call (RFC 8445 §9): what a browser does
  // when its network changed under a call.
  async restartIce() {
    await this.renegotiate(this.held ? "sendonly" : "sendrecv", true);
  }

  mute(muted) {
    this.media.mute(muted);
    this.muted = muted;
    this.onChange();
  }

  sendDtmf(digits) {
    if (this.state !== "connected") throw new Error("there is no connected call");
    if (!DTMF.test(digits)) throw new Error("DTMF digits are 0-9, A-D, * and #");
    return this.media.sendDtmf(digits);
  }

  // ---- ending --------------------------------------------------------------

  hangup() {
    switch (this.state) {
      case "incoming":
        this.reject(486);
        break;
      case "calling":
      case "ringing":
        this.hangupWanted = true;
        if (this.dialog) this.bye();
        else if (this.inviteTransaction && this.inviteTransaction.gotResponse) this.sendCancel();
        this.end("");
        break;
      case "connected":
        this.bye();
        this.end("");
        break;
    }
  }

  bye() {
    this.ua.request(this.dialog.createRequest("BYE"));
  }

  connectionLost() {
    if (this.state === "calling" || this.state === "ringing" || this.state === "incoming") {
      if (this.inviteTransaction) this.inviteTransaction.armTimeout(TIMEOUT);
      this.end(CONNECTION_LOST);
    }
  }

  connected() {
    this.connectedAt = Date.now();
    this.setState("connected");
    this.watchMediaPath();
  }

  // ICE failing under a connected call (the network changed, the relay
  // went away) is tried once with an ICE restart; failing again ends the
  // call with BYE rather than leaving the person in silence.
  watchMediaPath() {
    const pc = this.media.pc;
    if (!pc) return;
    let restarted = false;
    pc.addEventListener("connectionstatechange", async () => {
      if (pc.connectionState !== "failed" || this.state !== "connected") return;
      if (!restarted) {
        restarted = true;
        await this.restartIce().catch(() => {});
        if (pc.connectionState !== "failed") return;
      }
      if (this.state !== "connected") return;
      this.bye();
      this.end(AUDIO_PATH_LOST);
    });
  }

  end(error = "", note = "") {
    if (this.state === "ended") return;
    // A 2xx may still come for an INVITE we gave up on: ACK and BYE it.
    if (this.outgoing && !this.dialog) this.hangupWanted = true;
    this.error = error;
    this.note = note;
    this.endedAt = Date.now();
    clearTimeout(this.ackTimer);
    this.awaitingAck = null;
    this.media.close();
    this.retire();
    this.setState("ended");
  }

  // The dialog stays reachable for 64*T1 so that late retransmissions of
  // a 2xx still get their ACK and late requests their 481.
  retire() {
    const dialog = this.dialog;
    if (dialog) setTimeout(() => this.ua.removeDialog(dialog.id), TIMEOUT);
  }
}
