// The page's words in both languages; the language switch sets the labels' language too.

const WORDS = {
  zh: {
    language: "语言",
    model: "模型",
    photoTab: "照片",
    cameraTab: "实时摄像头",
    drop: "拖入、粘贴或选择一张图片",
    start: "打开摄像头",
    stop: "关闭摄像头",
    rate: "每秒帧数",
    latency: "延迟",
    answered: "已识别",
    skipped: "已跳过",
    failed: "失败",
    docs: "API 文档",
    onServer: "服务器用时",
    queue: "排队",
    preprocess: "预处理",
    inference: "推理",
    batch: "批大小",
    cached: "缓存命中",
    roundTrip: "往返",
    notImage: "这不是图片，或图片已损坏。",
    tooLarge: "图片太大了。",
    busy: "服务器正忙，请稍后再试。",
    busyIn: (seconds) => `服务器正忙，请 ${seconds} 秒后再试。`,
    draining: "服务器正在重启，请稍后再试。",
    tooSlow: "服务器没能及时回答。",
    unreachable: "连不上服务器。",
    noCamera: "无法打开摄像头：",
    needsSecure: "浏览器只在 https 或 localhost 页面上允许使用摄像头。",
    streamEnded: "实时识别已结束：",
    streamRefused: "服务器拒绝了实时识别。",
    token: "令牌",
    useToken: "使用令牌",
    forgetToken: "忘记令牌",
    tokenKept: "令牌只保存在这个标签页里，关闭即清除。",
    needsToken: "这个服务器需要令牌。",
    tokenRefused: "令牌被拒绝了：它不对，或已被吊销。",
    notAllowed: "你的令牌不能使用这个模型。",
  },
  en: {
    language: "Language",
    model: "Model",
    photoTab: "Photo",
    cameraTab: "Live camera",
    drop: "Drop, paste or choose an image",
    start: "Start camera",
    stop: "Stop camera",
    rate: "Frames a second",
    latency: "Latency",
    answered: "Answered",
    skipped: "Skipped",
    failed: "Failed",
    docs: "API docs",
    onServer: "on the server",
    queue: "queue",
    preprocess: "preprocess",
    inference: "inference",
    batch: "batch",
    cached: "from the cache",
    roundTrip: "round trip",
    notImage: "This is not an image, or it is damaged.",
    tooLarge: "The image is too large.",
    busy: "The server is busy: try again shortly.",
    busyIn: (seconds) => `The server is busy: try again in ${seconds} s.`,
    draining: "The server is restarting: try again shortly.",
    tooSlow: "The server did not answer in time.",
    unreachable: "Cannot reach the server.",
    noCamera: "Cannot open the camera: ",
    needsSecure: "browsers allow it only on https or localhost pages.",
    streamEnded: "The live stream ended: ",
    streamRefused: "The server refused the live stream.",
    token: "Token",
    useToken: "Use token",
    forgetToken: "Forget token",
    tokenKept: "Kept in this tab only, until it closes.",
    needsToken: "This server needs a token.",
    tokenRefused: "The token was refused: it is wrong, or it was revoked.",
    notAllowed: "Your token may not use this model.",
  },
};

let current = "zh";

export function language() {
  return current;
}

export function setLanguage(tag) {
  current = tag in WORDS ? tag : "en";
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const element of document.querySelectorAll("[data-text]")) {
    element.textContent = WORDS[current][element.dataset.text];
  }
}

export function t(key, ...args) {
  const word = WORDS[current][key];
  return typeof word === "function" ? word(...args) : word;
}
