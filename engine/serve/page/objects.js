// The objects of the source shown: the list (with each one's last result), selection and removal.

import { api } from "./api.js";
import { css, drawMarks } from "./draw.js";
import { $, showMessage, st } from "./state.js";
import { refreshStatus } from "./status.js";

export function renderObjects() {
  const ul = $("objects");
  const ids = st.status ? st.status.objects : [];
  const last = new Map(((st.shown && st.shown.result.objects) || []).map((o) => [o.obj_id, o]));
  if (st.selected !== null && !ids.includes(st.selected) && !st.prompts.has(st.selected)) st.selected = null;
  if (!ids.length) { ul.replaceChildren(Object.assign(document.createElement("li"), { className: "empty", textContent: "none: click the frame to add one" })); return; }
  ul.replaceChildren(...ids.map((id) => {
    const o = last.get(id);
    const li = document.createElement("li");
    li.dataset.objId = id;
    li.className = (id === st.selected ? "selected " : "") + (o && !o.present ? "absent" : "");
    const sw = Object.assign(document.createElement("span"), { className: "swatch" });
    sw.style.background = css(id);
    const info = Object.assign(document.createElement("span"), { className: "info" });
    const found = o && o.origin === "detector" ? `${o.label || "object"} (detector${o.det_score != null ? ` ${o.det_score.toFixed(2)}` : ""}) · ` : (o && o.label ? `${o.label} · ` : "");
    const lost = o && o.state === "lost" ? "lost · " : "";
    info.textContent = o ? `${found}${lost}${o.present ? "present" : "absent"} · score ${o.score.toFixed(2)} · ${o.area} px` : "no result yet";
    if (o && o.origin === "detector") li.classList.add("detected");
    const rm = Object.assign(document.createElement("button"), { type: "button", textContent: "Remove", title: `remove object ${id}` });
    rm.addEventListener("click", (ev) => { ev.stopPropagation(); removeObject(id); });
    li.append(sw, Object.assign(document.createElement("b"), { textContent: `#${id}` }), info, rm);
    li.addEventListener("click", () => select(id));
    return li;
  }));
}

export function select(id) {
  st.selected = id;
  renderObjects();
}

export async function removeObject(id) {
  try {
    await api(`/sources/${encodeURIComponent(st.source)}/objects/${id}`, { method: "DELETE" });
    st.prompts.delete(id);
    if (st.selected === id) st.selected = null;
    showMessage(`object ${id} removed`);
  } catch (err) {
    showMessage(`removing object ${id}: ${err.message}`, "error");
  }
  await refreshStatus();
  drawMarks();
}
