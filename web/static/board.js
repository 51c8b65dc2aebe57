// The regulators' board, live: patches rows and tile counts in place from server-sent events
// (/board/stream), without reloading. Plain ES module, no build step.
//
// The page is rendered with the id of the newest board change it reflects (data-since); the
// stream starts after it, so nothing between rendering and connecting is missed. The browser's
// EventSource resumes with Last-Event-ID after a dropped connection. A "resync" event (this
// board fell behind, or changes were trimmed) refetches the table from the same URL.

import { setTime, showTimes } from "./time.js";

const live = document.getElementById("board-live");
const status = document.getElementById("board-status");

function setStatus(text) {
  if (status) status.textContent = text;
}

// What people read for a state and a cause (kitchencam.wording), never the codes.
function readWords() {
  const el = document.getElementById("board-words");
  try {
    return el ? JSON.parse(el.textContent) : null;
  } catch {
    return null;
  }
}

const words = readWords() || { states: {}, causes: {}, unknown: "" };

function stateWords(state) {
  return words.states[state] || "Unknown";
}

// Why a camera went to `state`: the cause's sentence, else the state's words (as the server's
// wording.change does).
function changeWords(cause, state) {
  if (!cause) return "";
  return words.causes[cause] || (words.states[state] ? `${words.states[state]}.` : words.unknown);
}

function readScope(root) {
  const el = root.querySelector("#board-scope");
  try {
    return el ? JSON.parse(el.textContent) : {};
  } catch {
    return {};
  }
}

class Board {
  constructor(root) {
    this.root = root;
    this.scope = readScope(root); // camera id -> state, for every camera the tiles count
    this.stateFilter = root.dataset.state || "";
    this.district = root.dataset.district || "";
    this.textFilter = root.dataset.q || "";
    this.pending = 0; // changes that need a refresh to be shown (rows not on this page)
  }

  tile(state) {
    return this.root.querySelector(`.board-tile[data-state="${CSS.escape(state)}"] [data-count]`);
  }

  bump(state, delta) {
    const el = state ? this.tile(state) : null;
    if (el) el.textContent = String(Math.max(0, Number(el.textContent) + delta));
  }

  row(cameraId) {
    return this.root.querySelector(`tr[data-camera="${CSS.escape(cameraId)}"]`);
  }

  // Whether a camera we knew nothing about belongs on this board (text filters need the
  // server: names are not in the message).
  fits(change) {
    return !this.textFilter && (!this.district || this.district === change.district);
  }

  apply(change) {
    const id = change.camera_id;
    const known = Object.prototype.hasOwnProperty.call(this.scope, id);
    if (!known && !(change.state && this.fits(change))) return;
    const before = known ? this.scope[id] : null;
    if (change.state) {
      this.scope[id] = change.state;
    } else {
      delete this.scope[id];
    }
    if (before !== change.state) {
      this.bump(before, -1);
      this.bump(change.state, +1);
    }
    const row = this.row(id);
    if (!row) {
      if (change.state && (!this.stateFilter || this.stateFilter === change.state)) {
        this.notice(+1);
      }
      return;
    }
    if (!change.state || (this.stateFilter && this.stateFilter !== change.state)) {
      row.classList.add("board-leaving");
      setTimeout(() => row.remove(), 600);
      return;
    }
    row.dataset.state = change.state;
    const badge = row.querySelector('[data-field="state"]');
    if (badge) {
      badge.className = `badge state-${change.state}`;
      badge.textContent = stateWords(change.state);
      badge.title = changeWords(change.cause, change.state);
    }
    const since = row.querySelector('[data-field="since"]');
    if (since && typeof change.since === "number") {
      let time = since.querySelector("time");
      if (!time) {
        time = document.createElement("time");
        since.replaceChildren(time);
      }
      setTime(time, change.since, "when");
    }
    row.classList.remove("board-changed");
    void row.offsetWidth; // restart the highlight animation
    row.classList.add("board-changed");
  }

  notice(delta) {
    this.pending += delta;
    const box = this.root.querySelector("#board-notice");
    const text = this.root.querySelector("#board-notice-text");
    if (!box || !text) return;
    text.textContent =
      this.pending === 1
        ? "1 camera changed into this view."
        : `${this.pending} cameras changed into this view.`;
    box.hidden = this.pending === 0;
  }
}

let board = live ? new Board(live) : null;

// Replace the tiles and table with a fresh copy from the server (same filters, same page).
async function refresh() {
  setStatus("Live updates: refreshing…");
  try {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (response.redirected || !response.ok) {
      location.reload();
      return;
    }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("board-live");
    if (!fresh || !board) return;
    board.root.replaceChildren(...fresh.childNodes);
    for (const name of ["state", "district", "q", "since"]) {
      board.root.dataset[name] = fresh.dataset[name] || "";
    }
    board = new Board(board.root);
    showTimes(board.root);
    setStatus("Live updates: on");
  } catch {
    setStatus("Live updates: refresh failed; retrying");
  }
}

function connect() {
  if (!live || typeof EventSource === "undefined") {
    setStatus("Live updates need a newer browser; reload to see changes.");
    return;
  }
  const url = `/board/stream?since=${encodeURIComponent(live.dataset.since || "0-0")}`;
  const source = new EventSource(url, { withCredentials: true });
  source.addEventListener("open", () => setStatus("Live updates: on"));
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (with Last-Event-ID) unless the answer was not a stream
    // (signed out: the sign-in page); then it stays closed.
    if (source.readyState === EventSource.CLOSED) {
      setStatus("Live updates: off (signed out?). Reload the page.");
    } else {
      setStatus("Live updates: reconnecting…");
    }
  });
  source.addEventListener("state", (event) => {
    try {
      if (board) board.apply(JSON.parse(event.data));
    } catch (err) {
      console.warn("board: bad update", err);
    }
  });
  source.addEventListener("resync", () => {
    refresh();
  });
}

document.addEventListener("click", (event) => {
  if (event.target instanceof Element && event.target.closest("#board-refresh")) refresh();
});

connect();
