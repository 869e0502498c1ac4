// Shared state of the page: who is signed in, the latest camera list, a notice line.

import { $, token } from "./dom.js";

export const state = {
  session: null,          // {name, role, cameras, csrf_token}
  cameras: [],            // latest GET /api/v1/cameras items
  camerasById: new Map(),
};
const placeById = new Map();  // camera id -> its index in state.cameras

const cameraListeners = [];

export function onCameras(listener) {
  cameraListeners.push(listener);
}

export function setCameras(items) {
  state.cameras = items;
  state.camerasById = new Map(items.map((camera) => [camera.id, camera]));
  placeById.clear();
  items.forEach((camera, index) => placeById.set(camera.id, index));
  for (const listener of cameraListeners) listener(items);
}

/** Cameras of one page of the list: their entries are renewed in place (a camera the list
 * did not have yet is added, and the listeners told). */
export function mergeCameras(items) {
  let added = false;
  for (const camera of items) {
    if (placeById.has(camera.id)) state.cameras[placeById.get(camera.id)] = camera;
    else { placeById.set(camera.id, state.cameras.push(camera) - 1); added = true; }
    state.camerasById.set(camera.id, camera);
  }
  if (added) for (const listener of cameraListeners) listener(state.cameras);
}

export function cameraName(id) {
  const camera = state.camerasById.get(id);
  return camera && camera.name ? camera.name : id;
}

export const ROLES = ["viewer", "operator", "admin"];

export function hasRole(role) {
  if (!state.session) return false;
  return ROLES.indexOf(state.session.role) >= ROLES.indexOf(role);
}

let noticeTimer = null;

/** A line under the top bar: kind is "info" or "error". */
export function notify(text, kind = "info", ms = 6000) {
  const notice = $("#notice");
  notice.textContent = text;
  notice.className = `notice ${kind === "error" ? "error" : "info"}`;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  if (ms) noticeTimer = setTimeout(() => { notice.hidden = true; }, ms);
}

/** Event kinds of the engine (core.EventKind), in the order the filters list them. */
export const EVENT_KINDS = [
  "line_cross", "zone_enter", "zone_exit", "dwell", "crowding", "stopped_vehicle", "wrong_way",
  "collision_candidate", "camera_offline", "camera_frozen", "camera_covered", "camera_moved",
];

export const CAMERA_STATES = ["online", "connecting", "stalled", "offline", "stopped", "disabled"];

/** A camera's state for display and CSS classes: one of CAMERA_STATES. */
export function cameraState(camera) {
  if (camera.enabled === false) return "disabled";
  const value = camera.status && camera.status.state;
  return token(value, CAMERA_STATES, "connecting");
}

/** A camera as docs/api.md describes it, with defaults where a part is missing (a camera
 * that has not started has no status, one without a detector no vision). */
export function normalizeCamera(raw) {
  return {
    ...raw,
    zones: Array.isArray(raw.zones) ? raw.zones : [],
    lines: Array.isArray(raw.lines) ? raw.lines : [],
    vision: raw.vision ? { ...raw.vision, counts: raw.vision.counts || {} } : null,
    thumbnail_url: raw.thumbnail_url || `/api/v1/cameras/${encodeURIComponent(raw.id)}/thumbnail.jpg`,
  };
}

/** The adaptive analysis levels of the engine (core.AnalysisLevel, docs/ingest.md), with
 * what each means for the tooltip. */
export const ANALYSIS_LEVELS = {
  floor: "Quiet scene: nothing appeared and no track moved for a while, so the camera is analysed at its floor rate (adaptive.floor_fps).",
  normal: "Activity in view, or adaptation off: the camera is analysed at its analysis_fps.",
  tracking: "A track is moving near a line or motion rule: the camera is analysed at its tracking rate (adaptive.tracking_fps) until that has been quiet for a while.",
};

/** What the packet gate's state (core.PacketGateState, docs/ingest.md "The packet gate")
 * means at the floor rate, for the tooltip; "off" and "learning" say nothing worth a line. */
export const PACKET_GATE_STATES = {
  believed: "Packet gate: keyframes whose packet sizes show nothing changed are left undecoded.",
  not_believed: "Packet gate: this camera's encoder keeps a constant bitrate (or sends keyframes only), so its packet sizes cannot show change and every floor keyframe is decoded; a variable or capped bitrate lets feedtag skip unchanged ones.",
  distrusted: "Packet gate: a refresh frame found activity its packet sizes did not show, so every floor keyframe is decoded for ten minutes.",
};

/** The parts of what a camera costs, in the order they are shown. */
export const COST_PARTS = ["ingest", "detector", "analysis", "media"];

/** The totals of what a camera has cost so far, in seconds (docs/api.md, "What a camera
 * costs"), each null where the server does not report it. */
function costParts(camera) {
  const number = (value) => (typeof value === "number" && Number.isFinite(value) ? value : null);
  const vision = camera.vision || {};
  return {
    ingest: number((camera.status || {}).ingest_cpu_s),
    detector: number(vision.detector_s),
    analysis: number(vision.analysis_cpu_s),
    media: number(vision.media_cpu_s),
  };
}

/** What a camera costs per second, from the totals of successive refreshes: `read` returns
 * the latest rates in milliseconds per second, {total, ingest, detector, analysis, media}
 * (a part the server does not report counts 0), taken
 * over readings at least `minGapMs` apart, or null until there are two (or when the server
 * does not report them). A total that went back (the camera restarted) starts over. */
export class CostMeter {
  constructor(minGapMs = 2000) {
    this.minGapMs = minGapMs;
    this.before = null;
    this.rates = null;
  }

  read(camera, now = Date.now()) {
    const parts = costParts(camera);
    if (parts.ingest === null) {
      this.before = this.rates = null;
      return null;
    }
    const before = this.before;
    const restart = !before || parts.ingest < before.parts.ingest;  // no reading yet, or a restart
    if (!restart && now - before.at < this.minGapMs) return this.rates;
    if (!restart) {
      const per = (name) => Math.max(0, ((parts[name] ?? 0) - (before.parts[name] ?? 0)) * 1e6 / (now - before.at));
      const rates = Object.fromEntries(COST_PARTS.map((name) => [name, per(name)]));
      this.rates = { total: COST_PARTS.reduce((sum, name) => sum + rates[name], 0), ...rates };
    }
    this.before = { at: now, parts };
    return this.rates;
  }
}

/** A rate for people: 0.5, 2, 5 (at most two decimals, no trailing zeros). */
function formatRate(fps) {
  return String(Number(fps.toFixed(2)));
}

/** A running camera's adaptive analysis level and target rate for display,
 * {level, text: "tracking · 5 fps", title}, or null: not online, or a server that does not
 * report the level (older servers) or reports one this page does not know. */
export function analysisLevel(camera) {
  if (cameraState(camera) !== "online") return null;
  const status = camera.status || {};
  const level = status.analysis_level;
  const fps = status.target_fps;
  if (!Object.hasOwn(ANALYSIS_LEVELS, level) || typeof fps !== "number" || !Number.isFinite(fps) || fps <= 0) return null;
  const rate = `${formatRate(fps)} fps`;
  let title = `Analysis level ${level}, ${rate} now. ${ANALYSIS_LEVELS[level]}`;
  const gate = status.packet_gate;
  if (level === "floor" && Object.hasOwn(PACKET_GATE_STATES, gate)) title += ` ${PACKET_GATE_STATES[gate]}`;
  return { level, text: `${level} · ${rate}`, title };
}

/** The adaptive analysis level badge ("tracking · 5 fps"); hidden when there is none. */
export function showAnalysisLevel(badge, camera) {
  const level = analysisLevel(camera);
  badge.hidden = !level;
  badge.textContent = level ? level.text : "";
  badge.className = level ? `badge level level-${level.level}` : "badge level";
  if (level) badge.setAttribute("title", level.title);
  else badge.removeAttribute("title");
}
