// The zones and lines of a camera drawn over its image (SVG, viewBox in image pixels).

import { clear, svg } from "./dom.js";

/** Zones (polygons) and lines (with an arrow to their forward side) over a thumbnail.
 * ``target`` is {overlay: <svg>, camera, size: [w, h], overlayKey}; coordinates are the
 * API's normalized 0..1, drawn in the image's own pixels so that angles stay right. */
export function drawOverlay(target) {
  const camera = target.camera;
  const [w, h] = target.size;
  // Labels keep about the same size on screen in a small card and in the large view.
  const rendered = target.overlay.clientWidth;  // 0 until the card is on screen
  const shownWidth = rendered || 320;
  const key = JSON.stringify([w, h, Math.round(rendered / 20), camera.zones || [], camera.lines || []]);
  if (key === target.overlayKey) return;
  target.overlayKey = key;
  const overlay = target.overlay;
  clear(overlay);
  overlay.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const px = ([x, y]) => [x * w, y * h];
  const fontSize = Math.round((11 * w) / shownWidth);
  (camera.zones || []).forEach((zone, index) => {
    const points = (zone.polygon || []).map(px);
    if (points.length < 3) return;
    const cls = zone.roadway ? "zone roadway" : `zone zone-${index % 6}`;
    overlay.append(svg("polygon", { class: cls, points: points.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" "), "vector-effect": "non-scaling-stroke" }));
    const cx = points.reduce((s, p) => s + p[0], 0) / points.length;
    const cy = points.reduce((s, p) => s + p[1], 0) / points.length;
    overlay.append(svg("text", { class: "zone-label", x: cx.toFixed(1), y: cy.toFixed(1), "font-size": fontSize, "text-anchor": "middle", "dominant-baseline": "middle", text: zone.name }));
  });
  for (const line of camera.lines || []) {
    const ends = (line.points || []).map(px);
    if (ends.length < 2) continue;
    const [[x0, y0], [x1, y1]] = ends;
    overlay.append(svg("line", { class: "cross-line", x1: x0, y1: y0, x2: x1, y2: y1, "vector-effect": "non-scaling-stroke" }));
    // Forward is from the left-hand to the right-hand side walking start -> end: normal (-dy, dx).
    const dx = x1 - x0, dy = y1 - y0, length = Math.hypot(dx, dy) || 1;
    const nx = -dy / length, ny = dx / length;
    const arrow = Math.min(Math.min(w, h) * 0.2, (30 * w) / shownWidth);
    const mx = (x0 + x1) / 2, my = (y0 + y1) / 2;
    const tx = mx + nx * arrow, ty = my + ny * arrow;
    const head = arrow * 0.35;
    const bx = tx - nx * head, by = ty - ny * head;
    const d = `M${mx.toFixed(1)} ${my.toFixed(1)}L${tx.toFixed(1)} ${ty.toFixed(1)}`
      + `M${(bx + ny * head * 0.6).toFixed(1)} ${(by - nx * head * 0.6).toFixed(1)}L${tx.toFixed(1)} ${ty.toFixed(1)}`
      + `L${(bx - ny * head * 0.6).toFixed(1)} ${(by + nx * head * 0.6).toFixed(1)}`;
    overlay.append(svg("path", { class: "cross-arrow", d, "vector-effect": "non-scaling-stroke" }));
    const label = line.direction ? `${line.name} → ${line.direction}` : line.name;
    const anchor = nx < -0.5 ? "end" : nx > 0.5 ? "start" : "middle";  // beside the arrow's tip
    const gap = fontSize * 0.4;
    const text = svg("text", { class: "line-label", x: (tx + nx * gap).toFixed(1), y: (ty + ny * (gap + fontSize * 0.6)).toFixed(1), "font-size": fontSize, "text-anchor": anchor, "dominant-baseline": "middle", text: label });
    overlay.append(text);
    keepInside(text, w, h);
  }
}

/** Moves a label back inside the image when it would stick out (measured once drawn). */
function keepInside(text, w, h) {
  let box;
  try { box = text.getBBox(); } catch { return; }
  if (!box || !box.width) return;  // not rendered (yet): the next redraw measures it
  let dx = 0, dy = 0;
  if (box.x < 0) dx = -box.x + 2;
  else if (box.x + box.width > w) dx = w - (box.x + box.width) - 2;
  if (box.y < 0) dy = -box.y + 2;
  else if (box.y + box.height > h) dy = h - (box.y + box.height) - 2;
  if (dx) text.setAttribute("x", (Number(text.getAttribute("x")) + dx).toFixed(1));
  if (dy) text.setAttribute("y", (Number(text.getAttribute("y")) + dy).toFixed(1));
}
