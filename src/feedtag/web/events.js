// The event timeline: filters (camera, kind, label, time), pages through the cursor, live
// updates from the server-sent event stream, and a detail dialog with the snapshot.

import { api, ApiError } from "./api.js";
import { $, $$, el, clear, formatTime, formatDuration, isoUtc, token } from "./dom.js";
import { state, cameraName, hasRole, notify, EVENT_KINDS } from "./state.js";
import { cameraPicker } from "./camerapick.js";

const PAGE = 50;
// Kinds that last and get an end (docs/rules.md); the others are instants.
const LASTING = new Set(["dwell", "crowding", "stopped_vehicle", "camera_offline", "camera_frozen", "camera_covered"]);
const MAX_ROWS = 1000;

let active = false;
let controller = null;
let nextCursor = null;
let currentFilters = null;
let stream = null;
// event id -> the event its row shows: which events the table holds (a repeat is skipped),
// and what a streamed end applies to
const rowEvents = new Map();
let openEventId = null;  // the event in the dialog, if it is open
// What the stream brought while a fresh list was loading: the list replaces the table when
// it arrives, so these are applied again on top of it (nothing streamed meanwhile is lost).
let streamedDuringLoad = null;
const labels = new Set();

function kindClass(kind) {
  return `kind kind-${token(kind, EVENT_KINDS, "other")}`;
}

function toLocalInput(unixSeconds) {
  const d = new Date(unixSeconds * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms / 1000 : null;
}

/** The filters as the form shows them, with the time range resolved to since/until. */
function readFilters() {
  const form = $("#event-filters");
  const range = form.range.value;
  const filters = { camera: form.camera.value.trim(), kind: form.kind.value, label: form.label.value.trim(), range };
  if (range === "custom") {
    filters.since = fromLocalInput(form.since.value);
    filters.until = fromLocalInput(form.until.value);
  } else if (range !== "all") {
    filters.since = Date.now() / 1000 - Number(range);
  }
  return filters;
}

function apiParams(filters) {
  return {
    camera: filters.camera || undefined,
    kind: filters.kind || undefined,
    label: filters.label || undefined,
    since: filters.since ? filters.since.toFixed(3) : undefined,
    until: filters.until ? filters.until.toFixed(3) : undefined,
    limit: PAGE,
  };
}

function matches(event, filters) {
  if (!filters) return false;
  if (filters.camera && event.camera_id !== filters.camera) return false;
  if (filters.kind && event.kind !== filters.kind) return false;
  if (filters.label && event.label !== filters.label) return false;
  if (filters.until && event.started_at > filters.until) return false;
  return true;
}

/** An attribute as a person reads it: "duration_s" 4.2 -> ["duration", "4.2 s"]. */
function attribute(key, value) {
  if (typeof value === "number") {
    if (key.endsWith("_at")) return [key.slice(0, -3), `${formatTime(value)}  (${isoUtc(value)})`];
    if (key.endsWith("_s")) return [key.slice(0, -2), formatDuration(value)];
    if (key.endsWith("_deg")) return [key.slice(0, -4), `${Math.round(value)}°`];
    if (!Number.isInteger(value)) return [key, value.toFixed(2)];
  }
  if (typeof value === "object" && value !== null) return [key, JSON.stringify(value)];
  return [key, String(value)];
}

/** A one-line summary of an event's attributes. */
function details(event) {
  const attributes = event.attributes || {};
  const parts = [];
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || typeof value === "object" || key.endsWith("_at")) continue;
    const [name, shownValue] = attribute(key, value);
    parts.push(`${name.replaceAll("_", " ")}: ${shownValue}`);
    if (parts.length >= 3) break;
  }
  if (event.ended_at && event.started_at) parts.push(`lasted ${formatDuration(event.ended_at - event.started_at)}`);
  return parts.join(" · ");
}

function row(event, fresh = false) {
  const snapshot = event.snapshot_url
    ? el("img", { class: "mini", src: event.snapshot_url, alt: "", loading: "lazy", decoding: "async" })
    : el("span", { class: "muted", text: "—" });
  const tr = el("tr", {
    class: ["event-row", fresh && "fresh"],
    tabindex: "0",
    dataset: { eventId: event.event_id, kind: event.kind, cameraId: event.camera_id, label: event.label || "" },
  }, [
    el("td", { class: "time", text: formatTime(event.started_at), title: isoUtc(event.started_at) }),
    el("td", { class: "camera", text: cameraName(event.camera_id), title: event.camera_id }),
    el("td", {}, [el("span", { class: kindClass(event.kind), text: event.kind.replaceAll("_", " ") })]),
    el("td", { class: "label", text: event.label || "" }),
    el("td", { class: "zone", text: event.zone || "" }),
    el("td", { class: "details", text: details(event) }),
    el("td", { class: "snap" }, [snapshot]),
  ]);
  rowEvents.set(event.event_id, event);
  tr.addEventListener("click", () => openEvent(event.event_id));
  tr.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();  // else the Enter also presses the dialog's close button, focused by showModal
    openEvent(event.event_id);
  });
  if (event.label) labels.add(event.label);
  return tr;
}

function describeFilters(filters) {
  const parts = [];
  if (filters.camera) parts.push(`camera ${cameraName(filters.camera)}`);
  if (filters.kind) parts.push(`kind ${filters.kind}`);
  if (filters.label) parts.push(`label “${filters.label}”`);
  return parts.length ? parts.join(", ") : "no filter";
}

function updateStatus() {
  const count = rowEvents.size;
  const filters = currentFilters || readFilters();
  let text = count ? `${count} event${count === 1 ? "" : "s"}` : "No events";
  text += ` · ${describeFilters(filters)}`;
  if (nextCursor) text += " · more available";
  $("#events-status").textContent = text;
  $("#events-more").hidden = !nextCursor;
  refreshLabelOptions();
}

function refreshLabelOptions() {
  for (const camera of state.cameras) for (const what of Object.keys((camera.vision && camera.vision.counts) || {})) labels.add(what);
  const list = $("#label-options");
  const have = new Set($$("option", list).map((o) => o.value));
  for (const what of [...labels].sort()) if (!have.has(what)) list.append(el("option", { value: what }));
}

async function load({ append = false } = {}) {
  if (controller) controller.abort();
  controller = new AbortController();
  const { signal } = controller;
  if (!append) currentFilters = readFilters();
  const params = apiParams(currentFilters);
  if (append && nextCursor) params.cursor = nextCursor;
  if (!append) streamedDuringLoad = [];
  $("#events-table").setAttribute("aria-busy", "true");
  try {
    const data = await api.get("/api/v1/events", params, { signal });
    const body = $("#events-body");
    if (!append) { clear(body); rowEvents.clear(); }
    for (const event of data.items || []) {
      if (rowEvents.has(event.event_id)) continue;
      body.append(row(event));
    }
    nextCursor = data.next_cursor || null;
    updateStatus();
  } catch (error) {
    if (signal.aborted) return;
    if (error instanceof ApiError && error.status !== 401) {
      $("#events-status").textContent = `Events: ${error.explanation}`;
    }
  } finally {
    if (!signal.aborted) {
      $("#events-table").removeAttribute("aria-busy");
      const replay = streamedDuringLoad || [];
      streamedDuringLoad = null;
      for (const [apply, message] of replay) apply(message);
    }
  }
}

function onStreamEvent(message) {
  if (streamedDuringLoad) streamedDuringLoad.push([onStreamEvent, message]);
  let event;
  try { event = JSON.parse(message.data); } catch { return; }
  if (!event || !event.event_id) return;
  if (rowEvents.has(event.event_id)) {
    // A list loaded meanwhile already holds it: it still came live, so it is marked so.
    const shown = $("#events-body").querySelector(`tr[data-event-id="${CSS.escape(event.event_id)}"]`);
    if (shown) shown.classList.add("fresh");
    return;
  }
  if (!active || !$("#events-live").checked || !matches(event, currentFilters)) return;
  const body = $("#events-body");
  body.prepend(row(event, true));
  while (body.children.length > MAX_ROWS) {
    rowEvents.delete(body.lastElementChild.dataset.eventId);
    body.lastElementChild.remove();
  }
  updateStatus();
}

/** An event that lasted is over: its row (and its dialog, if open) show the end. */
function onStreamEnd(message) {
  if (streamedDuringLoad) streamedDuringLoad.push([onStreamEnd, message]);
  let end;
  try { end = JSON.parse(message.data); } catch { return; }
  if (!end || !end.event_id) return;
  const event = rowEvents.get(end.event_id);
  if (event) {
    event.ended_at = end.ended_at;
    const tr = $("#events-body").querySelector(`tr[data-event-id="${CSS.escape(end.event_id)}"]`);
    const cell = tr && tr.querySelector(".details");
    if (cell) cell.textContent = details(event);
  }
  if (openEventId === end.event_id && $("#event-dialog").open) openEvent(end.event_id);
}

// The id of the last stream message: the server resumes after it. EventSource sends it by
// itself (Last-Event-ID) when it reconnects; a stream this module opens again passes it too.
let lastEventId = "";
let restartTimer = null;
const RESTART_MS = 5000;

function remember(message) {
  if (message.lastEventId) lastEventId = message.lastEventId;
}

/** Opens the live stream; with `resume`, after the last message of the one before. */
export function startStream({ resume = false } = {}) {
  stopStream();
  if (!resume) lastEventId = "";
  if (!("EventSource" in window)) return;
  const query = lastEventId ? `?last_event_id=${encodeURIComponent(lastEventId)}` : "";
  stream = new EventSource(`/api/v1/stream${query}`);
  const dot = $("#live-indicator");
  stream.addEventListener("open", () => { dot.className = "live-dot up"; dot.title = "Live event stream: connected"; });
  stream.addEventListener("error", () => {
    dot.className = "live-dot down"; dot.title = "Live event stream: reconnecting";
    // The browser retries by itself unless the server answered with an error: then this
    // module opens the stream again, resuming after the last message it had.
    if (stream && stream.readyState === EventSource.CLOSED && !restartTimer) {
      restartTimer = setTimeout(() => { restartTimer = null; if (stream) startStream({ resume: true }); }, RESTART_MS);
    }
  });
  stream.addEventListener("event", (message) => { remember(message); onStreamEvent(message); });
  stream.addEventListener("end", (message) => { remember(message); onStreamEnd(message); });
  // The server drops the oldest events for a reader that falls behind, and says how many.
  stream.addEventListener("dropped", () => notify("Some live events were skipped; press r to reload the list.", "info"));
  // More was missed while disconnected than the server resends: the list is loaded again.
  stream.addEventListener("gap", () => { if (active) load(); });
}

export function stopStream() {
  if (restartTimer) clearTimeout(restartTimer);
  restartTimer = null;
  if (stream) stream.close();
  stream = null;
  $("#live-indicator").className = "live-dot";
}

function fillKindSelect(select) {
  for (const kind of EVENT_KINDS) select.append(el("option", { value: kind, text: kind.replaceAll("_", " ") }));
}

/** Applies filters from the address (#/events?camera=…&kind=…) to the form. */
function applyParams(params) {
  const form = $("#event-filters");
  if (!params) return;
  for (const name of ["camera", "kind", "label", "range"]) {
    if (!params.has(name)) continue;
    const value = params.get(name);
    const field = form.elements[name];
    if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === value)) {
      field.append(el("option", { value, text: value }));
    }
    field.value = value;
  }
  $("#custom-range").hidden = form.range.value !== "custom";
}

function writeParams() {
  const form = $("#event-filters");
  const params = new URLSearchParams();
  for (const name of ["camera", "kind", "label"]) if (form.elements[name].value) params.set(name, form.elements[name].value.trim());
  if (form.range.value !== "3600") params.set("range", form.range.value);
  const text = params.toString();
  history.replaceState(null, "", `#/events${text ? "?" + text : ""}`);
}

export function show(params) {
  active = true;
  applyParams(params);
  load();
  // #/events?event=<id> opens that event: a link an alert or a colleague can send.
  if (params && params.get("event")) openEvent(params.get("event"));
}

export function hide() {
  active = false;
}

export function refresh() {
  if (active) load();
}

export function focusFilter() {
  $("#filter-label").focus();
}

/** j/k: move the focus through the event rows. */
export function moveFocus(step) {
  const rows = $$("#events-body tr.event-row");
  if (!rows.length) return;
  const index = rows.indexOf(document.activeElement);
  const next = rows[Math.max(0, Math.min(rows.length - 1, index < 0 ? 0 : index + step))];
  next.focus();
  next.scrollIntoView({ block: "nearest" });
}

function field(term, value, cls) {
  return [el("dt", { text: term }), el("dd", { class: cls, text: value === null || value === undefined || value === "" ? "—" : String(value) })];
}

export async function openEvent(eventId) {
  openEventId = eventId;
  const dialog = $("#event-dialog");
  const img = $("#event-snapshot");
  const fields = $("#event-fields");
  const note = $("#event-snapshot-note");
  $("#event-dialog-error").textContent = "";
  $("#event-dialog-title").textContent = "Event";
  clear(fields);
  img.removeAttribute("src");
  img.hidden = true;
  note.textContent = "loading…";
  if (!dialog.open) dialog.showModal();
  let event;
  try {
    event = await api.get(`/api/v1/events/${encodeURIComponent(eventId)}`);
  } catch (error) {
    note.textContent = "";
    if (error instanceof ApiError) $("#event-dialog-error").textContent = error.explanation;
    return;
  }
  $("#event-dialog-title").textContent = `${event.kind.replaceAll("_", " ")} · ${cameraName(event.camera_id)}`;
  if (event.snapshot_url) {
    img.hidden = false;
    img.src = event.snapshot_url;
    note.textContent = "Anonymized snapshot: people are blurred.";
    img.onerror = () => { note.textContent = "The snapshot could not be loaded (it may have expired)."; img.hidden = true; };
  } else {
    note.textContent = "No snapshot for this event.";
  }
  fields.append(
    ...field("Kind", event.kind),
    ...field("Camera", cameraName(event.camera_id)),
    ...field("Camera id", event.camera_id, "mono"),
    ...field("Started", `${formatTime(event.started_at)}  (${isoUtc(event.started_at)})`),
    ...field("Ended", event.ended_at
      ? `${formatTime(event.ended_at)}  (${formatDuration(event.ended_at - event.started_at)})`
      : (LASTING.has(event.kind) ? "still going on" : "an instant")),
    ...field("Label", event.label),
    ...field("Zone", event.zone),
    ...field("Rule", event.rule_id, "mono"),
    ...field("Tracks", (event.track_ids || []).join(", ")),
  );
  for (const [key, value] of Object.entries(event.attributes || {})) {
    const [name, shownValue] = attribute(key, value);
    fields.append(...field(name.replaceAll("_", " "), shownValue));
  }
  fields.append(...field("Event id", event.event_id, "mono"));
  fields.append(el("dt", { text: "Link" }), el("dd", {}, [
    el("a", { href: `#/events?event=${encodeURIComponent(event.event_id)}`, text: "link to this event" }),
  ]));
  if (event.clip_url) {
    const dd = el("dd");
    if (hasRole("admin")) dd.append(el("a", { href: event.clip_url, target: "_blank", rel: "noopener", text: "Open clip (raw video, audited)" }));
    else dd.textContent = "available to admins only";
    fields.append(el("dt", { text: "Clip" }), dd);
  }
}

export function reset() {
  stopStream();
  clear($("#events-body"));
  rowEvents.clear();
  nextCursor = null;
  currentFilters = null;
}

export function init() {
  const form = $("#event-filters");
  fillKindSelect(form.kind);
  cameraPicker(form.camera, "#filter-camera-options", () => { writeParams(); load(); });
  form.addEventListener("change", (event) => {
    $("#custom-range").hidden = form.range.value !== "custom";
    if (form.range.value === "custom" && event.target === form.range && !form.since.value) {
      form.since.value = toLocalInput(Date.now() / 1000 - 3600);
    }
    writeParams();
    load();
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); writeParams(); load(); });
  form.addEventListener("reset", () => setTimeout(() => { $("#custom-range").hidden = true; writeParams(); load(); }));
  let typing = null;
  form.label.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => { writeParams(); load(); }, 400); });
  $("#events-more").addEventListener("click", () => load({ append: true }));
  $("#events-live").addEventListener("change", (e) => { if (e.target.checked) load(); });
  $("#event-dialog").addEventListener("click", (e) => { if (e.target === $("#event-dialog")) $("#event-dialog").close(); });
  $("#event-dialog").addEventListener("close", () => {
    if (location.hash.startsWith("#/events") && new URLSearchParams(location.hash.split("?")[1] || "").has("event")) writeParams();
  });
}
