// What a failed request means to the person at the phone. SIP reason
// phrases are for machines and vary by PBX; these texts do not.

export const TOKEN_REFUSED = "the gateway refused your token";
export const CONNECTION_LOST = "the connection to the gateway was lost";
export const TURN_REFUSED = "the TURN server refused the softphone's credentials";
export const NO_MEDIA_PATH = "the browser found no network path for the call's audio";
export const AUDIO_PATH_LOST = "the call's audio path was lost";

const TEXTS = {
  400: "the gateway could not read the request",
  401: "the gateway asked for a password the softphone does not have",
  402: "the call needs payment",
  403: TOKEN_REFUSED,
  404: "not found",
  405: "the gateway does not accept this kind of request",
  407: "the gateway asked for a password the softphone does not have",
  408: "nobody answered",
  410: "the number is no longer in service",
  413: "the request was too large for the gateway",
  415: "the other side cannot read the media description",
  416: "the address is not a SIP address the gateway can reach",
  420: "the gateway needs a SIP extension the softphone lacks",
  421: "the gateway needs a SIP extension the softphone lacks",
  480: "nobody answered",
  481: "the call no longer exists at the gateway",
  482: "the call looped back to you",
  483: "the call went through too many hops",
  484: "the number is incomplete",
  485: "the number is ambiguous",
  486: "the number is busy",
  487: "the call was cancelled",
  488: "the other side cannot take this kind of call (no common codec)",
  500: "the gateway failed (internal error)",
  501: "the gateway does not support this request",
  502: "the network beyond the gateway failed",
  503: "the gateway is unavailable right now",
  504: "the network beyond the gateway did not answer",
  513: "the request was too large for the gateway",
  600: "the number is busy",
  603: "the call was declined",
  604: "not found",
  606: "the other side cannot take this kind of call (no common codec)",
};

export function describeFailure(status, reason = "") {
  if (TEXTS[status]) return TEXTS[status];
  const suffix = reason ? ` (${status} ${reason})` : ` (${status})`;
  if (status >= 600) return "the call was refused everywhere" + suffix;
  if (status >= 500) return "the gateway or the network failed" + suffix;
  return "the call failed" + suffix;
}

// getUserMedia and RTCPeerConnection failures, by DOMException name.
export function describeMediaError(error) {
  switch (error && error.name) {
    case "NotAllowedError":
      return "the browser did not allow the microphone";
    case "NotFoundError":
      return "no microphone was found";
    case "NotReadableError":
      return "the microphone is in use by another program";
    case "NoCandidates":
      // STUN error 401 (RFC 8489 §14.8) from a TURN server: wrong or expired credentials.
      return error.turnErrors.includes(401) ? TURN_REFUSED : NO_MEDIA_PATH;
    default:
      return `the browser could not set up the call's media (${error && error.message})`;
  }
}
