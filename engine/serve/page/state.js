// What the page knows, shared by its modules, and its one message line.

export const $ = (id) => document.getElementById(id);
export const TOKEN_KEY = "sam2-edge-token";

export const st = {
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

let messageTimer = null;
export function showMessage(text, kind = "info") {
  $("message-text").textContent = text;
  $("message").className = kind;
  $("message").hidden = false;
  clearTimeout(messageTimer);
  if (kind === "info") messageTimer = setTimeout(hideMessage, 6000);
}
export function hideMessage() { $("message").hidden = true; }
