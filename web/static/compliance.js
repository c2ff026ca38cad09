// Compliance console: find recordings, replay every party in sync on one timeline,
// verify integrity, export with chain of custody, place and release legal holds (one
// hold at a time, confirmed in a dialog that asks why).
// The bearer token stays in this page (fragment, then fetch headers); <video> elements
// play with a short-lived media ticket the server sets as an HttpOnly cookie scoped to
// the visit's media, so no ticket is ever in a URL (nor in any log of one).
"use strict";

const enc = encodeURIComponent;
const DRIFT_S = 0.25;  // followers further than this from the master are re-seeked

let current = null;  // details of the open recording
const player = { videos: [], offsets: [], master: 0, playing: false, dragging: false,
  duration: 0, renewTimer: null };


function clock(s) {
  if (!Number.isFinite(s)) return "0:00";
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

function when(unix) { return unix ? new Date(unix * 1000).toLocaleString() : "—"; }

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

// -- search ----------------------------------------------------------------------------

// Date inputs are local days; the server gets exact instants (to = next local midnight).
function dayStart(value, plusDays) {
  const d = new Date(`${value}T00:00:00`);
  d.setDate(d.getDate() + plusDays);
  return d.toISOString();
}

async function search(event) {
  event.preventDefault();
  alertUser("");
  const params = new URLSearchParams();
  for (const name of ["visit", "inmate", "visitor"]) {
    const value = $(`q-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  if ($("q-from").value) params.set("from", dayStart($("q-from").value, 0));
  if ($("q-to").value) params.set("to", dayStart($("q-to").value, 1));
  status("Searching…");
  try {
    const data = await api("GET", `/api/recordings?${params}`);
    renderResults(data.recordings);
    const n = data.recordings.length;
    status(`${n} recording${n === 1 ? "" : "s"} found.`);
  } catch (err) {
    status("");
    alertUser(`Search failed: ${err.message}`);
  }
}

function renderResults(rows) {
  const body = $("results");
  body.replaceChildren();
  $("results-table").hidden = rows.length === 0;
  $("no-results").hidden = rows.length > 0;
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.visit = r.visit;
    const inmate = r.inmate_name ? `${r.inmate_name} (${r.inmate})` : (r.inmate || "—");
    const visitors = (r.visitors || []).map((v) => v.name || v.sub).join(", ") || "—";
    const state = r.on_hold ? `${r.state}, on legal hold` : r.state;
    const actions = document.createElement("td");
    actions.append(button("Open", () => openRecording(r.visit), `Open recording of visit ${r.visit}`));
    tr.append(cell(r.visit), cell(inmate), cell(visitors), cell(when(r.starts_at)),
      cell(r.seconds ? clock(r.seconds) : "—"), cell(state), actions);
    body.append(tr);
  }
}

// -- one recording -----------------------------------------------------------------------

async function openRecording(visit) {
  alertUser("");
  status(`Opening visit ${visit} and checking its integrity…`);
  try {
    current = await api("GET", `/api/recordings/${enc(visit)}`);
  } catch (err) {
    status("");
    alertUser(`Could not open visit ${visit}: ${err.message}`);
    return;
  }
  renderFacts(current);
  renderIntegrity(current.integrity);
  renderHolds(current);
  buildPlayers(current);
  $("download").hidden = true;
  $("view").hidden = false;
  $("view-title").textContent = `Recording of visit ${current.visit}`;
  $("view-title").focus();
  status(`Visit ${current.visit} opened.`);
}

function renderFacts(r) {
  const facts = [
    ["State", r.on_hold ? `${r.state}, on legal hold` : r.state],
    ["Inmate", r.inmate_name ? `${r.inmate_name} (${r.inmate})` : (r.inmate || "—")],
    ["Visitors", (r.visitors || []).map((v) => `${v.name || v.sub} (${v.sub})`).join(", ") || "—"],
    ["Booked", `${when(r.starts_at)} to ${when(r.ends_at)}`],
    ["Length", r.seconds ? clock(r.seconds) : "—"],
    ["Sealed", when(r.sealed_at)],
    ["Seal", r.seal || "—"],
  ];
  if (r.deleted_at) facts.push(["Deleted", when(r.deleted_at)]);
  const dl = $("facts");
  dl.replaceChildren();
  for (const [term, value] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dl.append(dt, dd);
  }
}

function count(x) { return Array.isArray(x) ? x.length : x; }

function renderIntegrity(report) {
  const list = $("problems");
  list.replaceChildren();
  const p = $("integrity");
  if (!report || report.ok === null || report.ok === undefined) {
    p.textContent = `Integrity not checked: ${report && report.unavailable ? report.unavailable : "unknown"}.`;
    p.dataset.ok = "unknown";
  } else if (report.ok) {
    p.textContent = `Intact: ${count(report.segments)} segments in ${count(report.tracks)} tracks verify`
      + `${report.sealed ? ", and the seal matches" : ""}.`;
    p.dataset.ok = "true";
  } else {
    p.textContent = "NOT intact: this recording fails verification.";
    p.dataset.ok = "false";
  }
  for (const problem of (report && report.problems) || []) {
    const li = document.createElement("li");
    li.textContent = typeof problem === "string" ? problem : JSON.stringify(problem);
    list.append(li);
  }
  list.hidden = list.children.length === 0;
}

function holdText(h) {
  return `Placed ${when(h.placed_at)} by ${h.placed_by}: ${h.reason}`;
}

function renderHolds(r) {
  const active = (r.holds || []).filter((h) => !h.released_at);
  $("hold-state").textContent = active.length
    ? `On legal hold (${active.length}): retention will not delete this recording.`
    : "Not on hold.";
  $("hold").disabled = r.state === "deleted";
  const list = $("holds");
  list.replaceChildren();
  for (const h of r.holds || []) {
    const li = document.createElement("li");
    li.dataset.hold = h.id;
    const text = document.createElement("span");
    text.textContent = holdText(h) + (h.released_at
      ? `; released ${when(h.released_at)} by ${h.released_by}`
        + (h.release_reason ? `: ${h.release_reason}` : "")
      : "");
    li.append(text);
    if (!h.released_at) {
      li.append(" ", button("Release hold", () => askRelease(h),
        `Release hold placed by ${h.placed_by}: ${h.reason}`));
    }
    list.append(li);
  }
}

// -- synchronized replay -----------------------------------------------------------------
// One timeline: the first video is the master; the others follow it and are re-seeked
// when they drift more than DRIFT_S. offset_s (if the server gives one) is where a
// party's file starts on the visit's timeline; the console's timeline starts with the
// earliest file, and that file's video is the master (the first one when all start
// together), so no party's beginning is out of reach.

function stopPlayers() {
  clearTimeout(player.renewTimer);
  for (const v of player.videos) { v.pause(); v.removeAttribute("src"); v.load(); }
  player.videos = [];
  player.offsets = [];
  player.master = 0;
  player.playing = false;
  player.duration = 0;
}

function buildPlayers(r) {
  stopPlayers();
  const list = $("players");
  list.replaceChildren();
  // A file that failed its check against the seal is not played: say why instead.
  const refused = (r.finals || []).filter((f) => f.refused);
  const finals = (r.finals || []).filter((f) => !f.refused);
  $("no-media").hidden = finals.length + refused.length > 0;
  $("timeline").hidden = finals.length === 0;
  player.duration = r.seconds || 0;
  const starts = finals.map((f) => Number(f.offset_s) || 0);
  const origin = finals.length ? Math.min(...starts) : 0;
  player.master = Math.max(0, starts.indexOf(origin));
  finals.forEach((f, i) => {
    const li = document.createElement("li");
    li.className = "tile";
    const video = document.createElement("video");
    video.className = "video";
    video.preload = "auto";
    video.playsInline = true;
    video.setAttribute("aria-label", `Recording of ${f.name} (${f.role})`);
    const name = document.createElement("p");
    name.className = "name";
    name.textContent = `${f.name} `;
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = `(${f.role})`;
    name.append(role);
    li.append(video, name);
    list.append(li);
    player.videos.push(video);
    player.offsets.push(starts[i] - origin);
    video.addEventListener("loadedmetadata", updateDuration);
    if (i === player.master) {
      video.addEventListener("timeupdate", onMasterTime);
      video.addEventListener("ended", () => setPlaying(false));
    }
    video.src = f.url;
  });
  for (const f of refused) {
    const li = document.createElement("li");
    li.className = "tile refused";
    const why = document.createElement("p");
    why.textContent = f.refused;
    li.append(why);
    list.append(li);
  }
  if (refused.length) alertUser(refused.map((f) => f.refused).join(" "));
  setPlaying(false);
  showTime(0);
  scheduleRenewal(r.ticket_ttl_s);
}

function timeline() {
  const master = player.videos[player.master];
  return master ? master.currentTime + player.offsets[player.master] : 0;
}

function updateDuration() {
  let longest = 0;
  player.videos.forEach((v, i) => {
    if (Number.isFinite(v.duration)) longest = Math.max(longest, v.duration + player.offsets[i]);
  });
  if (longest > 0) player.duration = longest;
  $("seek").max = String(player.duration);
  showTime(timeline());
}

function showTime(t) {
  const seek = $("seek");
  if (!player.dragging) seek.value = String(t);
  const text = `${clock(t)} / ${clock(player.duration)}`;
  $("time").textContent = text;
  seek.setAttribute("aria-valuetext", `${clock(t)} of ${clock(player.duration)}`);
}

function follow(t) {
  player.videos.forEach((v, i) => {
    if (i === player.master) return;
    const local = t - player.offsets[i];
    const inRange = local >= 0 && !(Number.isFinite(v.duration) && local > v.duration);
    if (!inRange) {
      if (!v.paused) v.pause();
      return;
    }
    if (Math.abs(v.currentTime - local) > DRIFT_S) v.currentTime = local;
    if (player.playing && v.paused && !v.ended) v.play().catch(() => {});
  });
}

function onMasterTime() {
  const t = timeline();
  showTime(t);
  follow(t);
}

function seekAll(t) {
  player.videos.forEach((v, i) => {
    let local = Math.max(0, t - player.offsets[i]);
    if (Number.isFinite(v.duration)) local = Math.min(local, v.duration);
    v.currentTime = local;
  });
  showTime(t);
}

function setPlaying(playing) {
  player.playing = playing;
  const b = $("play");
  b.textContent = playing ? "Pause" : "Play";
  b.setAttribute("aria-label", playing ? "Pause all parties" : "Play all parties");
}

async function togglePlay() {
  if (!player.videos.length) return;
  if (player.playing) {
    player.videos.forEach((v) => v.pause());
    setPlaying(false);
    return;
  }
  const master = player.videos[player.master];
  if (master.ended) seekAll(0);
  setPlaying(true);
  follow(timeline());
  try {
    await master.play();
  } catch (err) {
    setPlaying(false);
    alertUser(`Cannot play: ${err.message}`);
  }
}

// The media ticket expires (10 minutes): fetch a fresh one a minute early. It replaces
// the cookie, so the players keep their src, position and play state.
function scheduleRenewal(ttl) {
  clearTimeout(player.renewTimer);
  if (!ttl || !player.videos.length) return;
  player.renewTimer = setTimeout(renewTickets, Math.max(30, ttl - 60) * 1000);
}

async function renewTickets() {
  if (!current) return;
  try {
    await api("POST", `/api/recordings/${enc(current.visit)}/tickets`);
  } catch (err) {
    alertUser(`Could not renew the replay links: ${err.message}`);
  }
  scheduleRenewal(current.ticket_ttl_s);
}

// -- verify, export, hold ----------------------------------------------------------------

async function verify() {
  if (!current) return;
  $("integrity").textContent = "Verifying…";
  try {
    renderIntegrity(await api("POST", `/api/recordings/${enc(current.visit)}/verify`));
    status(`Integrity of visit ${current.visit} checked.`);
  } catch (err) {
    $("integrity").textContent = `Could not verify: ${err.message}`;
  }
}

async function exportRecording() {
  if (!current) return;
  const visit = current.visit;
  const b = $("export");
  b.disabled = true;
  status(`Preparing the export of visit ${visit}…`);
  try {
    const res = await fetch(current.export_url, { headers: { Authorization: `Bearer ${token}` } });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      throw new Error(data.message || data.error || `HTTP ${res.status}`);
    }
    const blob = await res.blob();
    const disposition = res.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const name = match ? match[1] : `visit-${visit}.zip`;
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.textContent = `Download ${name}`;
    link.hidden = false;
    const digest = res.headers.get("X-Export-SHA256");
    status(`Export of visit ${visit} ready${digest ? ` (SHA-256 ${digest})` : ""}.`);
    link.focus();
  } catch (err) {
    status("");
    alertUser(`Export failed: ${err.message}`);
  } finally {
    b.disabled = false;
  }
}

async function placeHold(event) {
  event.preventDefault();
  if (!current) return;
  const reason = $("hold-reason").value.trim();
  if (!reason) {
    alertUser("Give a reason for the legal hold.");
    $("hold-reason").focus();
    return;
  }
  try {
    showHolds(await api("POST", `/api/recordings/${enc(current.visit)}/hold`, { reason }));
    $("hold-reason").value = "";
    alertUser("");
    status(`Visit ${current.visit} is on legal hold.`);
  } catch (err) { alertUser(`Could not place the hold: ${err.message}`); }
}

// Releasing asks first, in a dialog, for this one hold and for a reason (the audit log
// keeps it); nothing is sent until the officer confirms with a reason.
let releasing = null;  // the hold the dialog is about

function askRelease(hold) {
  releasing = hold;
  $("release-what").textContent = holdText(hold);
  $("release-reason").value = "";
  releaseError("");
  $("release-dialog").showModal();
  $("release-reason").focus();
}

function releaseError(text) { $("release-error").textContent = text; $("release-error").hidden = !text; }

async function confirmRelease(event) {
  event.preventDefault();
  if (!current || !releasing) return;
  const reason = $("release-reason").value.trim();
  if (!reason) {
    releaseError("Say why the hold is released: the reason is required.");
    $("release-reason").focus();
    return;
  }
  const path = `/api/recordings/${enc(current.visit)}/hold/${enc(releasing.id)}`;
  try {
    showHolds(await api("DELETE", path, { reason }));
  } catch (err) {
    releaseError(`Could not release the hold: ${err.message}`);
    return;
  }
  $("release-dialog").close();
  status(`Legal hold released on visit ${current.visit}${current.on_hold ? "; other holds remain" : ""}.`);
}

function showHolds(data) {
  current.holds = data.holds;
  current.on_hold = data.on_hold;
  renderHolds(current);
  renderFacts(current);
}

// -- wiring ------------------------------------------------------------------------------

$("search").addEventListener("submit", search);
$("play").addEventListener("click", togglePlay);
const seek = $("seek");
seek.addEventListener("pointerdown", () => { player.dragging = true; });
seek.addEventListener("pointerup", () => { player.dragging = false; });
seek.addEventListener("input", () => seekAll(Number(seek.value)));
seek.addEventListener("change", () => { player.dragging = false; seekAll(Number(seek.value)); });
$("verify").addEventListener("click", verify);
$("export").addEventListener("click", exportRecording);
$("hold-form").addEventListener("submit", placeHold);
$("release-form").addEventListener("submit", confirmRelease);
$("release-cancel").addEventListener("click", () => $("release-dialog").close());
$("release-dialog").addEventListener("close", () => { releasing = null; });

// Read-only hook for tests and diagnostics: where each party's video is on the timeline.
window.replayState = () => ({
  playing: player.playing,
  duration: player.duration,
  times: player.videos.map((v, i) => v.currentTime + player.offsets[i]),
  paused: player.videos.map((v) => v.paused),
});

if (!token) {
  alertUser("This page needs a compliance link with a token.");
  for (const el of document.querySelectorAll("button, input")) el.disabled = true;
}
