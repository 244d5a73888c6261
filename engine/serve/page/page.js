// The live page of engine.serve: watch a source, click to prompt it. No build step, no dependencies: the
// box may have no internet. Everything goes through the public API (the same one scripts use).
//
// What is shown is always one tracked frame and its result: results arrive over the WebSocket, and the page
// fetches that frame's image by id (frame.jpg?frame_id=), so a click is sent with the id of the frame the
// person is looking at, and the engine applies it on that frame (the API's held frames).

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "sam2-edge-token";
const CHART_S = 180;
const PALETTE = vocPalette();

const st = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  tokenWaiters: [],
  source: null,        // id of the source shown
  status: null,        // its last GET /sources/{id}
  ws: null, wsTries: 0,
  latest: null,        // newest result over the WebSocket
  shown: null,         // {result, image, labels}: what is on screen
  fetching: false,
  paused: false,
  selected: null,      // obj_id
  prompts: new Map(),  // obj_id -> {frame_id, points, labels, box}: this frame's prompt, sent whole each time
  lat: [],             // [t_ms, capture->result ms, capture->screen ms]
  drag: null,
};

// ------------------------------------------------------------------ the API
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return `HTTP ${status}`;
}

async function api(path, opts = {}) {
  for (;;) {
    const headers = { ...(opts.headers || {}) };
    if (st.token) headers.Authorization = `Bearer ${st.token}`;
    if (opts.json !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, { method: opts.method || "GET", headers,
        body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined });
    } catch (err) {
      throw new ApiError(0, `the server cannot be reached (${err.message})`);
    }
    if (resp.status === 401) { await askToken(st.token ? "the server refused this token" : ""); continue; }
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch { /* not JSON */ }
      throw new ApiError(resp.status, detailText(body, resp.status));
    }
    return opts.raw ? resp : (resp.status === 204 ? null : resp.json());
  }
}

function askToken(why) {
  $("token-form").hidden = false;
  if (why) showMessage(why, "error");
  $("token").focus();
  return new Promise((resolve) => st.tokenWaiters.push(resolve));
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  st.token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, st.token);
  $("token-form").hidden = true;
  hideMessage();
  const waiters = st.tokenWaiters.splice(0);
  waiters.forEach((resolve) => resolve());
  if (st.source && !st.ws) openResults();
});

// ------------------------------------------------------------------ messages
let messageTimer = null;
function showMessage(text, kind = "info") {
  $("message-text").textContent = text;
  $("message").className = kind;
  $("message").hidden = false;
  clearTimeout(messageTimer);
  if (kind === "info") messageTimer = setTimeout(hideMessage, 6000);
}
function hideMessage() { $("message").hidden = true; }
$("message-close").addEventListener("click", hideMessage);

// ------------------------------------------------------------------ sources and status
async function loadSources() {
  let sources;
  try { sources = await api("/sources"); } catch (err) { showMessage(err.message, "error"); setTimeout(loadSources, 2000); return; }
  const sel = $("source");
  sel.replaceChildren(...sources.map((s) => new Option(s.id, s.id)));
  if (!sources.length) { showMessage("this deployment has no sources", "error"); return; }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("source");
  selectSource(sources.some((s) => s.id === wanted) ? wanted : sources[0].id);
}

function selectSource(id) {
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
$("source").addEventListener("change", (ev) => selectSource(ev.target.value));

async function refreshStatus() {
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
setInterval(() => { if (st.source) refreshStatus(); }, 1000);

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

// ------------------------------------------------------------------ results over the WebSocket
function openResults() {
  const id = st.source;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const q = st.token ? `?token=${encodeURIComponent(st.token)}` : "";
  const ws = new WebSocket(`${proto}://${location.host}/sources/${encodeURIComponent(id)}/results${q}`);
  st.ws = ws;
  ws.onopen = () => {
    if (st.wsTries > 0) showMessage("results connection restored");
    st.wsTries = 0;
  };
  ws.onmessage = (ev) => onResult(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    if (st.ws !== ws) return;
    st.ws = null;
    if (ev.code === 1008 && /token/.test(ev.reason)) {
      askToken("the server refused this token for the results stream");
      return;
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
async function pump() {
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

// ------------------------------------------------------------------ drawing
function showResult(r, image) {
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

// every object's mask in its palette colour (later objects on top, as the server's overlay); the label image is
// kept for clicks on a mask
function paintMasks(canvas, objects) {
  const w = canvas.width, h = canvas.height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const labels = new Uint8Array(w * h);
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
    const c = PALETTE[labels[i]];
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return labels;
}

// pycocotools' compressed RLE string: 5-bit groups with a continuation bit, counts after the second as deltas
function rleCounts(s) {
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

function clearCanvas(c) { c.getContext("2d").clearRect(0, 0, c.width, c.height); }

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
const css = (id) => `rgb(${PALETTE[id % 256].join(",")})`;

function drawMarks() {
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

function drawChart() {
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

// ------------------------------------------------------------------ objects
function renderObjects() {
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
    info.textContent = o ? `${o.present ? "present" : "absent"} · score ${o.score.toFixed(2)} · ${o.area} px` : "no result yet";
    const rm = Object.assign(document.createElement("button"), { type: "button", textContent: "Remove", title: `remove object ${id}` });
    rm.addEventListener("click", (ev) => { ev.stopPropagation(); removeObject(id); });
    li.append(sw, Object.assign(document.createElement("b"), { textContent: `#${id}` }), info, rm);
    li.addEventListener("click", () => select(id));
    return li;
  }));
}

function select(id) {
  st.selected = id;
  renderObjects();
}

async function removeObject(id) {
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

$("new-object").addEventListener("click", () => select(null));

// ------------------------------------------------------------------ prompting on the frame on screen
function framePoint(ev) {
  const rect = $("view").getBoundingClientRect(), c = $("frame");
  const x = Math.min(c.width - 1, Math.max(0, (ev.clientX - rect.left) * c.width / rect.width));
  const y = Math.min(c.height - 1, Math.max(0, (ev.clientY - rect.top) * c.height / rect.height));
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

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

// ------------------------------------------------------------------ pause and keys
function setPaused(paused) {
  st.paused = paused;
  $("pause").setAttribute("aria-pressed", String(paused));
  $("pause").textContent = paused ? "Resume" : "Pause";
  if (!paused) pump();
}
$("pause").addEventListener("click", () => setPaused(!st.paused));

document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
  if (ev.key === "Escape") select(null);
  else if (ev.key === " ") { ev.preventDefault(); setPaused(!st.paused); }
  else if ((ev.key === "Delete" || ev.key === "Backspace") && st.selected !== null) removeObject(st.selected);
});

setInterval(drawChart, 2000);
loadSources();
