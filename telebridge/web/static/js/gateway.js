// The gateway's HTTP side, seen from the page: tokens and ICE servers.

export class TokenRefused extends Error {
  constructor() {
    super("the gateway refused the token");
    // The WebSocket reconnect loop stops on this: retrying cannot help.
    this.permanent = true;
  }
}

// The JWT's claims, read without checking the signature: the page needs
// the user name for From and To (the gateway checks they match the token).
export function tokenClaims(token) {
  const parts = (token || "").trim().split(".");
  if (parts.length !== 3) throw new Error("this is not a token (a JWT has three parts)");
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json);
    if (typeof claims.sub !== "string" || !claims.sub) throw new Error("no sub");
    return claims;
  } catch {
    throw new Error("this token does not name a user (no sub claim)");
  }
}

// GET /api/ice-servers: checks the token as the WebSocket upgrade would,
// which is the only way a page can learn why a handshake would fail.
export async function fetchIceServers(token) {
  const response = await fetch("/api/ice-servers", {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (response.status === 401) throw new TokenRefused();
  if (!response.ok) throw new Error(`GET /api/ice-servers: ${response.status}`);
  const body = await response.json();
  return Array.isArray(body.iceServers) ? body.iceServers : [];
}

// GET /api/dev-token?user=NAME (embedded default, loopback clients only).
export async function fetchDevToken(user) {
  const response = await fetch(`/api/dev-token?user=${encodeURIComponent(user)}`, { cache: "no-store" });
  if (response.status === 404) throw new Error("dev tokens are off on this gateway");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `GET /api/dev-token: ${response.status}`);
  return body.token;
}

// Whether this gateway hands dev tokens to this page: the resource answers
// 400 to a request without a user, 403 to a remote client, and is absent
// (404) in a configured deployment.
export async function devTokensOffered() {
  try {
    const response = await fetch("/api/dev-token", { cache: "no-store" });
    return response.status === 400;
  } catch {
    return false;
  }
}
