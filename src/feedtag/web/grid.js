// The camera grid: one card per camera with its live anonymized thumbnail, the zones and
// lines drawn over it, its state and what it sees. Cards are updated in place.

import { api, ApiError, freshUrl } from "./api.js";
import { $, el, svg, clear, formatNumber, formatAge, token } from "./dom.js";
import { drawOverlay } from "./overlay.js";
import { openCamera } from "./camera.js";
import { state, setCameras, mergeCameras, notify, hasRole, cameraState, normalizeCamera, showAnalysisLevel, CostMeter, CAMERA_STATES } from "./state.js";
import { Pager } from "./pager.js";

const REFRESH_MS = 3000;        // camera status
const THUMBNAIL_MS = 5000;      // the engine renews thumbnails every 5 s by default
const DEFAULT_SIZE = [640, 360];
// Cameras per page: the grid asks the server for one page at a time (GET /api/v1/cameras
// with limit and cursor), so a site with thousands of cameras costs one page per refresh.
export const PAGE_SIZE = 48;
const FILTER_WAIT_MS = 300;

const cards = new Map();  // camera id -> {root, img, overlay, ...}
let listed = [];  // the cards in the order of the latest camera list
let timer = null;
let active = false;
const pager = new Pager(PAGE_SIZE, { nav: "#grid-pager", range: "#grid-range", prev: "#grid-prev", next: "#grid-next" });
let asked = 0;  // refreshes started: an answer to an older one is not shown
let visible = new Set();
const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const id = entry.target.dataset.cameraId;
      if (entry.isIntersecting) { visible.add(id); refreshThumbnail(cards.get(id)); } else visible.delete(id);
    }
  })
  : null;

function makeCard(camera) {
  const img = el("img", { class: "thumb", alt: "" });
  const overlay = svg("svg", { class: "overlay", "aria-hidden": "true", preserveAspectRatio: "xMidYMid meet" });
  const placeholder = el("span", { class: "placeholder", text: "waiting for the first frame…" });
  const badge = el("span", { class: "badge state" });
  const level = el("span", { class: "badge level" });
  level.hidden = true;
  const name = el("h3", { class: "cam-name" });
  const id = el("span", { class: "cam-id" });
  const shard = el("p", { class: "cam-shard" });
  const counts = el("ul", { class: "counts", "aria-label": "In view now" });
  const metrics = el("dl", { class: "metrics" });
  const reason = el("p", { class: "reason" });
  const eventCounts = el("p", { class: "event-counts" });
  const events = el("a", { class: "small link", text: "Events →" });
  const restart = el("button", { type: "button", class: "ghost small", text: "Restart", title: "Reconnect this camera (operators)" });
  restart.hidden = true;
  const root = el("article", { class: "card", dataset: { cameraId: camera.id }, tabindex: "0" }, [
    el("div", { class: "frame" }, [img, overlay, placeholder, badge, level]),
    el("div", { class: "card-body" }, [
      el("div", { class: "card-title" }, [name, id]),
      shard, counts, metrics, eventCounts, reason,
      el("div", { class: "card-links" }, [restart, events]),
    ]),
  ]);
  const card = {
    root, img, overlay, placeholder, badge, level, name, id, shard, counts, metrics, eventCounts, reason, events, restart,
    camera, loading: false, loaded: false, size: DEFAULT_SIZE.slice(), overlayKey: "",
    meter: new CostMeter(), cost: null,
  };
  root.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.target !== root) return;
    event.preventDefault();  // else the Enter presses the dialog's close button
    openCamera(card.camera);
  });
  root.querySelector(".frame").addEventListener("click", () => openCamera(card.camera));
  restart.addEventListener("click", async () => {
    const label = card.camera.name || card.camera.id;
    try {
      await api.post(`/api/v1/cameras/${encodeURIComponent(card.camera.id)}/restart`);
      notify(`Restarting ${label}.`, "info");
      refresh();
    } catch (error) {
      if (error instanceof ApiError) notify(`Restart ${label}: ${error.explanation}`, "error");
    }
  });
  if (observer) observer.observe(root);
  return card;
}

function metric(term, value, title) {
  return [el("dt", { text: term, title }), el("dd", { text: value })];
}

function updateCard(card, camera) {
  card.camera = camera;
  const stateName = cameraState(camera);
  const label = camera.name || camera.id;
  card.root.className = `card state-${stateName}`;
  card.root.setAttribute("aria-label", `${label}: ${stateName}`);
  card.img.setAttribute("alt", `Live anonymized view of ${label}`);
  card.name.textContent = label;
  card.name.setAttribute("title", label);
  card.id.textContent = camera.name && camera.name !== camera.id ? camera.id : "";
  // the Ray engine's shard and machine that run the camera (none in one process)
  card.shard.textContent = camera.shard ? `shard ${camera.shard}${camera.node ? ` on ${camera.node}` : ""}` : "";
  card.shard.hidden = !camera.shard;
  card.badge.textContent = stateName;
  card.badge.className = `badge state ${stateName}`;
  showAnalysisLevel(card.level, camera);
  card.events.setAttribute("href", `#/events?camera=${encodeURIComponent(camera.id)}`);
  card.restart.hidden = !hasRole("operator");
  card.restart.setAttribute("aria-label", `Restart camera ${label}`);

  const vision = camera.vision;
  const entries = vision && vision.counts ? Object.entries(vision.counts).filter(([, n]) => n > 0) : [];
  entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  clear(card.counts);
  if (!entries.length) card.counts.append(el("li", { class: "muted", text: vision ? "nothing in view" : "no analysis yet" }));
  for (const [what, n] of entries) {
    card.counts.append(el("li", { class: "chip" }, [el("span", { class: "chip-label", text: what }), el("b", { text: String(n) })]));
  }

  const totals = Object.entries(camera.event_counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  card.eventCounts.textContent = totals.length ? `events: ${totals.slice(0, 4).map(([kind, n]) => `${kind.replaceAll("_", " ")} ${n}`).join(" · ")}` : "";
  card.eventCounts.hidden = !totals.length;

  const status = camera.status || {};
  // the cost as a rate between two refreshes (the server gives totals)
  const cost = card.meter.read(camera);
  card.cost = cost ? cost.total : null;
  clear(card.metrics);
  card.metrics.append(
    ...metric("fps", `${formatNumber(status.analysed_fps)} / ${formatNumber(camera.analysis_fps)}`, "analysed frames per second / configured"),
    ...metric("gated", vision && vision.gated_ratio !== null && vision.gated_ratio !== undefined ? `${Math.round(vision.gated_ratio * 100)}%` : "—", "share of frames the gate let skip the detector"),
    ...metric("det", vision && vision.latency_ms !== null && vision.latency_ms !== undefined ? `${formatNumber(vision.latency_ms, 0)} ms` : "—", "detector latency"),
    ...metric("tracks", vision ? String(vision.tracks ?? 0) : "—", "active anonymous tracks"),
    ...metric("drops", String(status.drops ?? 0), "frames dropped"),
    ...metric("recon", String(status.reconnects ?? 0), "reconnects"),
    ...metric("cost", cost ? `${formatNumber(cost.total)} ms/s` : "—", "what the camera costs, in milliseconds per second: its ingest thread's CPU, its share of the detector, its analysis and its snapshots, thumbnails and clips"),
  );
  const why = stateName === "online" ? "" : [status.reason, status.since ? `since ${formatAge(status.since)}` : ""].filter(Boolean).join(" · ");
  card.reason.textContent = why;
  card.reason.hidden = !why;
  drawOverlay(card);
}

/** Loads the next thumbnail off-screen and swaps it in once decoded (no flicker). */
function refreshThumbnail(card) {
  if (!card || card.loading || !active || document.hidden) return;
  if (card.fetchedAt && Date.now() - card.fetchedAt < THUMBNAIL_MS - 250) return;
  card.fetchedAt = Date.now();
  const base = card.camera.thumbnail_url || `/api/v1/cameras/${encodeURIComponent(card.camera.id)}/thumbnail.jpg`;
  const url = freshUrl(base);
  const next = new Image();
  card.loading = true;
  next.onload = () => {
    card.loading = false;
    card.img.src = url;
    card.loaded = true;
    card.root.classList.add("has-frame");
    card.placeholder.hidden = true;
    if (next.naturalWidth && (next.naturalWidth !== card.size[0] || next.naturalHeight !== card.size[1])) {
      card.size = [next.naturalWidth, next.naturalHeight];
      drawOverlay(card);
    }
  };
  next.onerror = () => {
    card.loading = false;
    if (!card.loaded) card.placeholder.textContent = "no frame yet";
  };
  next.src = url;
}

/** The cards in the grid in the chosen order: as the server lists the cameras, or the
 * costliest first (cards with no cost yet after the others, in list order). */
function placeCards(grid, shown) {
  const ordered = orderedCards(shown, $("#grid-order").value);
  ordered.forEach((card, index) => {
    if (grid.children[index] !== card.root) grid.insertBefore(card.root, grid.children[index] || null);
  });
}

function orderedCards(shown, order) {
  if (order !== "cost") return shown;
  const cost = (card) => card.cost ?? -1;  // costs are >= 0: a card without one goes last
  return shown
    .map((card, index) => ({ card, index }))
    .sort((a, b) => cost(b.card) - cost(a.card) || a.index - b.index)
    .map(({ card }) => card);
}

function applyFilter() {
  const text = $("#grid-filter").value.trim().toLowerCase();
  for (const card of cards.values()) {
    const hay = `${card.camera.id} ${card.camera.name || ""}`.toLowerCase();
    card.root.hidden = Boolean(text) && !hay.includes(text);
  }
}

/** The summary line: cameras per state over every page (as the server counts them, or
 * counted here from a list without counts), and what is in view on the shown cards. */
function summarize(items, total = items.length, states = null) {
  const byState = states || {};
  const totals = {};
  for (const camera of items) {
    if (!states) {
      const shown = cameraState(camera);
      byState[shown] = (byState[shown] || 0) + 1;
    }
    for (const [what, n] of Object.entries((camera.vision && camera.vision.counts) || {})) totals[what] = (totals[what] || 0) + n;
  }
  const parts = [`${total} camera${total === 1 ? "" : "s"}`];
  for (const s of CAMERA_STATES) if (byState[s]) parts.push(`${byState[s]} ${s}`);
  const seen = Object.entries(totals).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).map(([what, n]) => `${what} ${n}`);
  if (seen.length) parts.push(`${total > items.length ? "in view on this page" : "in view"}: ${seen.join(", ")}`);
  $("#grid-summary").textContent = parts.join(" · ");
}

export function render(items, total = items.length, states = null) {
  const grid = $("#grid");
  const seen = new Set();
  const shown = [];
  for (const camera of items) {
    seen.add(camera.id);
    let card = cards.get(camera.id);
    if (!card) {
      card = makeCard(camera);
      cards.set(camera.id, card);
    }
    updateCard(card, camera);
    shown.push(card);
  }
  listed = shown;
  placeCards(grid, shown);
  for (const [id, card] of cards) {
    if (seen.has(id)) continue;
    if (observer) observer.unobserve(card.root);
    card.root.remove();
    cards.delete(id);
    visible.delete(id);
  }
  $("#grid-empty").hidden = items.length > 0;
  summarize(items, total, states);
  applyFilter();
}

/** The camera list (GET /api/v1/cameras) with ``params``: the answer, and its cameras. */
export async function listCameras(params) {
  const data = (await api.get("/api/v1/cameras", params)) || {};
  return { data, items: (data.items || []).map(normalizeCamera) };
}

/** One page of the camera list, with the filter's text. */
async function loadPage() {
  const params = pager.params();
  const text = $("#grid-filter").value.trim();
  if (text) params.q = text;
  const { data, items } = await listCameras(params);
  mergeCameras(items);
  return { items, next: data.next_cursor || null, total: Number.isInteger(data.total) ? data.total : items.length, states: data.states || null };
}

function firstPage() {
  pager.first();
  refresh();
}

/** Every camera's id and name (the brief list, which takes no live status): what names,
 * the event filter and the charts need at sign-in, cheap with thousands of cameras. Cameras
 * a page of the grid already brought keep their full entries. */
export async function loadCameraNames() {
  const { items } = await listCameras({ brief: true });
  setCameras(items.map((camera) => state.camerasById.get(camera.id) || camera));
  return items;
}

async function tick() {
  timer = null;
  if (!active) return;
  if (document.hidden) return;  // resumed by visibilitychange
  const mine = ++asked;
  try {
    let shown = await loadPage();
    if (mine !== asked) return;  // a newer refresh (another page, the filter) took over
    if (!shown.items.length && pager.cursor) {  // the page emptied (cameras removed): start over
      pager.first();
      shown = await loadPage();
    }
    pager.answered(shown.next);
    render(shown.items, shown.total, shown.states);
    pager.show(shown.items.length, shown.total);
    for (const card of cards.values()) {
      if (!observer || visible.has(card.camera.id)) refreshThumbnail(card);
    }
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) notify(`Cameras: ${error.explanation}`, "error");
  }
  if (active && mine === asked) timer = setTimeout(tick, REFRESH_MS);
}

export function show() {
  active = true;
  if (!timer) tick();
}

export function hide() {
  active = false;
  clearTimeout(timer);
  timer = null;
}

export function refresh() {
  clearTimeout(timer);
  timer = null;
  if (active) tick();
}

export function reset() {
  hide();
  for (const card of cards.values()) if (observer) observer.unobserve(card.root);
  cards.clear();
  listed = [];
  pager.first();
  visible = new Set();
  clear($("#grid"));
}

export function toggleOverlay() {
  const box = $("#grid-overlay");
  box.checked = !box.checked;
  box.dispatchEvent(new Event("change"));
}

export function init() {
  // the shown cards are filtered at once; the server is asked for the matching cameras'
  // first page when typing pauses
  let typing = null;
  $("#grid-filter").addEventListener("input", () => {
    applyFilter();
    clearTimeout(typing);
    typing = setTimeout(firstPage, FILTER_WAIT_MS);
  });
  pager.bind(() => { refresh(); window.scrollTo(0, 0); });
  $("#grid-overlay").addEventListener("change", (event) => {
    $("#grid").classList.toggle("no-overlay", !event.target.checked);
  });
  $("#grid-order").addEventListener("change", () => placeCards($("#grid"), listed));
  $("#grid-size").addEventListener("change", (event) => {
    const size = token(event.target.value, ["s", "m", "l"], "m");
    $("#grid").className = `grid size-${size}${$("#grid-overlay").checked ? "" : " no-overlay"}`;
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden && active) refresh(); });
}

export function focusFilter() {
  $("#grid-filter").focus();
}

