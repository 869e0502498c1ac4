// The camera filter of the events and charts views: a text field with suggestions (a
// datalist of the cameras whose id or name holds what was typed, at most SUGGESTIONS of
// them), where a select of every camera would hold thousands of options on a large site.
// The field's value is a camera id; empty means every camera.

import { $, el } from "./dom.js";
import { state, onCameras } from "./state.js";

const SUGGESTIONS = 50;
const TYPING_WAIT_MS = 400;

/** Fills `list` with the cameras matching `input`'s text (every camera's first ones when
 * it is empty). */
export function suggestCameras(input, list) {
  const text = input.value.trim().toLowerCase();
  const found = [];
  for (const camera of state.cameras) {
    if (found.length >= SUGGESTIONS) break;
    const name = camera.name || "";
    if (!text || camera.id.toLowerCase().includes(text) || name.toLowerCase().includes(text)) found.push(camera);
  }
  list.replaceChildren(...found.map((camera) => el("option", {
    value: camera.id, label: camera.name && camera.name !== camera.id ? camera.name : undefined,
  })));
}

/** Keeps `input`'s suggestions (the datalist `listSelector`) current, and calls `onPause`
 * when typing in it pauses. */
export function cameraPicker(input, listSelector, onPause) {
  const list = $(listSelector);
  let typing = null;
  onCameras(() => suggestCameras(input, list));
  input.addEventListener("input", () => {
    suggestCameras(input, list);
    clearTimeout(typing);
    typing = setTimeout(onPause, TYPING_WAIT_MS);
  });
  // a reset empties the field after this event: suggest every camera's first ones again
  if (input.form) input.form.addEventListener("reset", () => setTimeout(() => suggestCameras(input, list)));
}
