// The consumer watch page: one card per camera, live video while the camera is fine, a
// placeholder with its state, since when (local time) and last good picture while it is not.
// Polls the page's status.json and switches cards without a reload.

import { WhepPlayer } from "./player.js";
import { setTime } from "./time.js";

const POLL_JITTER = 0.2;
const POLL_MAX_BACKOFF_MS = 60000;

const data = JSON.parse(document.getElementById("watch-data").textContent);
const grid = document.getElementById("watch-grid");
const template = document.getElementById("camera-card");
const empty = document.getElementById("watch-empty");
const cards = new Map(); // camera id -> { el, player, info }

// The relay's count lags a few seconds behind: a viewer whose own video plays counts at least
// themself; "0 watching" is never shown, nor any count beside a placeholder.
function viewersText(entry) {
  const n = entry.info.viewers;
  if (!entry.info.playable || n === null || n === undefined) return "";
  const shown = entry.el.dataset.player === "live" ? Math.max(n, 1) : n;
  if (shown === 0) return "";
  return shown === 1 ? "1 watching" : `${shown} watching`;
}

function field(el, name) {
  return el.querySelector(`[data-field="${name}"]`);
}

function makeCard(info) {
  const el = template.content.firstElementChild.cloneNode(true);
  el.dataset.camera = info.id;
  grid.appendChild(el);
  return el;
}

function setOverlay(entry, text) {
  const overlay = field(entry.el, "overlay");
  overlay.textContent = text;
  overlay.hidden = text === "";
}

function startPlayer(entry) {
  if (entry.player !== null) return;
  const video = field(entry.el, "video");
  const player = new WhepPlayer(video, entry.info.whep);
  player.addEventListener("statechange", (event) => {
    const { state, message } = event.detail;
    entry.el.dataset.player = state;
    // Only arriving pictures count as live: anything else covers the video with words.
    setOverlay(entry, state === "live" ? "" : message);
    field(entry.el, "viewers").textContent = viewersText(entry);
  });
  entry.player = player;
  setOverlay(entry, "Connecting…");
  if (!document.hidden) player.start();
}

function stopPlayer(entry) {
  if (entry.player === null) return;
  entry.player.stop({ keepalive: true });
  entry.player = null;
  field(entry.el, "video").srcObject = null;
}

// Whether the status says a camera just became available: no longer a placeholder, or its
// relay now reports it (its viewer count appears).
function cameBack(previous, info) {
  if (previous === undefined || !info.playable) return false;
  return !previous.playable || (previous.viewers === null && info.viewers !== null);
}

function render(entry, previous) {
  const { el, info } = entry;
  el.dataset.state = info.state;
  field(el, "badge").className = `badge state-${info.state}`;
  field(el, "name").textContent = info.name;
  field(el, "location").textContent = info.location;
  field(el, "location").hidden = !info.location;
  field(el, "viewers").textContent = viewersText(entry);
  const video = field(el, "video");
  const placeholder = field(el, "placeholder");
  if (info.playable) {
    placeholder.hidden = true;
    video.hidden = false;
    startPlayer(entry);
    if (cameBack(previous, info)) entry.player.retryNow();
    field(el, "badge").textContent = info.note ? `${info.title} · ${info.note}` : info.title;
  } else {
    stopPlayer(entry);
    video.hidden = true;
    placeholder.hidden = false;
    setOverlay(entry, "");
    field(el, "badge").textContent = info.title;
    field(el, "title").textContent = info.title;
    field(el, "note").textContent = info.note;
    const since = field(el, "since");
    if (info.since) {
      since.hidden = false;
      setTime(field(el, "since-time"), info.since, "when");
    } else {
      since.hidden = true;
    }
    // The last good picture if there is one (status.json says snapshot: null when not);
    // else a neutral drawing, and no request for a picture that does not exist.
    const img = field(el, "snapshot");
    if (info.snapshot) {
      if (img.getAttribute("src") !== info.snapshot) img.src = info.snapshot;
      img.hidden = false;
    } else {
      img.removeAttribute("src");
      img.hidden = true;
    }
    field(el, "illustration").toggleAttribute("hidden", !img.hidden); // an SVG: no .hidden
  }
}

function update(cameras) {
  const seen = new Set();
  for (const info of cameras) {
    seen.add(info.id);
    let entry = cards.get(info.id);
    if (entry === undefined) {
      const el = grid.querySelector(`[data-camera="${CSS.escape(info.id)}"]`) ?? makeCard(info);
      entry = { el, player: null, info };
      const img = field(el, "snapshot");
      img.addEventListener("error", () => {
        img.hidden = true;
        field(el, "illustration").removeAttribute("hidden");
      });
      cards.set(info.id, entry);
    }
    const previous = entry.info === info ? undefined : entry.info;
    entry.info = info;
    render(entry, previous);
  }
  for (const [id, entry] of cards) {
    if (!seen.has(id)) {
      stopPlayer(entry);
      entry.el.remove();
      cards.delete(id);
    }
  }
  empty.hidden = cameras.length > 0;
}

let failures = 0;
let pollTimer = null;

async function poll() {
  pollTimer = null;
  try {
    const response = await fetch(data.status, { cache: "no-cache" });
    if (!response.ok) throw new Error(String(response.status));
    update((await response.json()).cameras);
    failures = 0;
  } catch {
    failures += 1;
  }
  schedule();
}

function schedule() {
  if (pollTimer !== null || document.hidden) return;
  const base = Math.min(data.poll_s * 1000 * 2 ** failures, POLL_MAX_BACKOFF_MS);
  pollTimer = setTimeout(poll, base * (1 + POLL_JITTER * (2 * Math.random() - 1)));
}

// Hidden tab: no streaming, no polling. Visible again: fresh states, then players.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(pollTimer);
    pollTimer = null;
    for (const entry of cards.values()) entry.player?.stop();
  } else {
    for (const entry of cards.values()) {
      if (entry.player !== null && entry.info.playable) entry.player.start();
    }
    clearTimeout(pollTimer);
    poll();
  }
});

// Leaving the page ends every WHEP session (keepalive DELETE); back from the cache, resume.
function leave() {
  for (const entry of cards.values()) entry.player?.stop({ keepalive: true });
}
window.addEventListener("pagehide", leave);
window.addEventListener("beforeunload", leave);
window.addEventListener("pageshow", (event) => {
  if (event.persisted && !document.hidden) {
    for (const entry of cards.values()) {
      if (entry.player !== null && entry.info.playable) entry.player.start();
    }
    poll();
  }
});

update(data.cameras);
schedule();
