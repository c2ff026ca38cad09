// Join page: one visit, from a family member's browser or the facility kiosk.
// The token (token.js, from the URL fragment) is sent to the server only over /ws.
"use strict";

// Errors after which the page must not reconnect on its own.
const FATAL = new Set(["expired", "not_yet_valid", "bad_signature", "unknown_key",
  "wrong_audience", "wrong_issuer", "unsupported_algorithm", "malformed", "missing_claim",
  "wrong_role", "wrong_visit", "issued_in_future", "lifetime_too_long", "bad_id", "token_reused",
  "visit_full", "visit_mismatch", "connected_elsewhere",
  "revoked", "visit_ended", "too_early", "cancelled", "recording_unavailable", "server_full"]);

const $ = (id) => document.getElementById(id);
let local = null;          // MediaStream from the camera and microphone
let ws = null;
let pc = null;
let clockOffset = 0;      // server time - local time, seconds
let ended = false;
let you = null;
const recordingOn = new Set();  // kinds of our media the recorder confirmed
let people = new Map();    // participant id -> description
let visit = null;
let stopped = false;       // refused, replaced, ended or left: do not reconnect
// Capped low: after its node dies a visit can move only once its lease lapses, and the
// page's next try after that decides when the family is back.
const MAX_RETRY_MS = 2000;
let retryDelay = 500;
let clockTimer = null;
let iceTimer = null;       // pending rejoin while ICE is disconnected
// ICE "disconnected" this long means the path is gone (a network switch): rejoin on a
// new peer connection rather than wait for ICE to fail (about 10 s more).
const ICE_GRACE_MS = 2000;
// Chromium calls ICE "disconnected" only about 6 s after the last packet. Sooner: while
// someone else is in a live visit, media or the server's reports arrive at least every
// second (a camera turned off still sends), so this long with nothing received is a
// dead path.
const SILENCE_MS = 2500;
let inbound = { bytes: -1, since: 0 };
let claims = null;         // the token's booking claims (lobby.js), unverified
let warned = false;        // a time-left warning arrived: the notice follows the clock
let opensAt = null;        // too early: when the waiting room opens (server time)
let stopMeter = () => {};
const kiosk = new URLSearchParams(location.search).has("kiosk");
// A kiosk goes back to its ready screen this long after a visit (?kiosk&reset=SECONDS).
const KIOSK_RESET_S = Number(new URLSearchParams(location.search).get("reset")) || 30;

function status(key, params) { say($("status"), key, params); }

// A refusal or notice by its code; a code this page does not know shows the server's
// words (in English), else the generic connection problem.
function alertUser(code, fallback) {
  const box = $("alert");
  const key = `refusal.${code}`;
  if (hasText(key)) say(box, key);
  else if (fallback) sayRaw(box, fallback);
  else say(box, "refusal.bad_message");
  box.hidden = false;
}

function clearAlert() { $("alert").hidden = true; sayRaw($("alert"), ""); }

function tileFor(slot) {
  return document.querySelector(`li[data-slot="${slot}"]`) || makeTile($("tiles"), slot, false);
}

function renderPerson(p) {
  people.set(p.id, p);
  expectPerson(p.slot, p.name);
  const tile = tileFor(p.slot);
  tile.dataset.participant = p.id;
  tile.classList.toggle("reconnecting", !!p.reconnecting);
  const label = personLabel(p);
  say(tile.querySelector(".name"), label.key, label.params);
  say(tile.querySelector("video"), "person.video", { person: label }, "aria-label");
  say(tile.querySelector(".state"), "note.list", { notes: personNotes(p) });
  showQuality(tile, p.quality);
  layoutTiles(people);
}

// The tile stays as a "Waiting for …" placeholder unless the person may not come back.
function removePerson(id, gone = false) {
  const p = people.get(id);
  people.delete(id);
  if (!p) return;
  if (gone) expected.delete(p.slot);
  tileFor(p.slot);
  layoutTiles(people);
}

function updateClock() {
  if (!visit) return;
  const now = Date.now() / 1000 + clockOffset;
  const el = $("clock");
  if (ended) {
    say(el, "clock.ended");
  } else if (opensAt !== null) {
    say(el, "clock.opens_in", { duration: formatSeconds(opensAt - now) });
    if (now >= opensAt) { opensAt = null; connect(); }
  } else if (now < visit.starts_at) {
    say(el, "clock.starts_in", { duration: formatSeconds(visit.starts_at - now) });
  } else {
    const left = Math.max(0, visit.ends_at - now);
    say(el, "clock.left", { duration: formatSeconds(left) });
    el.classList.toggle("warn", left <= 300);
    if (warned) sayTimeLeft($("notice"), left);
  }
}

function waitingStatus() {
  status("status.waiting_room", { time: { time: visit.starts_at } });
}

function publishedKinds() {
  return local ? local.getTracks().length : 0;
}

function showRecording(key) {
  const el = $("recording");
  say(el, key);
  el.hidden = false;
}

function showWarning(remaining) {
  warned = true;
  const box = $("notice");
  sayTimeLeft(box, remaining);
  box.hidden = false;
  announceWarning(remaining);
}

async function startCamera() {
  try {
    local = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
    });
    $("preview").srcObject = local;
    stopMeter = startLevelMeter(local, $("mic-level"));
    status("status.camera_ready");
  } catch (err) {
    local = null;
    alertUser("camera");
    status("status.camera_unavailable");
  }
}

// Stop every camera and microphone track: the camera light goes off when the person
// leaves, is replaced by another device, or the visit ends.
function releaseCamera() {
  stopMeter();
  if (local) for (const track of local.getTracks()) track.stop();
  local = null;
  $("preview").srcObject = null;
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function connect() {
  clearAlert();
  status("status.connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  const socket = ws;
  socket.onopen = () => socket.send(JSON.stringify({ type: "join", token }));
  socket.onmessage = (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    handle(msg).catch((err) => console.error(err));
  };
  socket.onclose = () => {
    if (socket === ws) reconnect("connection_lost");
  };
}

// Rejoin the same seat on a new WebSocket and peer connection, without a reload. The
// old socket is dropped at once: on a dead network its close event comes only after a
// minute, and the server keeps the seat meanwhile.
function reconnect(code) {
  const old = ws;
  ws = null;
  if (old) { old.onclose = null; old.onmessage = null; old.close(); }
  closePeer();
  clearPeople();
  if (stopped) return;
  alertUser(code);
  status("status.reconnecting");
  setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS);
}

function closePeer() {
  clearTimeout(iceTimer);
  iceTimer = null;
  if (pc) { pc.onconnectionstatechange = null; pc.close(); pc = null; }
}

function onPeerState(state) {
  if (state === "connected") {
    clearTimeout(iceTimer);
    iceTimer = null;
    if (visit && visit.state === "waiting") waitingStatus();
    else status("status.connected");
  } else if (state === "failed") {
    reconnect("connection_lost");
  } else if (state === "disconnected" && !iceTimer) {
    iceTimer = setTimeout(() => { iceTimer = null; reconnect("connection_lost"); }, ICE_GRACE_MS);
  }
}

async function checkInbound() {
  const current = pc;
  const othersHere = [...people.values()].some((p) => !p.reconnecting);
  if (!current || current.connectionState !== "connected" || !visit || visit.state !== "live" || !othersHere) {
    inbound.bytes = -1;
    return;
  }
  let bytes = 0;
  for (const s of (await current.getStats()).values()) {
    if (s.type === "transport") bytes += s.bytesReceived || 0;
  }
  if (current !== pc) return;
  const now = Date.now();
  if (bytes !== inbound.bytes) {
    inbound = { bytes, since: now };
  } else if (now - inbound.since >= SILENCE_MS) {
    inbound.bytes = -1;
    reconnect("connection_lost");
  }
}

// The device changed networks (Wi-Fi to mobile data): the old path is gone, rejoin now.
function onNetworkChange() {
  if (ws && !stopped) reconnect("connection_lost");
}

function clearPeople() {
  for (const id of [...people.keys()]) removePerson(id);
}

async function handle(msg) {
  switch (msg.type) {
    case "joined":
      retryDelay = 500;
      stopMeter();
      document.body.dataset.phase = "call";
      visit = msg.visit;
      clockOffset = msg.visit.server_time - Date.now() / 1000;
      sayRaw($("self-name"), msg.you.name);
      you = msg.you.id;
      recordingOn.clear();
      if (visit.recorded) showRecording("recording.starting");
      $("lobby").hidden = true;
      $("controls").hidden = false;
      if (visit.state === "waiting") waitingStatus();
      else status("status.connected_waiting_video");
      expectBooked(msg.you);
      for (const p of msg.participants) renderPerson(p);
      layoutTiles(people);
      showOfficerMute(!!msg.you.muted_by_officer);
      showLocalQuality(msg.you.quality);
      startQualityReports(msg.stats_interval_s, () => pc, send);
      if (!clockTimer) clockTimer = setInterval(updateClock, 1000);
      updateClock();
      break;
    case "offer":
      await answer(msg);
      break;
    case "participant_joined":
    case "participant_updated":
      renderPerson(msg.participant);
      if (msg.type === "participant_joined") status("status.joined", { name: msg.participant.name });
      break;
    case "participant_left": {
      const p = people.get(msg.id);
      removePerson(msg.id, msg.cause === "revoked");
      if (p) status("status.left", { name: p.name });
      break;
    }
    case "recording":
      if (msg.participant === you) {
        recordingOn.add(msg.kind);
        if (recordingOn.size >= publishedKinds()) showRecording("recording.on");
      }
      break;
    case "quality":
      if (msg.participant === you) showLocalQuality(msg.level);
      else if (people.has(msg.participant)) renderPerson({ ...people.get(msg.participant), quality: msg.level });
      break;
    case "visit_started":
      visit.state = "live";
      status("status.started");
      break;
    case "warning":
      showWarning(msg.remaining_s);
      break;
    case "muted":
      showOfficerMute(msg.muted);
      say($("self-state"), msg.muted ? "status.self_muted" : "status.officer_unmuted");
      status(msg.muted ? "status.officer_muted" : "status.officer_unmuted");
      break;
    case "ended":
      ended = true;
      stopped = true;
      sayEnd($("ended"), msg.cause, msg.reason);
      $("ended").hidden = false;
      $("ended").dataset.cause = msg.cause;
      $("notice").hidden = true;
      warned = false;
      status("status.ended");
      showEnded();
      updateClock();
      resetKioskLater();
      break;
    case "error":
      if (msg.code === "bad_message") { console.warn(msg.message); break; }
      if (msg.code === "too_early" && typeof msg.opens_at === "number") { waitForOpening(msg); break; }
      alertUser(msg.code, msg.message);
      if (FATAL.has(msg.code)) {
        stopped = true;
        status("status.not_connected");
        showEnded();
        resetKioskLater();
      }
      break;
    default:
      break;
  }
}

function showEnded() {
  document.body.dataset.phase = "over";
  $("controls").hidden = true;
  $("lobby").hidden = true;
  closePeer();
  forgetExpected();
  clearPeople();
  releaseCamera();
}

// Too early: count down to the opening of the waiting room and enter by itself then.
function waitForOpening(msg) {
  const socket = ws;
  ws = null;
  if (socket) { socket.onclose = null; socket.onmessage = null; socket.close(); }
  if (typeof msg.server_time === "number") clockOffset = msg.server_time - Date.now() / 1000;
  opensAt = msg.opens_at;
  status("status.too_early", { time: { time: opensAt } });
  if (!clockTimer) clockTimer = setInterval(updateClock, 1000);
  updateClock();
}

// An officer's mute, on the muted person's own button: they cannot unmute themselves.
function showOfficerMute(muted) {
  const button = $("mic");
  button.disabled = muted;
  button.classList.toggle("officer-muted", muted);
  const track = local && local.getAudioTracks()[0];
  const off = muted || (track && !track.enabled);
  button.setAttribute("aria-pressed", String(!!off));
  say(button, muted ? "controls.muted_by_officer" : (off ? "controls.unmute" : "controls.mute"));
}

// A kiosk serves one visit after another: back to its ready screen (a fresh page,
// without the token, the camera or anything of this visit) a while after the end.
function resetKioskLater() {
  if (!kiosk) return;
  setTimeout(() => location.replace(location.pathname + location.search), KIOSK_RESET_S * 1000);
}

async function answer(offer) {
  closePeer();
  pc = await acceptOffer(offer, {
    local,
    send,
    onTrack: (slot, track) => {
      const el = tileFor(slot).querySelector(track.kind === "video" ? "video" : "audio");
      el.srcObject = new MediaStream([track]);
    },
    onState: onPeerState,
  });
  sendMediaState();
}

function sendMediaState() {
  const a = local && local.getAudioTracks()[0];
  const v = local && local.getVideoTracks()[0];
  send({ type: "media_state", audio: !!(a && a.enabled), video: !!(v && v.enabled) });
}

function toggle(kind, button, onText, offText) {
  const track = local && local.getTracks().find((t) => t.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  button.setAttribute("aria-pressed", String(!track.enabled));
  say(button, track.enabled ? onText : offText);
  say($("self-state"), "note.list", { notes: [
    local.getAudioTracks().some((t) => !t.enabled) ? { key: "note.mic_muted" } : null,
    local.getVideoTracks().some((t) => !t.enabled) ? { key: "note.camera_off" } : null,
  ].filter(Boolean) });
  sendMediaState();
}

function leave() {
  stopped = true;
  send({ type: "leave" });
  if (ws) ws.close();
  showEnded();
  document.body.dataset.phase = "left";
  const now = Date.now() / 1000 + clockOffset;
  const canRejoin = !!visit && now < visit.ends_at;
  $("left").hidden = false;
  $("rejoin").hidden = !canRejoin;
  if (canRejoin) say($("left-text"), "left.rejoin_until", { time: { time: visit.ends_at } });
  else say($("left-text"), "end.slot_ended");
  status("status.you_left");
  if (canRejoin) $("rejoin").focus();
  resetKioskLater();
}

async function rejoin() {
  $("left").hidden = true;
  stopped = false;
  document.body.dataset.phase = "lobby";
  await startCamera();
  connect();
}

async function main() {
  await languageReady;
  document.body.dataset.phase = "lobby";
  if (kiosk) document.body.classList.add("kiosk");
  if (!token) {
    document.body.dataset.phase = "ready";
    $("lobby").hidden = true;
    if (kiosk) {
      say($("ended"), "kiosk.ready");
      $("ended").hidden = false;
      status("status.kiosk_waiting");
    } else {
      alertUser("no_token");
      status("status.no_link");
    }
    return;
  }
  claims = bookingClaims(token);
  clockOffset = await serverClockOffset();
  const over = linkOver(claims, Date.now() / 1000 + clockOffset);
  if (over) {  // said before the camera is asked for
    document.body.dataset.phase = "over";
    alertUser(over);
    $("lobby").hidden = true;
    status("status.not_connected");
    resetKioskLater();
    return;
  }
  if (claims) {
    showBooking(claims);
    $("lobby-recorded").hidden = !!claims.visit.privileged;
    visit = { starts_at: claims.visit.starts_at, ends_at: claims.visit.ends_at, state: "booked" };
    clockTimer = setInterval(updateClock, 1000);
    updateClock();
  }
  await startCamera();
  $("mic").addEventListener("click", (e) => toggle("audio", e.currentTarget, "controls.mute", "controls.unmute"));
  $("cam").addEventListener("click", (e) => toggle("video", e.currentTarget, "controls.camera_off", "controls.camera_on"));
  $("leave").addEventListener("click", () => {
    $("confirm-leave").returnValue = "";  // Escape keeps the last value
    $("confirm-leave").showModal();
  });
  $("confirm-leave").addEventListener("close", (e) => {
    if (e.currentTarget.returnValue === "leave") leave();
  });
  $("rejoin").addEventListener("click", () => { rejoin().catch((err) => console.error(err)); });
  const join = $("join");
  join.disabled = false;
  join.addEventListener("click", () => { join.disabled = true; connect(); });
  window.addEventListener("online", onNetworkChange);
  setInterval(() => { checkInbound().catch(() => {}); }, 500);
  if (navigator.connection) navigator.connection.addEventListener("change", onNetworkChange);
  if (document.body.classList.contains("kiosk")) connect();  // kiosks have no keyboard
  else join.focus();
}

// Read-only hook for monitoring tools and tests: the connection's statistics.
window.visitStats = async () => (pc ? [...(await pc.getStats()).values()] : []);

main();
