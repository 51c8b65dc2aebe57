// Plays a camera over WHEP (draft-ietf-wish-whep) in a <video>: a plain ES module, no build step.
//
//   import { WhepPlayer, followVisibility } from "/static/player.js";
//   const player = new WhepPlayer(videoElement, "/whep/CAMERA_ID");
//   player.addEventListener("statechange", (e) => console.log(e.detail.state, e.detail.message));
//   followVisibility(player);  // stop while the tab is hidden, end the session on page hide
//   player.start();
//   player.stop();
//
// States: "idle", "connecting", "live" (pictures are arriving), "stalled" (connected, but no
// picture for STALL_MS: never shown as live), "retrying" (waiting to reconnect, with back-off
// and jitter), "stopped", "failed" (the server refused for good, e.g. 404).
// No ICE servers unless the page passes them ({ iceServers: [...] }): never a public STUN server.
// Standard APIs only (RTCPeerConnection, fetch, requestVideoFrameCallback with a fallback), for
// Chromium, Firefox and Safari; the <video> gets playsinline, muted and autoplay.

const GATHER_CAP_MS = 2000;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30000;
const MAX_RETRY_AFTER_MS = 300000;
const JITTER = 0.3; // each wait is the back-off times 1 ± 0.3 at random
const STALL_MS = 3000; // connected but no new picture for this long: "stalled"
const CONNECT_TIMEOUT_MS = 20000; // no picture this long after an answer: reconnect
const WATCH_MS = 500;
const HANGUP_CAP_MS = 2000; // longest wait for the session's DELETE before closing anyway

class RetryLater extends Error {
  constructor(message, delayMs) {
    super(message);
    this.delayMs = delayMs;
  }
}

// Resolves once ICE gathering is complete, or after capMs, whichever comes first.
function iceGathered(pc, capMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, capMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// Retry-After in milliseconds (delay-seconds or an HTTP date), or null when absent or invalid.
function retryAfterMs(response) {
  const value = response.headers.get("Retry-After");
  if (value === null) return null;
  const ms = /^\d+$/.test(value.trim()) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS) : null;
}

// The wait before attempt number `failures` (0-based): exponential, capped, jittered.
export function backOffMs(failures, random = Math.random) {
  const base = Math.min(FIRST_RETRY_MS * 2 ** failures, MAX_RETRY_MS);
  return Math.round(base * (1 + JITTER * (2 * random() - 1)));
}

// Counts pictures the <video> has presented: requestVideoFrameCallback where the browser has
// it, else the playback-quality frame counter, else the clock of a playing element.
class FrameCounter {
  constructor(video) {
    this.video = video;
    this.frames = 0;
    this._handle = null;
    this._lastTime = -1;
  }

  start() {
    if (typeof this.video.requestVideoFrameCallback === "function" && this._handle === null) {
      const tick = () => {
        this.frames += 1;
        this._handle = this.video.requestVideoFrameCallback(tick);
      };
      this._handle = this.video.requestVideoFrameCallback(tick);
    }
  }

  stop() {
    if (this._handle !== null && typeof this.video.cancelVideoFrameCallback === "function") {
      this.video.cancelVideoFrameCallback(this._handle);
    }
    this._handle = null;
  }

  // The number of pictures so far (call regularly when requestVideoFrameCallback is missing).
  count() {
    if (this._handle !== null) return this.frames;
    const quality = this.video.getVideoPlaybackQuality?.();
    if (quality && quality.totalVideoFrames > 0) return quality.totalVideoFrames;
    const t = this.video.currentTime;
    if (!this.video.paused && this.video.videoWidth > 0 && t !== this._lastTime) {
      this._lastTime = t;
      this.frames += 1;
    }
    return this.frames;
  }
}

export class WhepPlayer extends EventTarget {
  constructor(video, whepUrl, { iceServers = [] } = {}) {
    super();
    this.video = video;
    this.whepUrl = whepUrl;
    this.iceServers = iceServers;
    this.state = "idle";
    this.message = "";
    video.muted = true;
    video.playsInline = true;
    video.autoplay = true;
    video.setAttribute("playsinline", "");
    video.setAttribute("muted", "");
    this._pc = null; // the current peer connection
    this._session = null; // its WHEP session URL, to DELETE
    this._failures = 0; // consecutive failed attempts, for the back-off
    this._timer = null; // the pending reconnect
    this._watch = null; // the picture watchdog
    this._running = false;
    this._frames = new FrameCounter(video);
  }

  // Connect (again); does nothing while already running.
  start() {
    if (this._running) return;
    this._running = true;
    this._failures = 0;
    this._connect();
  }

  // Close the connection and end the WHEP session; keepalive lets the DELETE outlive the page.
  stop({ keepalive = false } = {}) {
    this._running = false;
    clearTimeout(this._timer);
    this._timer = null;
    this._hangUp(keepalive);
    this._set("stopped", "Stopped");
  }

  // Reconnect at once if waiting to retry (the page learned the camera is back).
  retryNow() {
    if (!this._running || this.state !== "retrying") return;
    clearTimeout(this._timer);
    this._timer = null;
    this._connect();
  }

  get running() {
    return this._running;
  }

  _set(state, message, extra = {}) {
    const changed = state !== this.state || message !== this.message;
    this.state = state;
    this.message = message;
    if (changed) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { state, message, ...extra } }));
    }
  }

  _hangUp(keepalive) {
    clearInterval(this._watch);
    this._watch = null;
    this._frames.stop();
    const pc = this._pc;
    this._pc = null;
    if (pc !== null) {
      pc.onconnectionstatechange = null;
      pc.ontrack = null;
    }
    this.video.srcObject = null;
    if (this._session === null) {
      pc?.close();
      return;
    }
    // End the WHEP session first, then close the connection: a closed connection ends the
    // session on the server by itself, and the DELETE would then find nothing (404). A 404
    // (already ended) is fine; either way the connection closes within HANGUP_CAP_MS.
    const ended = fetch(this._session, { method: "DELETE", keepalive }).catch(() => {});
    this._session = null;
    if (pc !== null) {
      const cap = new Promise((resolve) => setTimeout(resolve, HANGUP_CAP_MS));
      Promise.race([ended, cap]).then(() => pc.close());
    }
  }

  _retry(reason, delayMs = null) {
    this._hangUp(false);
    if (!this._running) return;
    // Never sooner than the server's Retry-After, nor than the back-off.
    const wait = Math.max(delayMs ?? 0, backOffMs(this._failures));
    this._failures += 1;
    this._set("retrying", `${reason}; retrying in ${Math.ceil(wait / 1000)} s`, { retryInMs: wait });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), wait);
  }

  // Watches that pictures keep coming: "live" only while they do.
  _watchPictures(conn) {
    const answered = Date.now();
    let seen = this._frames.count();
    let lastNew = null;
    this._frames.start();
    this._watch = setInterval(() => {
      if (conn !== this._pc) return;
      const now = Date.now();
      const count = this._frames.count();
      if (count !== seen) {
        seen = count;
        lastNew = now;
        this._failures = 0;
        this._set("live", "Live");
      } else if (lastNew === null) {
        if (now - answered > CONNECT_TIMEOUT_MS) this._retry("No picture");
      } else if (now - lastNew > STALL_MS) {
        this._set("stalled", "Waiting for the picture…");
      }
    }, WATCH_MS);
  }

  async _connect() {
    if (!this._running) return;
    this._set("connecting", "Connecting…");
    const conn = new RTCPeerConnection({ iceServers: this.iceServers });
    this._pc = conn;
    conn.addTransceiver("video", { direction: "recvonly" });
    conn.ontrack = (event) => {
      this.video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
      this.video.play().catch(() => {});
    };
    conn.onconnectionstatechange = () => {
      if (conn !== this._pc) return;
      if (conn.connectionState === "failed" || conn.connectionState === "closed") {
        this._retry("Connection lost");
      }
    };
    try {
      await conn.setLocalDescription(await conn.createOffer());
      await iceGathered(conn, GATHER_CAP_MS);
      if (conn !== this._pc) return;
      const response = await fetch(this.whepUrl, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: conn.localDescription.sdp,
      });
      const location = response.headers.get("Location");
      const sessionUrl =
        response.status === 201 && location ? new URL(location, response.url).href : null;
      if (conn !== this._pc) {
        // Stopped or replaced while the offer was on its way: end the new session at once.
        if (sessionUrl) fetch(sessionUrl, { method: "DELETE" }).catch(() => {});
        return;
      }
      if (response.status === 503 || response.status === 429) {
        throw new RetryLater("The camera is not available", retryAfterMs(response));
      }
      if (response.status === 409) throw new RetryLater("The camera is switched off", null);
      if (response.status >= 500) {
        throw new RetryLater(`The server answered ${response.status}`, null);
      }
      if (response.status !== 201) {
        throw new Error(`Cannot play: the server answered ${response.status}`);
      }
      this._session = sessionUrl;
      await conn.setRemoteDescription({ type: "answer", sdp: await response.text() });
      this._watchPictures(conn);
    } catch (err) {
      if (conn !== this._pc) return;
      if (err instanceof RetryLater) this._retry(err.message, err.delayMs);
      else if (err instanceof TypeError) this._retry("Cannot reach the server"); // network error
      else {
        this._hangUp(false);
        this._running = false;
        this._set("failed", String(err.message ?? err));
      }
    }
  }
}

// Stops `player` while the page is hidden and resumes it when visible again; ends its session
// when the page goes away (keepalive DELETE). Returns a function that undoes this.
export function followVisibility(player) {
  let wanted = true; // whether the page wants it playing (stop() by the page clears this)
  const onVisibility = () => {
    if (document.hidden) {
      if (player.running) player.stop();
    } else if (wanted && !player.running) {
      player.start();
    }
  };
  const onHide = () => {
    if (player.running) player.stop({ keepalive: true });
  };
  const onShow = (event) => {
    // Back from the back/forward cache: start again.
    if (event.persisted && wanted && !document.hidden) player.start();
  };
  document.addEventListener("visibilitychange", onVisibility);
  window.addEventListener("pagehide", onHide);
  window.addEventListener("beforeunload", onHide);
  window.addEventListener("pageshow", onShow);
  return () => {
    wanted = false;
    document.removeEventListener("visibilitychange", onVisibility);
    window.removeEventListener("pagehide", onHide);
    window.removeEventListener("beforeunload", onHide);
    window.removeEventListener("pageshow", onShow);
  };
}

// The simple form for one video (the /play page): plays, follows visibility, reports status;
// resolves to { player, stop }.
export async function play(video, whepUrl, { iceServers = [], onStatus = () => {} } = {}) {
  const player = new WhepPlayer(video, whepUrl, { iceServers });
  player.addEventListener("statechange", (event) => onStatus(event.detail.message, event.detail));
  const unfollow = followVisibility(player);
  if (!document.hidden) player.start();
  return {
    player,
    stop() {
      unfollow();
      player.stop();
    },
  };
}
