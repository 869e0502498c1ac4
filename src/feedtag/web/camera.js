// One camera large: its live anonymized image with zones and lines, its numbers, and its
// latest events (each opens the event dialog).

import { api, ApiError, freshUrl } from "./api.js";
import { $, el, svg, clear, formatTime, formatNumber, isoUtc } from "./dom.js";
import { drawOverlay } from "./overlay.js";
import { openEvent } from "./events.js";
import { colorOf } from "./charts.js";
import { cameraState, normalizeCamera, showAnalysisLevel, CostMeter, COST_PARTS } from "./state.js";

const REFRESH_MS = 3000;
const RECENT = 12;
const PRESENCE_S = 3600;
const PRESENCE_EVERY = 10;  // ticks: the presence strip is renewed every 30 s
const MAX_LABELS = 6;

let view = null;  // {camera, overlay, size, overlayKey, timer}

function fields(camera) {
  const status = camera.status || {};
  const vision = camera.vision;
  const counts = vision ? Object.entries(vision.counts || {}).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") : "";
  const stateName = cameraState(camera);
  const rows = [
    ["State", `${stateName}${status.reason && stateName !== "online" ? ` — ${status.reason}` : ""}`],
    ["In view", counts || (vision ? "nothing" : "no analysis yet")],
    ["Analysed fps", `${formatNumber(status.analysed_fps)} of ${formatNumber(camera.analysis_fps)}`],
    ["Decoded fps", formatNumber(status.decoded_fps)],
    ["Decode mode", status.mode || "—"],
    ["Gate skipped", vision && vision.gated_ratio !== null && vision.gated_ratio !== undefined ? `${Math.round(vision.gated_ratio * 100)}%` : "—"],
    ["Detector", vision && vision.latency_ms !== null && vision.latency_ms !== undefined ? `${formatNumber(vision.latency_ms, 0)} ms` : "—"],
    ["Tracks", vision ? String(vision.tracks ?? 0) : "—"],
    ["Drops / reconnects", `${status.drops ?? 0} / ${status.reconnects ?? 0}`],
    ["Cost", costText(camera)],
    ["Zones", (camera.zones || []).map((z) => z.name).join(", ") || "—"],
    ["Lines", (camera.lines || []).map((l) => l.name).join(", ") || "—"],
    ["Source", camera.url || "—"],
  ];
  showAnalysisLevel($("#camera-level"), camera);
  const list = $("#camera-fields");
  clear(list);
  for (const [term, value] of rows) list.append(el("dt", { text: term }), el("dd", { text: value }));
}

/** What the camera costs per second, with its parts: "10.3 ms/s (ingest 3.5, detector 5.9,
 * analysis 0.8, media 0.1)". */
function costText(camera) {
  const cost = view ? view.meter.read(camera) : null;
  if (!cost) return "—";
  const parts = COST_PARTS.map((name) => `${name} ${formatNumber(cost[name])}`);
  return `${formatNumber(cost.total)} ms/s (${parts.join(", ")})`;
}

async function recentEvents(cameraId) {
  const list = $("#camera-events");
  try {
    const data = await api.get("/api/v1/events", { camera: cameraId, limit: RECENT });
    if (view) for (const event of data.items || []) if (event.label) view.labels.add(event.label);
    clear(list);
    for (const event of data.items || []) {
      const button = el("button", { type: "button", class: "recent", dataset: { eventId: event.event_id } }, [
        el("span", { class: "mono", text: formatTime(event.started_at), title: isoUtc(event.started_at) }),
        el("span", { class: "recent-kind", text: event.kind.replaceAll("_", " ") }),
        el("span", { class: "muted", text: [event.label, event.zone].filter(Boolean).join(" · ") }),
      ]);
      button.addEventListener("click", () => openEvent(event.event_id));
      list.append(el("li", {}, [button]));
    }
    if (!list.children.length) list.append(el("li", { class: "muted", text: "No events yet." }));
  } catch (error) {
    clear(list);
    if (error instanceof ApiError) list.append(el("li", { class: "error-text", text: error.explanation }));
  }
}

/** When each label was in view over the last hour (presence tags, anywhere in the image):
 * one row per label, darker where more were in view at once. */
async function presence() {
  if (!view) return;
  const camera = view.camera;
  for (const what of Object.keys((camera.vision && camera.vision.counts) || {})) view.labels.add(what);
  const labels = [...view.labels].sort().slice(0, MAX_LABELS);
  const until = Date.now() / 1000;
  const since = until - PRESENCE_S;
  const box = $("#camera-presence");
  let rows;
  try {
    rows = await Promise.all(labels.map(async (label) => {
      const data = await api.get("/api/v1/tags", { label, camera: camera.id, since: since.toFixed(3), limit: 1000 });
      return [label, (data.items || []).filter((tag) => tag.zone === null)];
    }));
  } catch (error) {
    clear(box);
    if (error instanceof ApiError) box.append(el("p", { class: "error-text", text: `Presence: ${error.explanation}` }));
    return;
  }
  if (!view || view.camera.id !== camera.id) return;
  clear(box);
  if (!rows.length) { box.append(el("p", { class: "muted", text: "Nothing seen yet." })); return; }
  const width = Math.max(300, box.clientWidth || 600);
  const labelW = 80, rowH = 16, top = 4;
  const height = top + rows.length * rowH + 18;
  const x = (t) => labelW + ((Math.min(Math.max(t, since), until) - since) / PRESENCE_S) * (width - labelW - 4);
  const chart = svg("svg", { class: "presence", width, height, viewBox: `0 0 ${width} ${height}` });
  const most = Math.max(1, ...rows.flatMap(([, tags]) => tags.map((tag) => tag.max_count)));
  rows.forEach(([label, tags], index) => {
    const y = top + index * rowH;
    chart.append(svg("text", { class: "tick", x: labelW - 6, y: y + rowH / 2, "text-anchor": "end", "dominant-baseline": "middle", text: label }));
    chart.append(svg("rect", { class: "lane", x: labelW, y: y + 2, width: width - labelW - 4, height: rowH - 4 }));
    for (const tag of tags) {
      const x0 = x(tag.started_at), x1 = x(tag.ended_at ?? until);
      const ends = tag.ended_at ? formatTime(tag.ended_at) : "now";
      chart.append(svg("rect", {
        class: "segment", x: x0.toFixed(1), y: y + 2, width: Math.max(1, x1 - x0).toFixed(1), height: rowH - 4,
        fill: colorOf(label), "fill-opacity": (0.35 + (0.65 * tag.max_count) / most).toFixed(2),
        dataset: { label },
      }, [svg("title", { text: `${label}: up to ${tag.max_count}, ${formatTime(tag.started_at)} – ${ends}` })]));
    }
  });
  for (let i = 0; i <= 4; i++) {
    const t = since + (i / 4) * PRESENCE_S;
    chart.append(svg("text", { class: "tick", x: x(t), y: height - 4, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", text: i === 4 ? "now" : formatTime(t, { seconds: false }) }));
  }
  box.append(chart);
}

function refreshImage() {
  if (!view) return;
  const url = freshUrl(view.camera.thumbnail_url);
  const next = new Image();
  next.onload = () => {
    if (!view) return;
    const img = $("#camera-image");
    img.src = url;
    img.hidden = false;
    $("#camera-image-note").textContent = "";
    view.size = [next.naturalWidth, next.naturalHeight];
    drawOverlay(view);
  };
  next.onerror = () => {
    if (view && $("#camera-image").hidden) $("#camera-image-note").textContent = "no frame yet";
  };
  next.src = url;
}

async function tick() {
  if (!view) return;
  try {
    const camera = await api.get(`/api/v1/cameras/${encodeURIComponent(view.camera.id)}`);
    if (!view || camera.id !== view.camera.id) return;
    view.camera = normalizeCamera(camera);
    fields(view.camera);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) $("#camera-image-note").textContent = "This camera is gone.";
  }
  if (!document.hidden) refreshImage();
  if (view && ++view.ticks % PRESENCE_EVERY === 0) presence();
  if (view) view.timer = setTimeout(tick, REFRESH_MS);
}

export function openCamera(camera) {
  closeCamera();
  const dialog = $("#camera-dialog");
  const overlay = $("#camera-overlay");
  view = { camera, overlay, size: [640, 360], overlayKey: "", timer: null, ticks: 0, labels: new Set(), meter: new CostMeter() };
  $("#camera-dialog-title").textContent = camera.name || camera.id;
  $("#camera-dialog-events").setAttribute("href", `#/events?camera=${encodeURIComponent(camera.id)}`);
  $("#camera-image").hidden = true;
  $("#camera-image").setAttribute("alt", `Live anonymized view of ${camera.name || camera.id}`);
  $("#camera-image-note").textContent = "loading…";
  drawOverlay(view);
  fields(camera);
  clear($("#camera-presence"));
  if (!dialog.open) dialog.showModal();
  recentEvents(camera.id).then(presence);
  refreshImage();
  view.timer = setTimeout(tick, REFRESH_MS);
}

export function closeCamera() {
  if (view) clearTimeout(view.timer);
  view = null;
}

export function init() {
  const dialog = $("#camera-dialog");
  dialog.addEventListener("close", closeCamera);
  $("#camera-dialog-events").addEventListener("click", () => dialog.close());
}
