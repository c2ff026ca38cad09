// Join page: one visit, from a family member's browser or the facility kiosk.
// The token (token.js, from the URL fragment) is sent to the server only over /ws.
"use strict";

const MESSAGES = {
  no_token: "This page needs your visit link. Please open the link from your booking confirmation.",
  expired: "This visit link has expired. The booked time is over or the link is old. Please check your booking confirmation.",
  not_yet_valid: "This visit link cannot be used yet. Please come back closer to the start of your visit.",
  bad_signature: "This visit link is not valid. Please use the exact link from your booking confirmation, or contact the facility.",
  unknown_key: "This visit link is not valid. Please use the exact link from your booking confirmation, or contact the facility.",
  wrong_audience: "This visit link is for a different visiting service. Please contact the facility.",
  wrong_issuer: "This visit link was not issued by this facility. Please contact the facility.",
  unsupported_algorithm: "This visit link is not valid. Please use the exact link from your booking confirmation, or contact the facility.",
  malformed: "This visit link is damaged. Please copy the whole link from your booking confirmation and try again.",
  missing_claim: "This visit link is incomplete. Please contact the facility for a new link.",
  wrong_role: "This link cannot be used to join a visit.",
  wrong_visit: "This link belongs to a different visit.",
  issued_in_future: "This visit link is not valid yet because of a clock problem. Please check that this device shows the right time, or contact the facility.",
  lifetime_too_long: "This visit link is not valid. Please contact the facility for a new link.",
  bad_id: "This visit link is not valid. Please contact the facility for a new link.",
  token_reused: "This visit link is not valid. Please contact the facility for a new link.",
  visit_full: "This visit already has the most people allowed. Please contact the facility.",
  visit_mismatch: "The booking for this visit has changed. Please use the newest link from the facility.",
  connected_elsewhere: "You opened this visit on another device or browser tab. The visit continues there.",
  bad_message: "Something went wrong with the connection. Please open your visit link again.",
  server_shutdown: "The visit server is restarting. Reconnecting…",
  camera: "We could not use your camera or microphone. You can still see and hear the visit. To be seen and heard, allow camera and microphone access, then open your visit link again.",
  connection_lost: "The connection was lost. Reconnecting…",
  media_lost: "Your connection was interrupted. Reconnecting…",
  revoked: "Your access to this visit was withdrawn by the facility.",
  visit_ended: "This visit has ended.",
  too_early: "The waiting room for this visit is not open yet. Please come back closer to the start time.",
  cancelled: "The facility cancelled this visit.",
  server_full: "The visit service is at capacity right now. Please try again in a few minutes, or contact the facility.",
  recording_unavailable: "The visit cannot start because the recording system is not available. This is not your fault. Please contact the facility.",
};
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

function status(text) { $("status").textContent = text; }

function alertUser(code, fallback) {
  const box = $("alert");
  box.textContent = MESSAGES[code] || fallback || MESSAGES.bad_message;
  box.hidden = false;
}

function clearAlert() { $("alert").hidden = true; $("alert").textContent = ""; }

function tileFor(slot) {
  return document.querySelector(`li[data-slot="${slot}"]`) || makeTile($("tiles"), slot, false);
}

function renderPerson(p) {
  people.set(p.id, p);
  expectPerson(p.slot, p.name);
  const tile = tileFor(p.slot);
  tile.dataset.participant = p.id;
  tile.classList.toggle("reconnecting", !!p.reconnecting);
  const label = describePerson(p);
  tile.querySelector(".name").textContent = label;
  tile.querySelector("video").setAttribute("aria-label", `Video of ${label}`);
  tile.querySelector(".state").textContent = personNotes(p);
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
    el.textContent = "Visit ended";
  } else if (opensAt !== null) {
    el.textContent = `Waiting room opens in ${formatSeconds(opensAt - now)}`;
    if (now >= opensAt) { opensAt = null; connect(); }
  } else if (now < visit.starts_at) {
    el.textContent = `Visit starts in ${formatSeconds(visit.starts_at - now)}`;
  } else {
    const left = Math.max(0, visit.ends_at - now);
    el.textContent = `Time left: ${formatSeconds(left)}`;
    el.classList.toggle("warn", left <= 300);
    if (warned) $("notice").textContent = timeLeftText(left);
  }
}

function waitingText() {
  const at = new Date(visit.starts_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `You are in the waiting room. The visit starts at ${at}.`;
}

function publishedKinds() {
  return local ? local.getTracks().length : 0;
}

function showRecording(text) {
  const el = $("recording");
  el.textContent = text;
  el.hidden = false;
}

function showWarning(remaining) {
  warned = true;
  const box = $("notice");
  box.textContent = timeLeftText(remaining);
  box.hidden = false;
  announceWarning(box.textContent);
}

async function startCamera() {
  try {
    local = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
    });
    $("preview").srcObject = local;
    stopMeter = startLevelMeter(local, $("mic-level"));
    status("Your camera is ready.");
  } catch (err) {
    local = null;
    alertUser("camera");
    status("Camera and microphone are not available.");
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
  status("Connecting to the visit…");
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
  status("Reconnecting…");
  setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 4000);
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
    status(visit && visit.state === "waiting" ? waitingText() : "Connected to the visit.");
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
      $("self-name").textContent = msg.you.name;
      you = msg.you.id;
      recordingOn.clear();
      if (visit.recorded) showRecording("This visit is recorded. Starting recording…");
      $("title").textContent = "Video visit";
      $("lobby").hidden = true;
      $("controls").hidden = false;
      status(visit.state === "waiting" ? waitingText() : "Connected. Waiting for the video to start…");
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
      if (msg.type === "participant_joined") status(`${msg.participant.name} joined the visit.`);
      break;
    case "participant_left": {
      const p = people.get(msg.id);
      removePerson(msg.id, msg.cause === "revoked");
      if (p) status(`${p.name} left the visit.`);
      break;
    }
    case "recording":
      if (msg.participant === you) {
        recordingOn.add(msg.kind);
        if (recordingOn.size >= publishedKinds()) showRecording("Recording is on. This visit is recorded.");
      }
      break;
    case "quality":
      if (msg.participant === you) showLocalQuality(msg.level);
      else if (people.has(msg.participant)) renderPerson({ ...people.get(msg.participant), quality: msg.level });
      break;
    case "visit_started":
      visit.state = "live";
      status("The visit has started.");
      break;
    case "warning":
      showWarning(msg.remaining_s);
      break;
    case "muted":
      showOfficerMute(msg.muted);
      $("self-state").textContent = msg.muted ? "An officer muted your microphone." : "An officer unmuted your microphone.";
      status(msg.muted ? "An officer muted your microphone. The others cannot hear you." : "An officer unmuted your microphone.");
      break;
    case "ended":
      ended = true;
      stopped = true;
      $("ended").textContent = `${END_CAUSES[msg.cause] || "The visit has ended."}${msg.reason && msg.cause !== "slot_ended" ? ` Reason: ${msg.reason}` : ""}`;
      $("ended").hidden = false;
      $("ended").dataset.cause = msg.cause;
      $("notice").hidden = true;
      warned = false;
      status("The visit has ended.");
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
        status("You are not connected to the visit.");
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
  status(`The waiting room is not open yet. It opens at ${clockText(opensAt)}, and this page enters by itself then.`);
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
  button.textContent = muted ? "Muted by an officer" : (off ? "Unmute microphone" : "Mute microphone");
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
  button.textContent = track.enabled ? onText : offText;
  $("self-state").textContent = [
    local.getAudioTracks().some((t) => !t.enabled) ? "microphone muted" : "",
    local.getVideoTracks().some((t) => !t.enabled) ? "camera off" : "",
  ].filter(Boolean).join(", ");
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
  $("left-text").textContent = canRejoin
    ? `You can rejoin until ${clockText(visit.ends_at)}.` : "The visit time is over.";
  status("You left the visit.");
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
  document.body.dataset.phase = "lobby";
  if (kiosk) document.body.classList.add("kiosk");
  if (!token) {
    document.body.dataset.phase = "ready";
    $("lobby").hidden = true;
    if (kiosk) {
      $("ended").textContent = "This kiosk is ready for the next visit.";
      $("ended").hidden = false;
      status("This page needs your visit link. The facility opens it here when your visit is due.");
    } else {
      alertUser("no_token");
      status("No visit link.");
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
    status("You are not connected to the visit.");
    resetKioskLater();
    return;
  }
  if (claims) {
    const texts = lobbyTexts(claims);
    $("lobby-who").textContent = texts.who;
    $("lobby-when").textContent = texts.when;
    $("lobby-recorded").hidden = !!claims.visit.privileged;
    visit = { starts_at: claims.visit.starts_at, ends_at: claims.visit.ends_at, state: "booked" };
    clockTimer = setInterval(updateClock, 1000);
    updateClock();
  }
  await startCamera();
  $("mic").addEventListener("click", (e) => toggle("audio", e.currentTarget, "Mute microphone", "Unmute microphone"));
  $("cam").addEventListener("click", (e) => toggle("video", e.currentTarget, "Turn camera off", "Turn camera on"));
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
