// Charts drawn by hand in SVG (no library): events per label over time from
// GET /api/v1/stats, and events per camera and label over the same range.

import { api, ApiError } from "./api.js";
import { $, el, svg, clear, formatTime, isoUtc } from "./dom.js";
import { cameraName, EVENT_KINDS } from "./state.js";
import { cameraPicker } from "./camerapick.js";

const HEIGHT = 260;
const MARGIN = { top: 12, right: 16, bottom: 28, left: 44 };
// The API refuses buckets under 60 s.
const BUCKETS = { 900: 60, 3600: 60, 21600: 600, 86400: 1800, 604800: 10800 };
const PALETTE = ["#4fc3f7", "#ffb74d", "#81c784", "#f06292", "#ba68c8", "#fff176", "#4db6ac", "#e57373", "#9575cd", "#aed581"];
const FIXED = { person: 0, car: 1, bicycle: 2, truck: 3, bus: 4, motorcycle: 5 };
const NO_LABEL = "(no label)";
// rows of the chart of events per camera: the cameras with the most events in the range
const TOP_CAMERAS = 25;

let active = false;
let last = null;       // {data, since, until, bucket}
let hidden = new Set();
let controller = null;
let cursorIndex = null;

export function colorOf(label) {
  if (label in FIXED) return PALETTE[FIXED[label]];
  let hash = 0;
  for (const ch of label) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

/** Round tick steps: 1, 2, 5 × 10^n. */
function niceStep(max, ticks) {
  const raw = Math.max(max, 1) / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return Math.max(1, m * power);
  return Math.max(1, 10 * power);
}

function series(data, since, until, bucket) {
  const start = Math.floor(since / bucket) * bucket;
  const count = Math.max(1, Math.ceil((until - start) / bucket));
  const byLabel = new Map();
  for (const item of data.buckets || []) {
    const label = item.label || NO_LABEL;
    const index = Math.round((item.bucket_start - start) / bucket);
    if (index < 0 || index >= count) continue;
    if (!byLabel.has(label)) byLabel.set(label, new Array(count).fill(0));
    byLabel.get(label)[index] += item.count;
  }
  const labels = [...byLabel.keys()].sort((a, b) => sum(byLabel.get(b)) - sum(byLabel.get(a)) || a.localeCompare(b));
  return { start, count, labels, byLabel };
}

const sum = (values) => values.reduce((a, b) => a + b, 0);
const chartWidth = (box) => Math.max(320, box.clientWidth || 800);
let drawnWidth = 0;

function drawTimeline() {
  const box = $("#chart-timeline");
  clear(box);
  if (!last) return;
  const { data, since, until, bucket } = last;
  const { start, count, labels, byLabel } = series(data, since, until, bucket);
  const width = chartWidth(box);
  drawnWidth = width;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const visibleLabels = labels.filter((l) => !hidden.has(l));
  let max = 0;
  for (const label of visibleLabels) for (const v of byLabel.get(label)) max = Math.max(max, v);
  const step = niceStep(max, 4);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const x = (i) => MARGIN.left + (count === 1 ? plotW / 2 : (i / (count - 1)) * plotW);
  const y = (v) => MARGIN.top + plotH - (v / top) * plotH;

  const chart = svg("svg", { class: "timeline", width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, tabindex: "0", "aria-label": "Events per label over time; arrow keys move the cursor" });
  const grid = svg("g", { class: "grid" });
  for (let v = 0; v <= top; v += step) {
    grid.append(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }));
    grid.append(svg("text", { class: "tick", x: MARGIN.left - 6, y: y(v), "text-anchor": "end", "dominant-baseline": "middle", text: String(v) }));
  }
  const ticks = Math.min(count, Math.max(2, Math.floor(plotW / 110)));
  for (let t = 0; t < ticks; t++) {
    const i = Math.round((t / Math.max(1, ticks - 1)) * (count - 1));
    const when = start + i * bucket;
    grid.append(svg("text", { class: "tick", x: x(i), y: HEIGHT - 8, "text-anchor": t === 0 ? "start" : t === ticks - 1 ? "end" : "middle", text: formatTime(when, { seconds: bucket < 60 }) }));
  }
  chart.append(grid);

  for (const label of visibleLabels) {
    const values = byLabel.get(label);
    const color = colorOf(label);
    const line = values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)} ${y(v).toFixed(1)}`).join("");
    const area = `${line}L${x(count - 1).toFixed(1)} ${y(0).toFixed(1)}L${x(0).toFixed(1)} ${y(0).toFixed(1)}Z`;
    chart.append(svg("path", { class: "series-area", d: area, fill: color, dataset: { label } }));
    chart.append(svg("path", { class: "series", d: line, stroke: color, dataset: { label } }));
    values.forEach((v, i) => { if (v > 0) chart.append(svg("circle", { class: "dot", cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: color })); });
  }
  const guide = svg("line", { class: "guide", y1: MARGIN.top, y2: MARGIN.top + plotH, visibility: "hidden" });
  chart.append(guide);
  const hit = svg("rect", { class: "hit", x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH, fill: "transparent" });
  chart.append(hit);
  box.append(chart);

  const tip = el("div", { class: "tooltip", role: "status" });
  tip.hidden = true;
  box.append(tip);
  const showAt = (i) => {
    cursorIndex = Math.max(0, Math.min(count - 1, i));
    const when = start + cursorIndex * bucket;
    guide.setAttribute("x1", x(cursorIndex));
    guide.setAttribute("x2", x(cursorIndex));
    guide.setAttribute("visibility", "visible");
    clear(tip);
    tip.append(el("div", { class: "tip-time", text: `${formatTime(when)} – ${formatTime(when + bucket)}`, title: isoUtc(when) }));
    for (const label of visibleLabels) {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colorOf(label);
      tip.append(el("div", {}, [swatch, el("span", { text: ` ${label}: ` }), el("b", { text: String(byLabel.get(label)[cursorIndex]) })]));
    }
    tip.hidden = false;
    const left = x(cursorIndex) + 12;
    tip.style.left = `${left + 180 > width ? x(cursorIndex) - 190 : left}px`;
    tip.style.top = `${MARGIN.top}px`;
  };
  hit.addEventListener("mousemove", (event) => {
    const rect = chart.getBoundingClientRect();
    const px = event.clientX - rect.left;
    showAt(Math.round(((px - MARGIN.left) / plotW) * (count - 1)));
  });
  hit.addEventListener("mouseleave", () => { tip.hidden = true; guide.setAttribute("visibility", "hidden"); });
  chart.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    event.preventDefault();
    showAt((cursorIndex ?? count - 1) + (event.key === "ArrowLeft" ? -1 : 1));
  });
  chart.addEventListener("blur", () => { tip.hidden = true; guide.setAttribute("visibility", "hidden"); });

  drawLegend(labels, byLabel);
}

function drawLegend(labels, byLabel) {
  const legend = $("#chart-legend");
  clear(legend);
  for (const label of labels) {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colorOf(label);
    const button = el("button", {
      type: "button", class: ["legend-item", hidden.has(label) && "off"], "aria-pressed": String(!hidden.has(label)),
      title: "Show or hide this label",
    }, [swatch, el("span", { class: "legend-label", text: label }), el("span", { class: "legend-total", text: String(sum(byLabel.get(label))) })]);
    button.addEventListener("click", () => {
      if (hidden.has(label)) hidden.delete(label); else hidden.add(label);
      draw();
      const again = [...$("#chart-legend").querySelectorAll(".legend-label")].find((n) => n.textContent === label);
      if (again) again.parentElement.focus();
    });
    legend.append(el("li", {}, [button]));
  }
}

function drawCameras() {
  const box = $("#chart-cameras");
  clear(box);
  if (!last) return;
  // the cameras with the most events (the server ranks them: ?by=label&top=N), each with its
  // counts per label over the range
  const totals = new Map();  // camera -> Map(label -> count)
  for (const item of last.data.top_cameras || []) {
    const label = item.label || NO_LABEL;
    if (hidden.has(label)) continue;
    if (!totals.has(item.camera_id)) totals.set(item.camera_id, new Map());
    const per = totals.get(item.camera_id);
    per.set(label, (per.get(label) || 0) + item.count);
  }
  const cameras = [...totals.keys()].sort((a, b) => sum([...totals.get(b).values()]) - sum([...totals.get(a).values()]));
  const ranked = Number.isInteger(last.data.cameras) ? last.data.cameras : cameras.length;
  $("#chart-cameras-caption").textContent = ranked > TOP_CAMERAS
    ? `Events per camera and label in the range: the ${TOP_CAMERAS} cameras with the most, of ${ranked}`
    : "Events per camera and label in the range";
  if (!cameras.length) return;
  const rowH = 22;
  const labelW = 190;
  const width = Math.max(320, box.clientWidth || 800);
  const height = cameras.length * rowH + 8;
  const max = Math.max(...cameras.map((c) => sum([...totals.get(c).values()])));
  const scale = (width - labelW - 60) / Math.max(1, max);
  const chart = svg("svg", { class: "bars", width, height, viewBox: `0 0 ${width} ${height}` });
  cameras.forEach((camera, row) => {
    const yTop = 4 + row * rowH;
    const name = cameraName(camera);
    chart.append(svg("text", { class: "bar-name", x: labelW - 8, y: yTop + rowH / 2, "text-anchor": "end", "dominant-baseline": "middle", text: name.length > 24 ? name.slice(0, 23) + "…" : name }, [svg("title", { text: name })]));
    let xPos = labelW;
    const per = [...totals.get(camera).entries()].sort((a, b) => b[1] - a[1]);
    for (const [label, n] of per) {
      const w = n * scale;
      chart.append(svg("rect", { class: "bar", x: xPos.toFixed(1), y: yTop + 3, width: Math.max(1, w).toFixed(1), height: rowH - 6, fill: colorOf(label), dataset: { label, camera } }, [svg("title", { text: `${name} · ${label}: ${n}` })]));
      xPos += w;
    }
    chart.append(svg("text", { class: "bar-total", x: xPos + 6, y: yTop + rowH / 2, "dominant-baseline": "middle", text: String(sum(per.map((p) => p[1]))) }));
  });
  box.append(chart);
}

function draw() {
  drawTimeline();
  drawCameras();
}

async function load() {
  if (controller) controller.abort();
  controller = new AbortController();
  const form = $("#chart-filters");
  const range = Number(form.range.value) || 3600;
  const bucket = BUCKETS[range] || Math.max(60, Math.round(range / 60));
  const until = Date.now() / 1000;
  const since = until - range;
  const params = { since: since.toFixed(3), until: until.toFixed(3), bucket_s: bucket, by: "label", top: TOP_CAMERAS, camera: form.camera.value.trim() || undefined, kind: form.kind.value || undefined };
  $("#chart-status").textContent = "loading…";
  try {
    const data = await api.get("/api/v1/stats", params, { signal: controller.signal });
    last = { data, since, until, bucket: data.bucket_s || bucket };
    draw();
    const total = sum((data.buckets || []).map((b) => b.count));
    $("#chart-status").textContent = total
      ? `${total} event${total === 1 ? "" : "s"} in ${form.range.selectedOptions[0].textContent}, ${last.bucket} s buckets`
      : "No events in this range.";
  } catch (error) {
    if (controller.signal.aborted) return;
    if (error instanceof ApiError && error.status !== 401) $("#chart-status").textContent = `Charts: ${error.explanation}`;
  }
}

const RELOAD_MS = 30000;
let reloadTimer = null;

export function show() {
  active = true;
  load();
  clearInterval(reloadTimer);
  // An open chart keeps up by itself; a hidden tab skips the reload.
  reloadTimer = setInterval(() => { if (active && !document.hidden) load(); }, RELOAD_MS);
}

export function hide() {
  active = false;
  clearInterval(reloadTimer);
  reloadTimer = null;
}

export function refresh() {
  if (active) load();
}

export function reset() {
  last = null;
  hidden = new Set();
  clear($("#chart-timeline"));
  clear($("#chart-cameras"));
  clear($("#chart-legend"));
}

export function init() {
  const form = $("#chart-filters");
  for (const kind of EVENT_KINDS) form.kind.append(el("option", { value: kind, text: kind.replaceAll("_", " ") }));
  cameraPicker(form.camera, "#chart-camera-options", load);
  form.addEventListener("change", load);
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  let pending = null;
  // Redraw when the width changes (not the height: that changes with the text below, and a
  // redraw would drop the cursor under the mouse).
  const resize = new ResizeObserver(() => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      if (active && last && chartWidth($("#chart-timeline")) !== drawnWidth) draw();
    }, 150);
  });
  resize.observe($("#view-charts"));
}
