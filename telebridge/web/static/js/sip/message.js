// SIP messages (RFC 3261 §7, §20, §25): parse the text of one WebSocket
// frame, and build requests and responses. No I/O, no clocks: everything
// here can be checked on its own in a page (tests/e2e/test_softphone.py).

export class SipParseError extends Error {}

// RFC 3261 §7.3.3 compact forms, and the few names whose capitals are not
// simply the first letter of each word.
const COMPACT = {
  i: "Call-ID", m: "Contact", f: "From", t: "To", v: "Via", l: "Content-Length",
  c: "Content-Type", k: "Supported", s: "Subject", e: "Content-Encoding",
  o: "Event", r: "Refer-To", b: "Referred-By", u: "Allow-Events", x: "Session-Expires",
};
const SPECIAL = {
  "call-id": "Call-ID", cseq: "CSeq", "www-authenticate": "WWW-Authenticate",
  "mime-version": "MIME-Version", rack: "RAck", rseq: "RSeq", "sip-etag": "SIP-ETag",
  "sip-if-match": "SIP-If-Match",
};

// Headers that may hold a comma-separated list (RFC 3261 §7.3.1). Others,
// like WWW-Authenticate or Date, contain commas of their own.
const LIST_HEADERS = new Set([
  "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
  "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
  "Allow-Events", "Path", "Service-Route",
]);

const REASONS = {
  100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK",
  400: "Bad Request", 405: "Method Not Allowed", 420: "Bad Extension",
  481: "Call/Transaction Does Not Exist", 486: "Busy Here", 487: "Request Terminated",
  488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
  501: "Not Implemented", 603: "Decline",
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function canonicalName(name) {
  const lower = name.trim().toLowerCase();
  if (lower.length === 1 && COMPACT[lower]) return COMPACT[lower];
  if (SPECIAL[lower]) return SPECIAL[lower];
  return lower.replace(/(^|-)([a-z])/g, (_, dash, letter) => dash + letter.toUpperCase());
}

// Split on commas that are outside quotes and angle brackets: a Contact's
// display name or URI may hold commas of its own.
export function splitList(value) {
  const items = [];
  let start = 0;
  let quoted = false;
  let angle = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted) {
      if (ch === "\\") i++;
      else if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === "<") angle = true;
    else if (ch === ">") angle = false;
    else if (ch === "," && !angle) {
      items.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  items.push(value.slice(start).trim());
  return items.filter((item) => item !== "");
}

export class Headers {
  constructor(lines = []) {
    this.lines = lines.map(([name, value]) => [canonicalName(name), String(value)]);
  }

  // Every value of `name`, list headers split into their elements.
  getAll(name) {
    const wanted = canonicalName(name);
    const values = [];
    for (const [n, v] of this.lines) {
      if (n !== wanted) continue;
      if (LIST_HEADERS.has(n)) values.push(...splitList(v));
      else values.push(v);
    }
    return values;
  }

  get(name) {
    const values = this.getAll(name);
    return values.length ? values[0] : null;
  }

  has(name) {
    const wanted = canonicalName(name);
    return this.lines.some(([n]) => n === wanted);
  }

  add(name, value) {
    this.lines.push([canonicalName(name), String(value)]);
  }
}

class Message {
  get callId() { return this.headers.get("Call-ID"); }
  get cseq() { return parseCSeq(this.headers.get("CSeq")); }
  get from() { return parseNameAddr(this.headers.get("From")); }
  get to() { return parseNameAddr(this.headers.get("To")); }
  get topVia() { return parseVia(this.headers.get("Via")); }
  get branch() { return this.topVia.params.get("branch") ?? null; }

  // Option tags of Supported/Require/... as a lower-case Set.
  optionTags(name) {
    return new Set(this.headers.getAll(name).map((tag) => tag.toLowerCase()));
  }

  get sdp() {
    const type = (this.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
    return type === "application/sdp" && this.body ? this.body : null;
  }

  _text(startLine) {
    const lines = [startLine];
    for (const [name, value] of this.headers.lines) {
      if (name !== "Content-Length") lines.push(`${name}: ${value}`);
    }
    lines.push(`Content-Length: ${encoder.encode(this.body).length}`);
    return lines.join("\r\n") + "\r\n\r\n" + this.body;
  }
}

export class SipRequest extends Message {
  constructor(method, uri, headers, body = "") {
    super();
    this.method = method;
    this.uri = uri;
    this.headers = headers instanceof Headers ? headers : new Headers(headers);
    this.body = body;
  }

  toString() {
    return this._text(`${this.method} ${this.uri} SIP/2.0`);
  }
}

export class SipResponse extends Message {
  constructor(status, reason, headers, body = "") {
    super();
    this.status = status;
    this.reason = reason;
    this.headers = headers instanceof Headers ? headers : new Headers(headers);
    this.body = body;
  }

  toString() {
    return this._text(`SIP/2.0 ${this.status} ${this.reason}`);
  }
}

export function parseMessage(text) {
  if (typeof text !== "string") throw new SipParseError("not text");
  // RFC 5626 §4.4.1 keep-alives and stray CRLFs before a start line (§7.5).
  const trimmed = text.replace(/^(\r\n)+/, "");
  let split = trimmed.indexOf("\r\n\r\n");
  let gap = 4;
  if (split < 0) {
    split = trimmed.indexOf("\n\n");
    gap = 2;
  }
  if (split < 0) throw new SipParseError("no blank line after the headers");
  const head = trimmed.slice(0, split).split(/\r?\n/);
  let body = trimmed.slice(split + gap);
  const startLine = head.shift();
  const headers = new Headers(parseHeaderLines(head));

  const lengthText = headers.get("Content-Length");
  if (lengthText !== null) {
    if (!/^\d{1,8}$/.test(lengthText.trim())) throw new SipParseError(`bad Content-Length ${lengthText}`);
    const length = Number(lengthText.trim());
    const bytes = encoder.encode(body);
    if (bytes.length < length) throw new SipParseError("body shorter than Content-Length");
    body = decoder.decode(bytes.slice(0, length));
  }

  let message;
  const status = /^SIP\/2\.0 (\d{3}) ?(.*)$/i.exec(startLine);
  if (status) {
    message = new SipResponse(Number(status[1]), status[2], headers, body);
  } else {
    const request = /^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP\/2\.0$/i.exec(startLine);
    if (!request) throw new SipParseError(`bad start line ${JSON.stringify(startLine.slice(0, 80))}`);
    message = new SipRequest(request[1], request[2], headers, body);
  }
  for (const name of ["Via", "From", "To", "Call-ID", "CSeq"]) {
    if (!headers.has(name)) throw new SipParseError(`no ${name} header`);
  }
  // Read the structured headers once so that a malformed one is reported
  // here, as a SipParseError, rather than later in the middle of a call.
  const cseq = parseCSeq(headers.get("CSeq"));
  parseNameAddr(headers.get("From"));
  parseNameAddr(headers.get("To"));
  parseVia(headers.get("Via"));
  if (message instanceof SipRequest && cseq.method !== message.method) {
    throw new SipParseError(`CSeq method ${cseq.method} does not match ${message.method}`);
  }
  return message;
}

function parseHeaderLines(lines) {
  const result = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line) && result.length) {
      // Line folding (RFC 3261 §7.3.1): a continuation of the previous value.
      result[result.length - 1][1] += " " + line.trim();
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw new SipParseError(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim();
    if (!/^[A-Za-z0-9.!%*_+`'~-]+$/.test(name)) throw new SipParseError(`bad header name ${JSON.stringify(name)}`);
    result.push([name, line.slice(colon + 1).trim()]);
  }
  return result;
}

export function parseCSeq(text) {
  const match = /^\s*(\d{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)\s*$/.exec(text || "");
  if (!match) throw new SipParseError(`bad CSeq ${JSON.stringify(text)}`);
  return { seq: Number(match[1]), method: match[2] };
}

// ";name=value;flag" into a Map with lower-case names (values keep quotes
// off, so +sip.instance="<urn:...>" reads back as <urn:...>).
export function parseParams(text) {
  const params = new Map();
  const re = /;\s*([^\s;=]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*))?/g;
  let match;
  while ((match = re.exec(text)) !== null) {
    let value = match[2] === undefined ? null : match[2].trim();
    if (value !== null && value.startsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    params.set(match[1].toLowerCase(), value);
  }
  return params;
}

// name-addr or addr-spec (RFC 3261 §20.10): {display, uri, params}.
export function parseNameAddr(text) {
  const value = (text || "").trim();
  let display = "";
  let rest = value;
  const quoted = /^"((?:[^"\\]|\\.)*)"\s*/.exec(rest);
  if (quoted) {
    display = quoted[1].replace(/\\(.)/g, "$1");
    rest = rest.slice(quoted[0].length);
  }
  let uri;
  let paramText;
  const open = rest.indexOf("<");
  if (open >= 0) {
    const close = rest.indexOf(">", open);
    if (close < 0) throw new SipParseError(`unclosed < in ${JSON.stringify(value)}`);
    if (!quoted) display = rest.slice(0, open).trim();
    uri = rest.slice(open + 1, close).trim();
    paramText = rest.slice(close + 1);
  } else {
    // addr-spec without brackets: parameters after ';' belong to the header.
    const semi = rest.indexOf(";");
    uri = (semi < 0 ? rest : rest.slice(0, semi)).trim();
    paramText = semi < 0 ? "" : rest.slice(semi);
  }
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(uri)) throw new SipParseError(`bad URI in ${JSON.stringify(value)}`);
  return { display, uri, params: parseParams(paramText) };
}

// sip:user@host:port;params (RFC 3261 §19.1), enough to read lr, transport
// and the user part.
export function parseUri(text) {
  const match = /^(sips?):(?:([^@;?]*)@)?(\[[^\]]+\]|[^:;?]+)(?::(\d+))?([^?]*)(?:\?(.*))?$/i.exec((text || "").trim());
  if (!match) throw new SipParseError(`bad SIP URI ${JSON.stringify(text)}`);
  let user = null;
  try {
    if (match[2] !== undefined) user = decodeURIComponent(match[2].split(":")[0]);
  } catch {
    throw new SipParseError(`bad escape in the user part of ${JSON.stringify(text)}`);
  }
  return {
    scheme: match[1].toLowerCase(),
    user,
    host: match[3],
    port: match[4] ? Number(match[4]) : null,
    params: parseParams(match[5]),
  };
}

// SIP/2.0/WSS host:port;params (RFC 3261 §20.42).
export function parseVia(text) {
  const match = /^\s*SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z]+)\s+(\[[^\]]+\]|[^\s:;]+)(?:\s*:\s*(\d+))?\s*(;.*)?$/i.exec(text || "");
  if (!match) throw new SipParseError(`bad Via ${JSON.stringify(text)}`);
  return {
    transport: match[1].toUpperCase(),
    host: match[2],
    port: match[3] ? Number(match[3]) : null,
    params: parseParams(match[4] || ""),
  };
}

// RFC 3261 §8.2.6.2: Via, From, To (with our tag), Call-ID and CSeq copied
// from the request; Record-Route too in a dialog-forming response (§12.1.1).
export function buildResponse(request, status, { reason, toTag, headers = [], body = "" } = {}) {
  const out = new Headers();
  for (const via of request.headers.getAll("Via")) out.add("Via", via);
  out.add("From", request.headers.get("From"));
  let to = request.headers.get("To");
  if (toTag && status > 100 && !request.to.params.has("tag")) to += `;tag=${toTag}`;
  out.add("To", to);
  out.add("Call-ID", request.callId);
  out.add("CSeq", request.headers.get("CSeq"));
  if (request.method === "INVITE" && status > 100 && status < 300) {
    for (const route of request.headers.getAll("Record-Route")) out.add("Record-Route", route);
  }
  for (const [name, value] of headers) out.add(name, value);
  return new SipResponse(status, reason || REASONS[status] || "Unknown", out, body);
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export function randomToken(length = 10) {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => ALPHABET[b % ALPHABET.length]).join("");
}

// RFC 3261 §8.1.1.7: the magic cookie marks an RFC 3261 branch.
export function newBranch() {
  return "z9hG4bK" + randomToken(16);
}
