// Results over the WebSocket, and what is on screen: one tracked frame and its result. The page fetches that
// frame's image by id (frame.jpg?frame_id=), so a click is sent with the id of the frame the person sees.

import { api, wsProtocols } from "./api.js";
import { drawChart, drawMarks, paintMasks } from "./draw.js";
import { renderObjects } from "./objects.js";
import { $, showMessage, st } from "./state.js";

export function openResults() {
  const id = st.source;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/sources/${encodeURIComponent(id)}/results`, wsProtocols());
  let opened = false;
  st.ws = ws;
  ws.onopen = () => {
    opened = true;
    if (st.wsTries > 0) showMessage("results connection restored");
    st.wsTries = 0;
  };
  ws.onmessage = (ev) => onResult(JSON.parse(ev.data));
  ws.onclose = async (ev) => {
    if (st.ws !== ws) return;
    st.ws = null;
    if (!opened) {
      // refused at the handshake (a browser is not told why): an authenticated call asks for the token if
      // that was it, and says so if the server cannot be reached
      try { await api(`/sources/${encodeURIComponent(id)}`); } catch (err) { showMessage(err.message, "error"); }
    }
    const wait = Math.min(10, 0.5 * 2 ** st.wsTries++);
    showMessage(`connection to the results lost${ev.reason ? ` (${ev.reason})` : ""}; reconnecting in ${wait} s`, "error");
    setTimeout(() => { if (st.source === id && !st.ws) openResults(); }, wait * 1000);
  };
}

function onResult(r) {
  if (r.source !== st.source) return;
  if (r.kind === "track") {
    r.row = [Date.now(), r.latency_ms, null];  // for the chart: when it arrived, its latency, its age on screen
    st.latest = r;
    st.lat.push(r.row);
  } else if (st.shown && r.frame_id === st.shown.result.frame_id) {
    showResult(r, st.shown.image);  // a prompt's answer on the frame on screen
  }
  pump();
}

// the newest result's frame is fetched and drawn; results that arrive meanwhile are skipped (the newest wins)
export async function pump() {
  if (st.paused || st.fetching || !st.latest) return;
  const r = st.latest;
  if (st.shown && st.shown.result === r) return;
  st.fetching = true;
  try {
    let image = st.shown && st.shown.result.frame_id === r.frame_id ? st.shown.image : null;
    if (!image) image = await fetchFrame(r.frame_id);
    if (image && r.source === st.source && !st.paused) {
      showResult(r, image);
      r.row[2] = Date.now() - r.captured_at * 1000;  // the page's clock against the server's: one box, one clock
    }
  } catch (err) {
    showMessage(err.message, "error");
  } finally {
    st.fetching = false;
  }
  if (st.latest !== r) pump();
}

async function fetchFrame(frameId) {
  try {
    const resp = await api(`/sources/${encodeURIComponent(st.source)}/frame.jpg?frame_id=${frameId}`, { raw: true });
    return await createImageBitmap(await resp.blob());
  } catch (err) {
    if (err.status === 409) return null;  // tracking moved past it: a newer result follows
    throw err;
  }
}

export function showResult(r, image) {
  const frame = $("frame"), masks = $("masks");
  if (frame.width !== image.width || frame.height !== image.height) {
    for (const c of [frame, masks]) { c.width = image.width; c.height = image.height; }
    $("marks").setAttribute("viewBox", `0 0 ${image.width} ${image.height}`);
  }
  frame.getContext("2d").drawImage(image, 0, 0);
  const labels = paintMasks(masks, r.objects);
  st.shown = { result: r, image, labels };
  $("view").dataset.frameId = r.frame_id;
  $("placeholder").hidden = true;
  $("frame-info").textContent = `frame ${r.frame_id} · captured ${new Date(r.captured_at * 1000).toLocaleTimeString()}` +
    ` · ${Math.round(r.latency_ms)} ms to its result${st.paused ? " · paused" : ""}`;
  drawMarks();
  renderObjects();
  drawChart();
}
