// Drawing answers: ranked labels with score bars, the server's timing, errors in words.

import { t } from "./i18n.js";

export function renderLabels(list, labels) {
  list.replaceChildren(
    ...labels.map((label) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label.label;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `${(label.score * 100).toFixed(1)}%`;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.setProperty("--score", String(label.score));
      item.append(name, score, bar);
      return item;
    }),
  );
}

// "efficientnet-lite0 · 31.2 ms on the server (queue 0.1, preprocess 3.1, inference 28.0) · …"
export function describeTiming(response, roundTripMs) {
  const timing = response.timing;
  const ms = (micros) => Number(micros) / 1000;
  const parts = [ms(timing.queue_us), ms(timing.preprocess_us), ms(timing.inference_us)];
  const total = parts.reduce((a, b) => a + b, 0);
  const stages = [t("queue"), t("preprocess"), t("inference")]
    .map((stage, i) => `${stage} ${parts[i].toFixed(1)}`)
    .join(", ");
  const extra = timing.cache_hit ? t("cached") : `${t("batch")} ${timing.batch_size}`;
  return [
    response.model,
    `${total.toFixed(1)} ms ${t("onServer")} (${stages})`,
    extra,
    `${t("roundTrip")} ${roundTripMs.toFixed(0)} ms`,
  ].join(" · ");
}

export function describeError(error) {
  switch (error.reason) {
    case "IMAGE_EMPTY":
    case "IMAGE_UNDECODABLE":
    case "IMAGE_CORRUPT":
      return t("notImage");
    case "IMAGE_TOO_LARGE":
    case "MESSAGE_TOO_LARGE":
      return t("tooLarge");
    case "QUEUE_FULL":
      return error.retryAfter ? t("busyIn", error.retryAfter) : t("busy");
    case "SHUTTING_DOWN":
      return t("draining");
    case "DEADLINE_EXCEEDED":
      return t("tooSlow");
    case "UNREACHABLE":
      return t("unreachable");
    case "CREDENTIALS_MISSING":
      return t("needsToken");
    case "TOKEN_INVALID":
      return t("tokenRefused");
    case "MODEL_NOT_ALLOWED":
      return t("notAllowed");
    default:
      return error.message || error.reason;
  }
}

export function showError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}
