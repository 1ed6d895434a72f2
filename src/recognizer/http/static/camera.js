// Live camera mode: getUserMedia frames, taken at the chosen rate, sent as JPEGs over the
// WebSocket stream with the latest-frame policy; the answers are drawn over the video.

import { fromStatus, listModels, streamProtocols, streamUrl } from "./api.js";
import { t } from "./i18n.js";
import { describeError, renderLabels, showError } from "./render.js";

const MAX_FRAME_AGE_MS = 500; // the server skips frames older than this
const LONGEST_SIDE = 640; // frames are scaled down to this before encoding
const LATENCIES_KEPT = 20; // the latency shown is the median of the last ones

export class CameraMode {
  constructor(root, settings) {
    this.settings = settings; // () => ({ language, model })
    this.toggle = root.querySelector("#camera-toggle");
    this.rate = root.querySelector("#camera-rate");
    this.video = root.querySelector("#video");
    this.labels = root.querySelector("#camera-labels");
    this.error = root.querySelector("#camera-error");
    this.stats = {
      latency: root.querySelector("#stat-latency"),
      answered: root.querySelector("#stat-answered"),
      skipped: root.querySelector("#stat-skipped"),
      failed: root.querySelector("#stat-failed"),
    };
    this.canvas = document.createElement("canvas");
    this.media = null;
    this.socket = null;
    this.timer = null;

    this.toggle.addEventListener("click", () => (this.media ? this.stop() : this.start()));
    this.rate.addEventListener("change", () => this.media && this.pace());
  }

  get running() {
    return this.media !== null;
  }

  async start() {
    showError(this.error, "");
    if (!navigator.mediaDevices) {
      showError(this.error, t("noCamera") + t("needsSecure")); // browsers allow it nowhere else
      return;
    }
    try {
      this.media = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } },
        audio: false,
      });
    } catch (error) {
      showError(this.error, t("noCamera") + error.message);
      return;
    }
    this.video.srcObject = this.media;
    await this.video.play();
    this.toggle.dataset.text = "stop";
    this.toggle.textContent = t("stop");
    this.connect();
  }

  stop() {
    clearInterval(this.timer);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close();
    }
    for (const track of this.media ? this.media.getTracks() : []) track.stop();
    this.media = this.socket = this.timer = null;
    this.video.srcObject = null;
    this.toggle.dataset.text = "start";
    this.toggle.textContent = t("start");
  }

  // A new stream for new settings (language, model): the counts start again.
  restart() {
    if (!this.running) return;
    this.socket.onclose = null;
    this.socket.close();
    this.connect();
  }

  connect() {
    const { language, model } = this.settings();
    const socket = new WebSocket(
      streamUrl({ language, model, topK: 3, maxFrameAgeMs: MAX_FRAME_AGE_MS }),
      streamProtocols(),
    );
    this.socket = socket;
    let opened = false;
    this.sent = new Map(); // request id -> when it was sent
    this.latencies = [];
    this.next = 0;
    this.encoding = false;
    this.counts = { answered: 0, skipped: 0, failed: 0 };
    this.drawStats();
    socket.onmessage = (event) => this.answer(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.stop();
      if (!opened) {
        // Refused at its handshake, whose answer a page cannot read: a call that can says
        // why (a 401 brings up the token form).
        showError(this.error, t("streamRefused"));
        listModels().catch((error) => showError(this.error, describeError(error)));
        return;
      }
      const reason = event.reason ? describeError({ reason: event.reason }) : `${event.code}`;
      showError(this.error, t("streamEnded") + reason);
    };
    socket.onopen = () => {
      opened = true;
      this.pace();
    };
  }

  pace() {
    clearInterval(this.timer);
    this.timer = setInterval(() => this.capture(), 1000 / Number(this.rate.value));
  }

  // Take the video's current picture and send it, unless the last one is still on its way.
  capture() {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || socket.bufferedAmount > 0) return;
    if (this.encoding || !this.video.videoWidth) return;
    const scale = Math.min(1, LONGEST_SIDE / Math.max(this.video.videoWidth, this.video.videoHeight));
    this.canvas.width = Math.round(this.video.videoWidth * scale);
    this.canvas.height = Math.round(this.video.videoHeight * scale);
    this.canvas.getContext("2d").drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
    this.encoding = true;
    this.canvas.toBlob(
      (blob) => {
        this.encoding = false;
        if (!blob || socket !== this.socket || socket.readyState !== WebSocket.OPEN) return;
        this.sent.set(String(this.next++), performance.now());
        socket.send(blob);
      },
      "image/jpeg",
      0.85,
    );
  }

  answer(message) {
    if ("frames" in message) return; // the stream's closing counts; onclose follows
    const sentAt = this.sent.get(message.request_id);
    this.sent.delete(message.request_id);
    if (message.skipped) {
      this.counts.skipped += 1;
    } else if (message.error) {
      this.counts.failed += 1;
      showError(this.error, describeError(fromStatus(message.error)));
    } else {
      this.counts.answered += 1;
      this.latencies = [...this.latencies, performance.now() - sentAt].slice(-LATENCIES_KEPT);
      renderLabels(this.labels, message.labels);
      showError(this.error, "");
    }
    this.drawStats();
  }

  drawStats() {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    this.stats.latency.textContent = median === undefined ? "–" : `${median.toFixed(0)} ms`;
    for (const key of ["answered", "skipped", "failed"]) {
      this.stats[key].textContent = String(this.counts[key]);
    }
  }
}
