// feedtag dashboard: sign-in, routing between the views, keyboard shortcuts.
// Plain ES modules, no build step; served by the API under /static/ with a strict CSP.

import { ApiError, currentSession, onUnauthorized, signIn, signOut } from "./api.js";
import { $, $$, typingIn } from "./dom.js";
import { state, notify } from "./state.js";
import * as grid from "./grid.js";
import * as events from "./events.js";
import * as charts from "./charts.js";
import * as admin from "./admin.js";
import * as camera from "./camera.js";

const VIEWS = { cameras: grid, events, charts, admin };
const ORDER = ["cameras", "events", "charts", "admin"];
let current = null;

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, search] = hash.split("?");
  const name = ORDER.includes(path) ? path : "cameras";
  return { name, params: new URLSearchParams(search || "") };
}

function route() {
  if (!state.session) return;
  const { name, params } = parseHash();
  if (current && current !== name) VIEWS[current].hide();
  for (const section of $$(".view")) section.hidden = section.dataset.view !== name;
  for (const link of $$(".tabs a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  current = name;
  document.title = `feedtag · ${name}`;
  VIEWS[name].show(params);
}

function showLogin(message = "") {
  state.session = null;
  for (const view of Object.values(VIEWS)) { view.hide(); view.reset(); }
  current = null;
  for (const dialog of $$("dialog[open]")) dialog.close();
  $("#app-view").hidden = true;
  $("#login-view").hidden = false;
  $("#login-error").textContent = message;
  document.title = "feedtag · sign in";
  $("#login-token").focus();
}

function showApp(session) {
  state.session = session;
  const who = $("#whoami");
  who.replaceChildren();
  const role = document.createElement("span");
  role.className = `role role-${["viewer", "operator", "admin"].includes(session.role) ? session.role : "other"}`;
  role.textContent = session.role;
  const name = document.createElement("span");
  name.className = "who-name";
  name.textContent = session.name;
  who.append(name, role);
  if (Array.isArray(session.cameras)) {
    const scope = document.createElement("span");
    scope.className = "muted small";
    scope.textContent = `${session.cameras.length} camera${session.cameras.length === 1 ? "" : "s"}`;
    scope.title = session.cameras.join(", ");
    who.append(scope);
  }
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  // Focus leaves the (now hidden) token field, so that the keyboard shortcuts work at once.
  if (document.activeElement && document.activeElement.closest("#login-view")) $("#main").focus();
  events.startStream();
  grid.loadCameraNames().catch(() => {});
  route();
}

async function onLogin(event) {
  event.preventDefault();
  const input = $("#login-token");
  const button = $("#login-form button[type=submit]");
  const tokenText = input.value.trim();
  if (!tokenText) return;
  button.disabled = true;
  $("#login-error").textContent = "";
  try {
    const session = await signIn(tokenText);
    input.value = "";
    if (!location.hash) history.replaceState(null, "", "#/cameras");
    showApp(session);
  } catch (error) {
    $("#login-error").textContent = error instanceof ApiError && error.status === 401
      ? "That token was not accepted."
      : error instanceof ApiError ? error.explanation : "Sign-in failed.";
    input.select();
  } finally {
    button.disabled = false;
  }
}

async function onLogout() {
  try { await signOut(); } catch { /* signed out locally either way */ }
  showLogin("Signed out.");
}

function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!state.session || typingIn(event.target) || document.querySelector("dialog[open]")) return;
  const key = event.key;
  if (key >= "1" && key <= "4") {
    location.hash = `#/${ORDER[Number(key) - 1]}`;
  } else if (key === "/") {
    if (current === "cameras") grid.focusFilter();
    else if (current === "events") events.focusFilter();
    else return;
  } else if (key === "j" || key === "k") {
    if (current !== "events") return;
    events.moveFocus(key === "j" ? 1 : -1);
  } else if (key === "o") {
    grid.toggleOverlay();
  } else if (key === "r") {
    VIEWS[current].refresh();
    notify("Refreshed.", "info", 1500);
  } else if (key === "?") {
    $("#help-dialog").showModal();
  } else {
    return;
  }
  event.preventDefault();
}

async function boot() {
  for (const view of Object.values(VIEWS)) view.init();
  camera.init();
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout-button").addEventListener("click", onLogout);
  $("#help-button").addEventListener("click", () => $("#help-dialog").showModal());
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", onKey);
  onUnauthorized(() => { if (state.session) showLogin("Your session ended. Sign in again."); });
  try {
    const session = await currentSession();
    if (session) showApp(session); else showLogin();
  } catch (error) {
    showLogin(error instanceof ApiError ? error.explanation : "The server could not be reached.");
  }
  document.body.dataset.ready = "true";
}

boot();
