// Admin panels: add and remove cameras, the engine's shards, access tokens, the audit log.
// They are shown to every role; the server decides, and a refusal (403) is shown as it comes.

import { api, ApiError } from "./api.js";
import { $, el, clear, formatTime, formatNumber, isoUtc, token } from "./dom.js";
import { state, hasRole, cameraState } from "./state.js";
import { listCameras, loadCameraNames, PAGE_SIZE } from "./grid.js";
import { Pager } from "./pager.js";

const SHARDS_REFRESH_MS = 5000;
const SHARD_STATES = ["running", "unreachable", "restarting", "dead"];

let active = false;
let shardTimer = null;
// the camera table shows one page of the list, as the grid does: a site with thousands of
// cameras costs a page when the view opens, not every camera's status
const cameraPager = new Pager(PAGE_SIZE, { nav: "#admin-camera-pager", range: "#admin-camera-range", prev: "#admin-camera-prev", next: "#admin-camera-next" });
const FILTER_WAIT_MS = 300;
let camerasAsked = 0;  // loads started: an answer to an older one is not shown

function result(node, text, ok) {
  node.textContent = text;
  node.className = `result ${ok ? "ok" : "refused"}`;
}

function explain(error) {
  return error instanceof ApiError ? error.explanation : String(error);
}

function renderCameras(items) {
  const body = $("#admin-cameras");
  clear(body);
  for (const camera of items) {
    const remove = el("button", { type: "button", class: "ghost small danger", text: "Remove", "aria-label": `Remove camera ${camera.id}` });
    let armed = false;
    remove.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        remove.textContent = "Confirm remove";
        setTimeout(() => { armed = false; remove.textContent = "Remove"; }, 4000);
        return;
      }
      try {
        await api.delete(`/api/v1/cameras/${encodeURIComponent(camera.id)}`);
        result($("#admin-cameras-result"), `Removed camera ${camera.id}.`, true);
        await camerasChanged();
      } catch (error) {
        result($("#admin-cameras-result"), explain(error), false);
      }
    });
    body.append(el("tr", {}, [
      el("td", { class: "mono", text: camera.id }),
      el("td", { text: camera.name || "" }),
      el("td", {}, [el("span", { class: `badge state ${cameraState(camera)}`, text: cameraState(camera) })]),
      el("td", {}, [remove]),
    ]));
  }
}

async function addCamera(event) {
  event.preventDefault();
  const form = event.target;
  const fields = form.elements;
  const out = $("#add-camera-result");
  const body = { id: fields.namedItem("id").value.trim(), url: fields.namedItem("url").value.trim() };
  const name = fields.namedItem("name").value.trim();
  if (name) body.name = name;
  const fps = fields.namedItem("analysis_fps").value;
  if (fps) body.analysis_fps = Number(fps);
  result(out, "adding…", true);
  try {
    const camera = await api.post("/api/v1/cameras", body);
    result(out, `Added camera ${camera && camera.id ? camera.id : body.id}.`, true);
    form.reset();
    await camerasChanged();
  } catch (error) {
    result(out, explain(error), false);
  }
}

/** The shown page of cameras (the filter's text sent as `q`), loaded again. */
async function loadCameraPage() {
  const mine = ++camerasAsked;
  const params = cameraPager.params();
  const text = $("#admin-camera-filter").value.trim();
  if (text) params.q = text;
  try {
    const { data, items } = await listCameras(params);
    if (mine !== camerasAsked) return;
    if (!items.length && cameraPager.cursor) {  // the page emptied (cameras removed): start over
      cameraPager.first();
      await loadCameraPage();
      return;
    }
    cameraPager.answered(data.next_cursor);
    renderCameras(items);
    cameraPager.show(items.length, Number.isInteger(data.total) ? data.total : items.length);
  } catch (error) {
    if (mine !== camerasAsked) return;
    clear($("#admin-cameras"));
    result($("#admin-cameras-result"), `Cameras: ${explain(error)}`, false);
  }
}

/** A camera was added or removed here: the table's page and every view's camera names. */
async function camerasChanged() {
  await loadCameraPage();
  await loadCameraNames().catch(() => {});
}

function cameraList(value) {
  const ids = value.split(",").map((s) => s.trim()).filter(Boolean);
  return ids.length ? ids : null;
}

// Fills the table body `body` with one row(item) per item of a list endpoint. A failure
// (a refusal included) empties the table and is shown in `out` as "label: reason".
// Answers whether the list loaded.
async function loadTable(body, out, label, path, row, params) {
  try {
    const data = await api.get(path, params);
    clear(body);
    for (const item of (data && data.items) || []) body.append(row(item));
    return true;
  } catch (error) {
    clear(body);
    result(out, `${label}: ${explain(error)}`, false);
    return false;
  }
}

// An empty list is said in `out`; a list with rows clears it.
function showEmpty(body, out, text) {
  result(out, body.children.length ? "" : text, true);
}

function tokenRow(item, out) {
  const id = item.token_id || item.id;
  const revoke = el("button", { type: "button", class: "ghost small danger", text: item.revoked_at ? "revoked" : "Revoke", disabled: Boolean(item.revoked_at) || !id });
  revoke.addEventListener("click", async () => {
    try {
      await api.delete(`/api/v1/tokens/${encodeURIComponent(id)}`);
      result(out, `Revoked token ${item.name}.`, true);
      loadTokens();
    } catch (error) {
      result(out, explain(error), false);
    }
  });
  return el("tr", { class: item.revoked_at ? "revoked" : "" }, [
    el("td", { text: item.name }),
    el("td", { text: item.role }),
    el("td", { text: item.cameras ? item.cameras.join(", ") : "all" }),
    el("td", { text: item.created_at ? formatTime(item.created_at) : "", title: isoUtc(item.created_at) }),
    el("td", {}, [revoke]),
  ]);
}

async function loadTokens() {
  const out = $("#token-result");
  // a "Revoked token …" note stays after the reload it caused
  if (await loadTable($("#token-list"), out, "Tokens", "/api/v1/tokens", (item) => tokenRow(item, out))) {
    if (!out.classList.contains("ok")) out.textContent = "";
  }
}

async function createToken(event) {
  event.preventDefault();
  const form = event.target;
  const out = $("#token-created");
  const fields = form.elements;
  const body = {
    name: fields.namedItem("name").value.trim(),
    role: fields.namedItem("role").value,
    cameras: cameraList(fields.namedItem("cameras").value),
  };
  try {
    const created = await api.post("/api/v1/tokens", body);
    const plain = created.token || created.plain_token || "";
    clear(out);
    out.className = "result ok";
    const field = el("input", { class: "token-once mono", readonly: true, value: plain, "aria-label": "New token, shown once" });
    out.append(el("span", { text: `Token for ${body.name} (shown once): ` }), field);
    field.focus();
    field.select();
    form.reset();
    loadTokens();
  } catch (error) {
    result(out, explain(error), false);
  }
}

function shardCameras(ids) {
  const list = ids.join(", ");
  return el("td", { class: "detail", title: list }, [el("b", { text: String(ids.length) }), ids.length ? ` ${list}` : ""]);
}

function shardRow(shard) {
  const stateName = token(shard.state, SHARD_STATES, "unreachable");
  const cameras = Array.isArray(shard.cameras) ? shard.cameras : [];
  return el("tr", { class: `shard state-${stateName}`, dataset: { shardId: shard.id } }, [
    el("td", { class: "mono", text: shard.id }),
    el("td", { class: "mono", text: shard.node || "—" }),
    el("td", { class: "mono", text: shard.pid === null || shard.pid === undefined ? "—" : String(shard.pid) }),
    el("td", {}, [el("span", { class: `badge state ${stateName}`, text: stateName })]),
    shardCameras(cameras),
    el("td", { class: "mono", text: shard.cpu === null || shard.cpu === undefined ? "—" : `${formatNumber(shard.cpu)} %` }),
    el("td", { class: "mono", text: shard.rss_mb === null || shard.rss_mb === undefined ? "—" : `${formatNumber(shard.rss_mb, 0)} MiB` }),
  ]);
}

async function loadShards() {
  const body = $("#shard-list");
  const out = $("#shard-result");
  if (await loadTable(body, out, "Shards", "/api/v1/shards", shardRow)) showEmpty(body, out, "No shards.");
}

function auditRow(item) {
  return el("tr", { class: item.status >= 400 ? "denied" : "" }, [
    el("td", { text: formatTime(item.at), title: isoUtc(item.at) }),
    el("td", { text: item.token_name || item.principal || "" }),
    el("td", { text: item.role || "" }),
    el("td", { text: item.action || "" }),
    el("td", { text: item.camera_id || "" }),
    el("td", { class: "mono", text: item.object_id || "" }),
    el("td", { class: "detail", text: item.detail || "", title: item.detail || "" }),
    el("td", { text: item.status === undefined ? "" : String(item.status) }),
    el("td", { class: "mono", text: item.client || "" }),
  ]);
}

async function loadAudit() {
  const body = $("#audit-list");
  const out = $("#audit-result");
  if (await loadTable(body, out, "Audit log", "/api/v1/audit", auditRow, { limit: 100 })) showEmpty(body, out, "No audit entries.");
}

export function show() {
  active = true;
  const note = $("#admin-role-note");
  note.textContent = hasRole("admin")
    ? "Signed in as admin."
    : `Signed in as ${state.session ? state.session.role : "?"}: the server refuses what this role may not do (tokens and the audit log need admin).`;
  note.className = hasRole("admin") ? "summary" : "summary warn";
  loadCameraPage();
  loadShards();
  clearInterval(shardTimer);
  shardTimer = setInterval(() => { if (active && !document.hidden) loadShards(); }, SHARDS_REFRESH_MS);
  loadTokens();
  loadAudit();
}

export function hide() {
  active = false;
  clearInterval(shardTimer);
  shardTimer = null;
}

export function refresh() {
  if (active) show();
}

export function reset() {
  for (const id of ["#admin-cameras", "#shard-list", "#token-list", "#audit-list"]) clear($(id));
  cameraPager.first();
  $("#admin-camera-filter").value = "";
  $("#admin-camera-pager").hidden = true;
  for (const id of ["#add-camera-result", "#admin-cameras-result", "#shard-result", "#token-result", "#token-created", "#audit-result"]) $(id).textContent = "";
}

export function init() {
  $("#add-camera-form").addEventListener("submit", addCamera);
  $("#token-form").addEventListener("submit", createToken);
  $("#audit-refresh").addEventListener("click", loadAudit);
  $("#shard-refresh").addEventListener("click", loadShards);
  cameraPager.bind(loadCameraPage);
  let typing = null;
  $("#admin-camera-filter").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { cameraPager.first(); loadCameraPage(); }, FILTER_WAIT_MS);
  });
}
