// The live page of engine.serve: watch a source, click to prompt it. No build step, no dependencies: the
// box may have no internet. Everything goes through the public API (the same one scripts use). Modules:
// state (what the page knows), api (calls and the token), status (sources), results (the WebSocket and the
// frame on screen), draw (masks, marks, chart), objects (the list), prompt (clicks, boxes).

import { onTokenSubmit } from "./api.js";
import { drawChart } from "./draw.js";
import { removeObject, select } from "./objects.js";
import { listenForPrompts } from "./prompt.js";
import { openResults, pump } from "./results.js";
import { $, hideMessage, st } from "./state.js";
import { loadSources, refreshStatus, selectSource } from "./status.js";

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

$("message-close").addEventListener("click", hideMessage);
$("source").addEventListener("change", (ev) => selectSource(ev.target.value));
$("new-object").addEventListener("click", () => select(null));
onTokenSubmit(() => { if (st.source && !st.ws) openResults(); });
listenForPrompts();
setInterval(() => { if (st.source) refreshStatus(); }, 1000);
setInterval(drawChart, 2000);
loadSources();
