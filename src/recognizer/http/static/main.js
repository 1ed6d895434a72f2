// The page: the language and model switches, the two modes as tabs, and paste.

import { listModels } from "./api.js";
import { CameraMode } from "./camera.js";
import { language, setLanguage } from "./i18n.js";
import { PhotoMode } from "./photo.js";
import { describeError, showError } from "./render.js";

const modelSelect = document.querySelector("#model");
const settings = () => ({ language: language(), model: modelSelect.value });
const photo = new PhotoMode(document.querySelector("#photo"), settings);
const camera = new CameraMode(document.querySelector("#camera"), settings);

function settingsChanged() {
  photo.classify();
  camera.restart();
}

// Language: the browser's at first; the switch changes the page's words and the labels.
setLanguage(navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en");
for (const radio of document.querySelectorAll("input[name=language]")) {
  radio.checked = radio.value === language();
  radio.addEventListener("change", () => {
    setLanguage(radio.value);
    settingsChanged();
  });
}

// Models: the served ones, the default first.
listModels().then(
  (models) => {
    modelSelect.replaceChildren(
      ...models.map((model) => new Option(`${model.name} (${model.num_classes})`, model.name)),
    );
  },
  (error) => showError(document.querySelector("#photo-error"), describeError(error)),
);
modelSelect.addEventListener("change", settingsChanged);

// Tabs: click, or the arrow keys between them.
const tabs = [...document.querySelectorAll("[role=tab]")];
function select(tab) {
  for (const other of tabs) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", String(chosen));
    other.tabIndex = chosen ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
  }
  if (tab.id !== "tab-camera" && camera.running) camera.stop();
}
for (const [index, tab] of tabs.entries()) {
  tab.addEventListener("click", () => select(tab));
  tab.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = tabs[(index + step + tabs.length) % tabs.length];
    select(next);
    next.focus();
  });
}

document.addEventListener("paste", (event) => {
  if (!document.querySelector("#photo").hidden) photo.paste(event);
});
