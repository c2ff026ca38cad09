// Officer console: the wall of watched visits. Each watched visit is a panel with its own
// receive-only connection, unannounced to the participants. Tiles get a quarter of the
// frame rate (the server forwards temporal layer 0 only); the visit the officer opens
// gets the full rate. The officer hears at most one visit: Listen on another stops the
// first. The server audits watching and listening.
"use strict";

const watches = new Map();  // visit id -> {ws, pc, panel, list, note, people, open, listen}
let listening = null;  // the visit the officer hears, if any
let opened = null;  // the visit shown at full frame rate, if any

function sendView(entry) {
  if (entry.ws && entry.ws.readyState === WebSocket.OPEN && entry.welcomed) {
    entry.ws.send(JSON.stringify({ type: "view", listen: entry.listen, full: entry.open }));
  }
}

function setHeard(entry) {
  for (const audio of entry.panel.querySelectorAll("audio")) audio.muted = !entry.listen;
}

function toggleWatch(visitId) { if (watches.has(visitId)) unwatch(visitId); else watch(visitId); }

function toggleListen(visitId) {
  if (listening === visitId) { stopListening(); renderVisits(lastVisits); return; }
  stopListening();
  const entry = watches.get(visitId) || watch(visitId);
  entry.listen = true;
  listening = visitId;
  setHeard(entry);
  sendView(entry);
  panelButtons(entry, visitId);
  renderVisits(lastVisits);
}

function stopListening() {
  const entry = listening && watches.get(listening);
  const was = listening;
  listening = null;
  if (!entry) return;
  entry.listen = false;
  setHeard(entry);
  sendView(entry);
  panelButtons(entry, was);
}

function toggleOpen(visitId) {
  const entry = watches.get(visitId);
  if (!entry) return;
  const previous = opened && watches.get(opened);
  if (previous && opened !== visitId) { previous.open = false; sendView(previous); panelButtons(previous, opened); }
  entry.open = !entry.open;
  opened = entry.open ? visitId : null;
  entry.openedAt = entry.open ? performance.now() : null;
  sendView(entry);
  panelButtons(entry, visitId);
}

function panelButtons(entry, visitId) {
  entry.panel.classList.toggle("open", entry.open);
  const [openButton, listenButton] = entry.panel.querySelectorAll(".panel-actions button");
  setText(openButton, entry.open ? "Back to the wall" : "Open");
  setAttr(openButton, "aria-label", `${entry.open ? "Back to the wall from" : "Open"} visit ${visitId}`);
  setText(listenButton, entry.listen ? "Stop listening" : "Listen");
  setAttr(listenButton, "aria-pressed", String(entry.listen));
  setAttr(listenButton, "aria-label", `${entry.listen ? "Stop listening to" : "Listen to"} visit ${visitId} (wall)`);
}

function watch(visitId) {
  const panel = document.createElement("section");
  panel.className = "watch";
  panel.dataset.visit = visitId;
  const head = document.createElement("div");
  head.className = "panel-head";
  const title = document.createElement("h3");
  title.textContent = `Visit ${visitId}`;
  const bar = document.createElement("div");
  bar.className = "panel-actions";
  bar.append(button("Open", () => toggleOpen(visitId)), button("Listen", () => toggleListen(visitId)),
    button("Close", () => unwatch(visitId), `Close visit ${visitId}`));
  head.append(title, bar);
  const note = document.createElement("p");
  note.className = "state";
  note.setAttribute("role", "status");
  const list = document.createElement("ul");
  list.className = "tiles";
  panel.append(head, note, list);
  $("watching").append(panel);
  const entry = { ws: null, pc: null, panel, list, note, people: new Map(), open: false,
    listen: false, welcomed: false, openedAt: null };
  watches.set(visitId, entry);
  panelButtons(entry, visitId);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  entry.ws = ws;
  const send = (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m)); };
  const tile = (slot) => list.querySelector(`li[data-slot="${slot}"]`) || makeTile(list, slot, !entry.listen);
  const show = (p) => {
    entry.people.set(p.id, p);
    const t = tile(p.slot);
    t.dataset.participant = p.id;
    setText(t.querySelector(".name"), describePerson(p));
    setAttr(t.querySelector("video"), "aria-label", `Video of ${describePerson(p)} in visit ${visitId}`);
    setText(t.querySelector(".state"), personNotes(p));
    t.hidden = false;
  };
  ws.onopen = () => send({ type: "monitor", token, visit: visitId });
  ws.onmessage = async (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "monitoring") {
      msg.participants.forEach(show);
      note.textContent = "Watching silently.";
      entry.welcomed = true;
      sendView(entry);
    } else if (msg.type === "offer") {
      entry.pc = await acceptOffer(msg, {
        local: null, send,
        onTrack: (slot, track) => {
          tile(slot).querySelector(track.kind === "video" ? "video" : "audio").srcObject = new MediaStream([track]);
        },
        onState: () => {},
      });
    } else if (msg.type === "participant_joined" || msg.type === "participant_updated") {
      show(msg.participant);
      refresh();
    } else if (msg.type === "participant_left") {
      const p = entry.people.get(msg.id);
      if (p) { const t = tile(p.slot); if (t.dataset.participant === msg.id) t.hidden = true; }
      refresh();
    } else if (msg.type === "ended") note.textContent = `${END_CAUSES[msg.cause] || "Ended."} ${msg.reason || ""}`;
    else if (msg.type === "error") {
      note.textContent = msg.code === "privileged_visit"
        ? "Privileged visits cannot be monitored." : `Cannot watch: ${msg.message}`;
      panel.dataset.error = msg.code;
    }
  };
  ws.onclose = () => { if (entry.pc) entry.pc.close(); };
  renderVisits(lastVisits);
  return entry;
}

function unwatch(visitId) {
  const entry = watches.get(visitId);
  if (!entry) return;
  if (listening === visitId) listening = null;
  if (opened === visitId) opened = null;
  watches.delete(visitId);
  entry.ws.close();
  entry.panel.remove();
  renderVisits(lastVisits);
}

// Read-only hooks for tests and diagnostics: statistics of every watched visit, and of one.
window.visitStats = async (visitId) => {
  const all = [];
  for (const [id, entry] of watches) {
    if (entry.pc && (!visitId || id === visitId)) all.push(...(await entry.pc.getStats()).values());
  }
  return all;
};

// The loudness (RMS, 0..1) of what the officer hears from a watched visit, measured on the
// received audio tracks with a WebAudio analyser over `ms` milliseconds.
window.audioLevel = async (visitId, ms = 500) => {
  const entry = watches.get(visitId);
  const tracks = entry ? [...entry.panel.querySelectorAll("audio")]
    .filter((a) => a.srcObject).map((a) => a.srcObject.getAudioTracks()[0]) : [];
  if (!tracks.length) return 0;
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  for (const track of tracks) context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let peak = 0;
  const until = performance.now() + ms;
  while (performance.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    analyser.getFloatTimeDomainData(samples);
    peak = Math.max(peak, Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length));
  }
  await context.close();
  return peak;
};
