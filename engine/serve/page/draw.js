// Drawing: masks from the results' COCO RLE in the palette the server's overlays use, the prompt marks, and
// the latency chart.

import { $, st } from "./state.js";

const CHART_S = 180;
export const PALETTE = vocPalette();

// every object's mask in its palette colour (later objects on top, as the server's overlay); the label image is
// kept for clicks on a mask
export function paintMasks(canvas, objects) {
  const w = canvas.width, h = canvas.height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const labels = new Uint32Array(w * h);  // a detector's ids go past 255
  for (const o of objects) {
    const [mh, mw] = o.mask.size;
    if (mh !== h || mw !== w) continue;
    const counts = rleCounts(o.mask.counts);
    let pos = 0;
    for (let i = 0; i < counts.length; i++) {
      const end = pos + counts[i];
      if (i % 2 === 1) {
        for (let p = pos; p < end; p++) {  // column-major runs
          const y = p % h, x = (p - y) / h;
          labels[y * w + x] = o.obj_id;
        }
      }
      pos = end;
    }
  }
  for (let i = 0; i < labels.length; i++) {
    if (!labels[i]) continue;
    const c = PALETTE[labels[i] % 256];
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return labels;
}

// pycocotools' compressed RLE string: 5-bit groups with a continuation bit, counts after the second as deltas
export function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

export function clearCanvas(c) { c.getContext("2d").clearRect(0, 0, c.width, c.height); }

// the PASCAL VOC / DAVIS colour map, as the server's overlays and PNGs use it
function vocPalette() {
  const pal = [];
  for (let i = 0; i < 256; i++) {
    let c = i, r = 0, g = 0, b = 0;
    for (let j = 0; j < 8; j++) {
      r |= ((c >> 0) & 1) << (7 - j); g |= ((c >> 1) & 1) << (7 - j); b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    pal.push([r, g, b]);
  }
  return pal;
}
export const css = (id) => `rgb(${PALETTE[id % 256].join(",")})`;

export function drawMarks() {
  const svg = $("marks");
  svg.replaceChildren();
  if (!st.shown) return;
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); svg.append(e); return e; };
  const r = Math.max(4, st.shown.image.width / 120);
  for (const [obj, p] of st.prompts) {
    if (p.frame_id !== st.shown.result.frame_id) continue;
    if (p.box) el("rect", { x: p.box[0], y: p.box[1], width: p.box[2] - p.box[0], height: p.box[3] - p.box[1],
      fill: "none", stroke: css(obj), "stroke-width": r / 2 });
    p.points.forEach(([x, y], i) => el("circle", { cx: x, cy: y, r, fill: p.labels[i] ? "#2ecc71" : "#e74c3c",
      stroke: "#fff", "stroke-width": r / 3 }));
  }
  if (st.drag && st.drag.moved) {
    const [x0, y0, x1, y1] = st.drag.box;
    el("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, fill: "none", stroke: "#fff", "stroke-dasharray": "6 4", "stroke-width": r / 2 });
  }
}

export function drawChart() {
  const c = $("chart"), ctx = c.getContext("2d");
  const now = Date.now();
  st.lat = st.lat.filter((x) => now - x[0] < CHART_S * 1000);
  const recent = st.lat.filter((x) => now - x[0] < 60000);
  $("lat-page").textContent = recent.length ? `${Math.round(median(recent.map((x) => x[1])))} ms` : "-";
  const ages = recent.map((x) => x[2]).filter((x) => x !== null);
  $("age-page").textContent = ages.length ? `${Math.round(median(ages))} ms` : "-";
  ctx.clearRect(0, 0, c.width, c.height);
  if (!st.lat.length) return;
  const top = Math.max(...st.lat.map((x) => Math.max(x[1], x[2] || 0))) * 1.1;
  ctx.fillStyle = "#9aa3ad"; ctx.font = "11px system-ui";
  ctx.fillText(`${Math.round(top)} ms`, 4, 12);
  ctx.fillText(`-${CHART_S / 60} min`, 4, c.height - 4);
  const line = (i, colour) => {
    ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.beginPath();
    let started = false;
    for (const x of st.lat) {
      if (x[i] === null) continue;
      const px = c.width * (1 - (now - x[0]) / (CHART_S * 1000)), py = c.height * (1 - x[i] / top);
      if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; }
    }
    ctx.stroke();
  };
  line(1, "#4aa3ff");
  line(2, "#f5a623");
}

function median(xs) { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; }
