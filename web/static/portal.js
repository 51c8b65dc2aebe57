// The portal's "Test connection" button: without JavaScript it submits the camera form to
// /portal/probe (a full page); with it, the form's fields go to POST /api/v1/probe and the
// result appears under the form. Everything shown is set with textContent (never as HTML).

const PARAMETER_SETS = {
  "in-band": "in the stream",
  "out-of-band": "only in the session description",
  missing: "not found",
};

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function probeBody(form) {
  const data = new FormData(form);
  const body = { transport: data.get("transport") || "tcp" };
  for (const name of ["url", "username", "password", "camera"]) {
    const value = (data.get(name) || "").toString();
    if (name === "password" ? value !== "" : value.trim() !== "") {
      body[name] = name === "password" ? value : value.trim();
    }
  }
  return body;
}

function keyframeText(r) {
  if (r.keyframe_interval_s === null) return "unknown";
  let text = `${r.keyframe_interval_at_least ? "at least " : ""}${r.keyframe_interval_s} s`;
  if (r.gop_frames) text += ` (${r.gop_frames} frames)`;
  return text;
}

function renderReport(box, result) {
  box.replaceChildren();
  const card = el("div", { class: "card probe-card" });
  card.append(el("h2", {}, "Connection test"));
  if (!result.reachable) {
    const notice = el("div", { class: "notice notice-error", role: "alert" });
    notice.append(el("p", {}, result.error));
    card.append(notice);
    box.append(card);
    return;
  }
  const r = result.report;
  const rows = [
    ["Codec", r.profile ? `${r.codec_name}, ${r.profile} profile` : r.codec_name],
    ["Resolution", r.width ? `${r.width} × ${r.height}` : "unknown"],
    ["Frame rate", r.fps ? `${r.fps} fps` : "unknown"],
    ["Keyframe interval", keyframeText(r)],
    ["B-frames", r.b_frames ? "yes" : "no"],
    ["SPS/PPS", PARAMETER_SETS[r.parameter_sets] || r.parameter_sets],
  ];
  const list = el("dl", { class: "kv" });
  for (const [name, value] of rows) list.append(el("dt", {}, name), el("dd", {}, value));
  const advice = el("ul", { class: "advice" });
  for (const a of r.advice) advice.append(el("li", { class: `level-${a.level}` }, a.text));
  card.append(list, advice);
  box.append(card);
}

function errorText(body, status) {
  const error = body && body.error;
  if (!error) return `The test failed (HTTP ${status}).`;
  const fields = (error.fields || []).map((f) => `${f.field}: ${f.message}`);
  return [error.detail, ...fields].join(" · ");
}

async function runProbe(button) {
  const form = button.form;
  const box = form.querySelector("[data-probe-result]");
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Testing… (up to 15 s)";
  box.replaceChildren(el("p", { class: "muted" }, "Connecting to the camera…"));
  try {
    const response = await fetch("/api/v1/probe", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(probeBody(form)),
    });
    const body = await response.json().catch(() => null);
    if (response.ok) renderReport(box, body);
    else renderReport(box, { reachable: false, error: errorText(body, response.status) });
  } catch (err) {
    renderReport(box, { reachable: false, error: "The test could not be sent; check your connection." });
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

for (const button of document.querySelectorAll("[data-probe]")) {
  button.addEventListener("click", (event) => {
    event.preventDefault();
    runProbe(button);
  });
}
