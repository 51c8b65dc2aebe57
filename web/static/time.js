// Times in the viewer's own time zone. The server renders every time as
//   <time datetime="2026-11-29T12:03:00Z" data-time="when">29 Nov 2026 12:03 UTC</time>
// (data-time="ago" for "5 min ago"); this module rewrites them in local time ("today 12:03",
// "28 Nov 12:03") and keeps the relative ones current. Other scripts call setTime() for times
// they change and showTimes() for markup they insert.

const REFRESH_MS = 30000;
const DAY_MS = 86400000;

function clock(date) {
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function dayStart(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

/** A date as "today 12:03", "yesterday 12:03", "28 Nov 12:03" or "28 Nov 2025 12:03". */
export function localText(date, now = new Date()) {
  const days = Math.round((dayStart(now) - dayStart(date)) / DAY_MS);
  if (days === 0) return `today ${clock(date)}`;
  if (days === 1) return `yesterday ${clock(date)}`;
  const options = { day: "numeric", month: "short" };
  if (date.getFullYear() !== now.getFullYear()) options.year = "numeric";
  return `${date.toLocaleDateString(undefined, options)} ${clock(date)}`;
}

/** How long ago a date was: "just now", "5 min ago", "3 h ago", "2 days ago". */
export function agoText(date, now = new Date()) {
  const seconds = Math.max(0, (now.getTime() - date.getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  const days = Math.floor(seconds / 86400);
  return days === 1 ? "1 day ago" : `${days} days ago`;
}

function show(el) {
  const date = new Date(el.dateTime);
  if (Number.isNaN(date.getTime())) return;
  const exact = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  if (el.dataset.time === "ago") {
    el.textContent = agoText(date);
    el.title = exact;
  } else {
    el.textContent = localText(date);
    el.title = exact;
  }
}

/** Rewrite every server-rendered time under `root` in the viewer's local time. */
export function showTimes(root = document) {
  for (const el of root.querySelectorAll("time[data-time][datetime]")) show(el);
}

/** Point a <time> element at Unix `seconds` and show it (kind: "when" or "ago"). */
export function setTime(el, seconds, kind = el.dataset.time || "when") {
  el.dataset.time = kind;
  el.dateTime = new Date(seconds * 1000).toISOString();
  show(el);
}

showTimes();
setInterval(() => showTimes(), REFRESH_MS);
