// Prompting on the frame on screen: a click adds an object (or a point to the selected one), a shift-click a
// negative point, a drag a box; each prompt names the frame id the person is looking at.

import { api } from "./api.js";
import { drawMarks } from "./draw.js";
import { select } from "./objects.js";
import { showResult } from "./results.js";
import { $, showMessage, st } from "./state.js";
import { refreshStatus } from "./status.js";

function framePoint(ev) {
  const rect = $("view").getBoundingClientRect(), c = $("frame");
  const x = Math.min(c.width - 1, Math.max(0, (ev.clientX - rect.left) * c.width / rect.width));
  const y = Math.min(c.height - 1, Math.max(0, (ev.clientY - rect.top) * c.height / rect.height));
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

async function prompt({ point, label, box }) {
  const r = st.shown.result;
  const objIds = st.status ? st.status.objects : [];
  const objId = st.selected !== null ? st.selected : Math.max(0, ...objIds, ...st.prompts.keys()) + 1;
  if (objId > 255) { showMessage("object ids end at 255: remove an object first", "error"); return; }
  let p = st.prompts.get(objId);
  if (!p || p.frame_id !== r.frame_id) p = { frame_id: r.frame_id, points: [], labels: [], box: null };
  p = { ...p, points: [...p.points], labels: [...p.labels] };
  if (box) { p.box = box; p.points = []; p.labels = []; } else { p.points.push(point); p.labels.push(label); }
  const body = { frame_id: r.frame_id, obj_id: objId, clear_old_points: true };
  if (p.points.length) { body.points = p.points; body.labels = p.labels; }
  if (p.box) body.box = p.box;
  try {
    const answer = await api(`/sources/${encodeURIComponent(st.source)}/prompts`, { method: "POST", json: body });
    st.prompts.set(objId, p);
    st.selected = objId;
    if (st.shown && st.shown.result.frame_id === answer.frame_id) showResult(answer, st.shown.image);
    await refreshStatus();
  } catch (err) {
    const what = err.status === 409 ? `frame ${r.frame_id} is no longer held by the server (${err.message}); ` +
      "prompt on a newer frame" : err.message;
    showMessage(`prompt on frame ${r.frame_id} refused: ${what}`, "error");
    drawMarks();
  }
}

export function listenForPrompts() {
  $("view").addEventListener("pointerdown", (ev) => {
    if (!st.shown || ev.button !== 0) return;
    const p = framePoint(ev);
    st.drag = { start: p, box: [...p, ...p], moved: false, shift: ev.shiftKey };
    $("view").setPointerCapture(ev.pointerId);
  });

  $("view").addEventListener("pointermove", (ev) => {
    if (!st.drag) return;
    const [x, y] = framePoint(ev), [x0, y0] = st.drag.start;
    const scale = $("frame").width / $("view").getBoundingClientRect().width;
    if (Math.hypot(x - x0, y - y0) > 6 * scale) st.drag.moved = true;
    st.drag.box = [Math.min(x, x0), Math.min(y, y0), Math.max(x, x0), Math.max(y, y0)];
    if (st.drag.moved) drawMarks();
  });

  $("view").addEventListener("pointerup", (ev) => {
    const drag = st.drag;
    st.drag = null;
    if (!drag || !st.shown) return;
    if (drag.moved) { prompt({ box: drag.box }); return; }
    const [x, y] = drag.start;
    if (drag.shift) {
      if (st.selected === null) { showMessage("select an object first: a negative point corrects an object", "error"); return; }
      prompt({ point: [x, y], label: 0 });
      return;
    }
    const hit = st.shown.labels[Math.floor(y) * $("frame").width + Math.floor(x)];
    if (hit && hit !== st.selected) { select(hit); return; }
    prompt({ point: [x, y], label: 1 });
  });
}
