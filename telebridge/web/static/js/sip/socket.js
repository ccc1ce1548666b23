// The WebSocket to the gateway (RFC 7118): subprotocol "sip", one SIP
// message per frame, and reconnection after an abnormal close.
//
// Rules of operation:
// * A close with 1000 (signed out) or 1001 (page gone) is final. Anything
//   else (1006 when the network dropped, a gateway restart, 4000 from
//   drop()) schedules another attempt after a delay that doubles from
//   `initialDelayMs` up to `maxDelayMs`, with jitter so that many pages do
//   not all come back at the same instant.
// * Every attempt asks `connectUrl()` for the URL, so the owner can renew
//   or check its token first; an error marked `permanent` stops the loop,
//   any other error counts as a failed attempt.
// * The WebSocket API cannot send 1001 (only 1000 and 3000-4999): the
//   browser itself closes with 1001 when the page is unloaded.

export const SIMULATED_DROP = 4000;
const FINAL_CODES = new Set([1000, 1001]);

export class SipSocket {
  constructor({ connectUrl, onOpen, onMessage, onDown, onGiveUp, initialDelayMs = 500, maxDelayMs = 30000 }) {
    this.connectUrl = connectUrl;
    this.onOpen = onOpen;
    this.onMessage = onMessage;
    this.onDown = onDown;
    this.onGiveUp = onGiveUp;
    this.initialDelayMs = initialDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.ws = null;
    this.failures = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.decoder = new TextDecoder();
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.attempt();
  }

  send(text) {
    if (!this.open) return false;
    this.ws.send(text);
    return true;
  }

  // Sign-out: a clean close the gateway ends calls on at once.
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "signed out");
  }

  // A deliberate abnormal close, for reconnect tests: 4000 is outside the
  // codes the gateway treats as clean, so it parks the calls. The close
  // event then carries the code the gateway echoed (it may say 1000), so
  // the drop is remembered on the socket it closed.
  drop() {
    if (!this.ws) return;
    this.ws.dropped = true;
    this.ws.close(SIMULATED_DROP, "simulated network drop");
  }

  async attempt() {
    let url;
    try {
      url = await this.connectUrl();
    } catch (error) {
      if (this.stopped) return;
      if (error.permanent) {
        this.stopped = true;
        this.onGiveUp(error);
      } else {
        this.retryLater(1006);
      }
      return;
    }
    if (this.stopped) return;
    const ws = new WebSocket(url, "sip");
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.onOpen();
    };
    ws.onmessage = (event) => {
      // RFC 7118 §5.2: a binary frame is a message that is not all UTF-8 text.
      const text = typeof event.data === "string" ? event.data : this.decoder.decode(event.data);
      this.onMessage(text);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (FINAL_CODES.has(event.code) && !ws.dropped) {
        this.stopped = true;
        this.onDown({ code: event.code, final: true, delayMs: null });
        return;
      }
      this.retryLater(event.code);
    };
  }

  retryLater(code) {
    const backoff = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** this.failures);
    const delayMs = Math.round(backoff * (0.5 + Math.random() / 2));
    this.failures += 1;
    this.onDown({ code, final: false, delayMs });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.attempt(), delayMs);
  }
}
