// The page: the language and model switches, the two modes as tabs, paste, and the token.

import { listModels, setToken, token } from "./api.js";
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

// Models: those served (to this token's tenant), the default first.
async function loadModels() {
  const models = await listModels();
  const chosen = modelSelect.value;
  modelSelect.replaceChildren(
    ...models.map((model) => new Option(`${model.name} (${model.num_classes})`, model.name)),
  );
  if (models.some((model) => model.name === chosen)) modelSelect.value = chosen;
}
loadModels().catch((error) => {
  if (error.status !== 401) showError(document.querySelector("#photo-error"), describeError(error));
});
modelSelect.addEventListener("change", settingsChanged);

// The token: asked for when the server answers 401, kept in sessionStorage (this tab only).
const tokenForm = document.querySelector("#token-form");
const tokenInput = document.querySelector("#token");
const tokenMessage = document.querySelector("#token-message");
const forgetToken = document.querySelector("#forget-token");
forgetToken.hidden = !token();
document.addEventListener("unauthenticated", (event) => {
  showError(tokenMessage, describeError(event.detail));
  const focused = !tokenForm.hidden && document.activeElement === tokenInput;
  tokenForm.hidden = false;
  if (!focused) tokenInput.focus();
});
tokenForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  setToken(tokenInput.value.trim());
  tokenInput.value = "";
  forgetToken.hidden = !token();
  try {
    await loadModels();
  } catch (error) {
    showError(tokenMessage, describeError(error));
    return;
  }
  tokenForm.hidden = true;
  showError(document.querySelector("#photo-error"), "");
  settingsChanged();
});
forgetToken.addEventListener("click", () => {
  setToken(null);
  forgetToken.hidden = true;
  if (camera.running) camera.stop();
  loadModels().catch(() => {}); // a server that needs a token asks again
});

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
