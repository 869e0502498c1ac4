// One camera large: its live anonymized image with zones and lines, its numbers, and its
// latest events (each opens the event dialog).

import { api, ApiError, freshUrl } from "./api.js";
import { $, el, clear, formatTime, formatNumber, isoUtc } from "./dom.js";
import { drawOverlay } from "./overlay.js";
import { openEvent } from "./events.js";

const REFRESH_MS = 3000;
const RECENT = 12;

let view = null;  // {camera, overlay, size, overlayKey, timer}

function stateOf(camera) {
  if (camera.enabled === false) return "disabled";
  return (camera.status && camera.status.state) || "connecting";
}

function fields(camera) {
  const status = camera.status || {};
  const vision = camera.vision;
  const counts = vision ? Object.entries(vision.counts || {}).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") : "";
  const rows = [
    ["State", `${stateOf(camera)}${status.reason && stateOf(camera) !== "online" ? ` — ${status.reason}` : ""}`],
    ["In view", counts || (vision ? "nothing" : "no analysis yet")],
    ["Analysed fps", `${formatNumber(status.analysed_fps)} of ${formatNumber(camera.analysis_fps)}`],
    ["Decoded fps", formatNumber(status.decoded_fps)],
    ["Decode mode", status.mode || "—"],
    ["Gate skipped", vision && vision.gated_ratio !== null && vision.gated_ratio !== undefined ? `${Math.round(vision.gated_ratio * 100)}%` : "—"],
    ["Detector", vision && vision.latency_ms !== null && vision.latency_ms !== undefined ? `${formatNumber(vision.latency_ms, 0)} ms` : "—"],
    ["Tracks", vision ? String(vision.tracks ?? 0) : "—"],
    ["Drops / reconnects", `${status.drops ?? 0} / ${status.reconnects ?? 0}`],
    ["Zones", (camera.zones || []).map((z) => z.name).join(", ") || "—"],
    ["Lines", (camera.lines || []).map((l) => l.name).join(", ") || "—"],
    ["Source", camera.url || "—"],
  ];
  const list = $("#camera-fields");
  clear(list);
  for (const [term, value] of rows) list.append(el("dt", { text: term }), el("dd", { text: value }));
}

async function recentEvents(cameraId) {
  const list = $("#camera-events");
  try {
    const data = await api.get("/api/v1/events", { camera: cameraId, limit: RECENT });
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
    view.camera = { ...camera, zones: camera.zones || [], lines: camera.lines || [] };
    fields(view.camera);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) $("#camera-image-note").textContent = "This camera is gone.";
  }
  if (!document.hidden) refreshImage();
  if (view) view.timer = setTimeout(tick, REFRESH_MS);
}

export function openCamera(camera) {
  closeCamera();
  const dialog = $("#camera-dialog");
  const overlay = $("#camera-overlay");
  view = { camera, overlay, size: [640, 360], overlayKey: "", timer: null };
  $("#camera-dialog-title").textContent = camera.name || camera.id;
  $("#camera-dialog-events").setAttribute("href", `#/events?camera=${encodeURIComponent(camera.id)}`);
  $("#camera-image").hidden = true;
  $("#camera-image").setAttribute("alt", `Live anonymized view of ${camera.name || camera.id}`);
  $("#camera-image-note").textContent = "loading…";
  drawOverlay(view);
  fields(camera);
  recentEvents(camera.id);
  if (!dialog.open) dialog.showModal();
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
