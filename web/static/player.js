// Plays a camera over WHEP (draft-ietf-wish-whep) in a <video>: plain ES module, no build step.
//
//   import { play } from "/static/player.js";
//   const player = await play(videoElement, "/whep/CAMERA_ID");
//   player.stop();  // optional; leaving the page ends the session too
//
// No ICE servers unless the page passes them ({ iceServers: [...] }): never a public STUN server.

const GATHER_CAP_MS = 2000;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30000;
const MAX_RETRY_AFTER_MS = 300000;

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

export async function play(video, whepUrl, { iceServers = [], onStatus = () => {} } = {}) {
  video.muted = true;
  video.playsInline = true;
  video.autoplay = true;

  let pc = null; // the current peer connection
  let session = null; // its WHEP session URL, to DELETE
  let failures = 0; // consecutive failed attempts, for the back-off
  let timer = null;
  let stopped = false;

  function hangUp(keepalive) {
    if (session !== null) {
      fetch(session, { method: "DELETE", keepalive }).catch(() => {});
      session = null;
    }
    if (pc !== null) {
      pc.onconnectionstatechange = null;
      pc.close();
      pc = null;
    }
  }

  function retry(reason, delayMs = null) {
    hangUp(false);
    if (stopped) return;
    const backOff = Math.min(FIRST_RETRY_MS * 2 ** failures, MAX_RETRY_MS);
    failures += 1;
    // Never sooner than the server's Retry-After, nor than the back-off.
    const wait = Math.max(delayMs ?? 0, backOff);
    onStatus(`${reason}; retrying in ${Math.ceil(wait / 1000)} s`);
    clearTimeout(timer);
    timer = setTimeout(connect, wait);
  }

  async function connect() {
    if (stopped) return;
    const conn = new RTCPeerConnection({ iceServers });
    pc = conn;
    conn.addTransceiver("video", { direction: "recvonly" });
    conn.ontrack = (event) => {
      video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
      video.play().catch(() => {});
    };
    conn.onconnectionstatechange = () => {
      if (conn.connectionState === "connected") {
        failures = 0;
        onStatus("Live");
      } else if (conn.connectionState === "failed") {
        retry("Connection lost");
      }
    };
    try {
      await conn.setLocalDescription(await conn.createOffer());
      await iceGathered(conn, GATHER_CAP_MS);
      const response = await fetch(whepUrl, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: conn.localDescription.sdp,
      });
      if (response.status === 503) {
        throw new RetryLater("The camera is not available", retryAfterMs(response));
      }
      if (response.status >= 500) {
        throw new RetryLater(`The server answered ${response.status}`, null);
      }
      if (response.status !== 201) {
        throw new Error(`Cannot play: the server answered ${response.status}`);
      }
      const location = response.headers.get("Location");
      const sessionUrl = location ? new URL(location, response.url).href : null;
      if (conn !== pc) {
        // Stopped or replaced while the offer was on its way: end the new session at once.
        if (sessionUrl) fetch(sessionUrl, { method: "DELETE" }).catch(() => {});
        return;
      }
      session = sessionUrl;
      await conn.setRemoteDescription({ type: "answer", sdp: await response.text() });
      onStatus("Connecting…");
    } catch (err) {
      if (conn !== pc) return;
      if (err instanceof RetryLater) retry(err.message, err.delayMs);
      else if (err instanceof TypeError) retry("Cannot reach the server"); // network error
      else {
        hangUp(false);
        onStatus(String(err.message ?? err));
      }
    }
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    hangUp(true);
  }

  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", (event) => {
    // Back from the back/forward cache: start again.
    if (event.persisted && stopped) {
      stopped = false;
      failures = 0;
      connect();
    }
  });

  await connect();
  return { stop };
}
