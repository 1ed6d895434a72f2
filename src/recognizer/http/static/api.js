// The HTTP API as the page uses it: classify an image, list the models, open a stream, and
// the token, when the server needs one.

const TOKEN_KEY = "recognizer.token"; // in sessionStorage: this tab only, gone when it closes
const STREAM_PROTOCOL = "recognizer.v1";
const TOKEN_PROTOCOL = "base64url.bearer.recognizer.v1."; // + the token in base64url

export class ApiError extends Error {
  // `reason` is the ErrorInfo reason gRPC would give; `retryAfter` is in seconds, or null.
  constructor(status, reason, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export async function classify(blob, { language, model, topK = 5 }) {
  const query = new URLSearchParams({ language, top_k: String(topK) });
  if (model) query.set("model", model);
  const type = blob.type.startsWith("image/") ? blob.type : "application/octet-stream";
  return call(`/v1/classify?${query}`, {
    method: "POST",
    headers: { "Content-Type": type },
    body: blob,
  });
}

export async function listModels() {
  return (await call("/v1/models")).models;
}

// Every call sends the token, if there is one; a 401 also tells the page (the event
// "unauthenticated"), which asks for a token.
async function call(url, init = {}) {
  const headers = { ...init.headers };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let response;
  try {
    response = await fetch(url, { ...init, headers });
  } catch {
    throw new ApiError(0, "UNREACHABLE", "cannot reach the server");
  }
  const body = await response.json();
  if (response.ok) return body;
  const error = fromErrorBody(response, body);
  if (response.status === 401) {
    document.dispatchEvent(new CustomEvent("unauthenticated", { detail: error }));
  }
  throw error;
}

export function streamUrl({ language, model, topK, maxFrameAgeMs }) {
  const query = new URLSearchParams({
    policy: "latest",
    max_frame_age_ms: String(maxFrameAgeMs),
    language,
    top_k: String(topK),
  });
  if (model) query.set("model", model);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/classify/stream?${query}`;
}

// A browser cannot set headers on a WebSocket: the token goes as a subprotocol, which the
// server reads and does not echo (it selects recognizer.v1).
export function streamProtocols() {
  const value = token();
  return value ? [STREAM_PROTOCOL, TOKEN_PROTOCOL + base64url(value)] : [STREAM_PROTOCOL];
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  const base64 = btoa(String.fromCharCode(...bytes));
  return base64.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

// A google.rpc.Status (a stream frame's `error`) as an ApiError.
export function fromStatus(status) {
  const info = (status.details || []).find((d) => d["@type"].endsWith("google.rpc.ErrorInfo"));
  return new ApiError(0, info ? info.reason : "UNKNOWN", status.message);
}

function fromErrorBody(response, body) {
  const error = body.error || {};
  const info = (error.details || []).find((d) => d["@type"].endsWith("google.rpc.ErrorInfo"));
  const retryAfter = response.headers.get("Retry-After");
  return new ApiError(
    response.status,
    info ? info.reason : "UNKNOWN",
    error.message || response.statusText,
    retryAfter === null ? null : Number(retryAfter),
  );
}
