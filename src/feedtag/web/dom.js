// Small DOM helpers. Everything that comes from data goes in through textContent or
// setAttribute, never through innerHTML: a camera named "<script>…" is shown as text.
// Inline styles and inline event handlers are refused here as well, because the page's
// Content-Security-Policy (default-src 'self') would block them anyway.

const SVG_NS = "http://www.w3.org/2000/svg";

function refuseAttribute(name) {
  const lower = String(name).toLowerCase();
  if (lower === "style" || lower.startsWith("on") || lower === "srcdoc") {
    throw new Error(`refusing to set attribute ${name}: use classes and listeners`);
  }
}

function apply(node, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else {
      refuseAttribute(key);
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of [].concat(children || [])) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** el("span", {class: "badge", text: name}) — an HTML element. */
export function el(tag, props, children) {
  return apply(document.createElement(tag), props, children);
}

/** svg("path", {d: "M0 0L1 1"}) — an SVG element. */
export function svg(tag, props, children) {
  return apply(document.createElementNS(SVG_NS, tag), props, children);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

const pad = (n) => String(n).padStart(2, "0");

/** Local wall-clock time of a Unix time; the date too when it is not today. */
export function formatTime(unixSeconds, { seconds = true } = {}) {
  if (unixSeconds === null || unixSeconds === undefined) return "—";
  const d = new Date(unixSeconds * 1000);
  const now = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? ":" + pad(d.getSeconds()) : ""}`;
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function isoUtc(unixSeconds) {
  if (unixSeconds === null || unixSeconds === undefined) return "";
  return new Date(unixSeconds * 1000).toISOString().replace(".000Z", "Z");
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

export function formatNumber(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "—";
  return Number(value).toFixed(digits);
}

/** "2 min ago" style age of a Unix time. */
export function formatAge(unixSeconds) {
  if (!unixSeconds) return "";
  const age = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (age < 60) return `${Math.round(age)} s ago`;
  if (age < 3600) return `${Math.round(age / 60)} min ago`;
  if (age < 86400) return `${Math.round(age / 3600)} h ago`;
  return `${Math.round(age / 86400)} d ago`;
}

/** A CSS-class-safe token from data (class names are never built from raw strings). */
export function token(value, allowed, fallback = "other") {
  return allowed.includes(value) ? value : fallback;
}

/** Whether a key press should be left to a text field. */
export function typingIn(target) {
  if (!target || !(target instanceof Element)) return false;
  return target.closest("input, textarea, select, [contenteditable]") !== null;
}
