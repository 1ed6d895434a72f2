// Photo mode: an image dropped, pasted or picked is sent to /v1/classify and drawn with its
// labels. A change of language or model classifies the same image again.

import { classify } from "./api.js";
import { describeError, describeTiming, renderLabels, showError } from "./render.js";

export class PhotoMode {
  constructor(root, settings) {
    this.settings = settings; // () => ({ language, model })
    this.image = null;
    this.dropzone = root.querySelector("#dropzone");
    this.input = root.querySelector("#file");
    this.error = root.querySelector("#photo-error");
    this.result = root.querySelector("#photo-result");
    this.preview = root.querySelector("#preview");
    this.labels = root.querySelector("#photo-labels");
    this.meta = root.querySelector("#photo-meta");

    this.input.addEventListener("change", () => {
      if (this.input.files.length) this.show(this.input.files[0]);
      this.input.value = "";
    });
    this.dropzone.addEventListener("dragover", (event) => {
      event.preventDefault();
      this.dropzone.classList.add("over");
    });
    this.dropzone.addEventListener("dragleave", () => this.dropzone.classList.remove("over"));
    this.dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.dropzone.classList.remove("over");
      const file = event.dataTransfer.files[0];
      if (file) this.show(file);
    });
  }

  // A paste anywhere on the page, while this mode is shown.
  paste(event) {
    const item = [...event.clipboardData.items].find((i) => i.kind === "file");
    if (item) this.show(item.getAsFile());
  }

  async show(file) {
    this.image = file;
    if (this.preview.src) URL.revokeObjectURL(this.preview.src);
    this.preview.src = URL.createObjectURL(file);
    this.preview.alt = file.name || "";
    await this.classify();
  }

  async classify() {
    if (!this.image) return;
    const image = this.image;
    this.result.setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const response = await classify(image, this.settings());
      if (image !== this.image) return; // a newer image was chosen meanwhile
      renderLabels(this.labels, response.labels);
      this.meta.textContent = describeTiming(response, performance.now() - started);
      showError(this.error, "");
      this.result.hidden = false;
    } catch (error) {
      if (image !== this.image) return;
      showError(this.error, describeError(error));
      this.result.hidden = true;
    } finally {
      this.result.removeAttribute("aria-busy");
    }
  }
}
