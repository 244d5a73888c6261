// The sources: the list, the one shown (kept in the URL's fragment) and its status, polled each second.

import { api } from "./api.js";
import { clearCanvas, drawMarks } from "./draw.js";
import { renderObjects } from "./objects.js";
import { openResults } from "./results.js";
import { $, showMessage, st } from "./state.js";

export async function loadSources() {
  let sources;
  try { sources = await api("/sources"); } catch (err) { showMessage(err.message, "error"); setTimeout(loadSources, 2000); return; }
  const sel = $("source");
  sel.replaceChildren(...sources.map((s) => new Option(s.id, s.id)));
  if (!sources.length) { showMessage("this deployment has no sources", "error"); return; }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("source");
  selectSource(sources.some((s) => s.id === wanted) ? wanted : sources[0].id);
}

export function selectSource(id) {
  if (st.ws) { st.ws.onclose = null; st.ws.close(); st.ws = null; }
  Object.assign(st, { source: id, status: null, latest: null, shown: null, selected: null, lat: [], wsTries: 0 });
  st.prompts.clear();
  $("source").value = id;
  history.replaceState(null, "", `#source=${encodeURIComponent(id)}`);
  $("placeholder").hidden = false;
  clearCanvas($("masks"));
  drawMarks();
  renderObjects();
  refreshStatus();
  openResults();
}

export async function refreshStatus() {
  const id = st.source;
  try {
    const s = await api(`/sources/${encodeURIComponent(id)}`);
    if (id !== st.source) return;
    st.status = s;
    renderStatus();
    renderObjects();
  } catch (err) {
    if (err.status === 0) showMessage(err.message, "error");
  }
}

function renderStatus() {
  const s = st.status;
  $("state").textContent = s.state + (s.last_error && s.state !== "live" ? `: ${s.last_error}` : "");
  $("state").className = `state ${s.state}`;
  $("fps-in").textContent = s.fps_in.toFixed(1);
  $("fps-tracked").textContent = s.fps_tracked.toFixed(1);
  $("dropped").textContent = s.frames_dropped;
  $("reconnects").textContent = s.reconnects;
  $("held").textContent = s.held_frames ? `${s.held_frames.first} to ${s.held_frames.last}` : "none";
  const l = s.latency_ms;
  $("lat-api").textContent = l.p50 === null ? "-" : `${Math.round(l.p50)} / ${Math.round(l.p95)} ms`;
}
