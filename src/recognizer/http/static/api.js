// The HTTP API as the page uses it: classify an image, list the models, open a stream.

export class ApiError extends Error {
  // `reason` is the ErrorInfo reason gRPC would give; `retryAfter` is in seconds, or null.
  constructor(status, reason, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }
}

export async function classify(blob, { language, model, topK = 5 }) {
  const query = new URLSearchParams({ language, top_k: String(topK) });
  if (model) query.set("model", model);
  const type = blob.type.startsWith("image/") ? blob.type : "application/octet-stream";
  let response;
  try {
    response = await fetch(`/v1/classify?${query}`, {
      method: "POST",
      headers: { "Content-Type": type },
      body: blob,
    });
  } catch {
    throw new ApiError(0, "UNREACHABLE", "cannot reach the server");
  }
  const body = await response.json();
  if (!response.ok) throw fromErrorBody(response, body);
  return body;
}

export async function listModels() {
  const response = await fetch("/v1/models");
  if (!response.ok) throw fromErrorBody(response, await response.json());
  return (await response.json()).models;
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
