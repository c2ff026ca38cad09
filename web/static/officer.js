// Officer console: live visits, silent monitoring of several at once, mute, end with reason.
// Monitoring is receive-only and never announced to the participants.
"use strict";

const watches = new Map();  // visit id -> {ws, pc, panel, people}
let lastVisits = [];

// The console speaks English, as staff do; the join page has its own words (stage.js).
const ROLE_LABELS = { inmate: "resident", family: "family", attorney: "attorney" };

function describePerson(p) {
  return `${p.name} (${ROLE_LABELS[p.role] || p.role})`;
}

function personNotes(p) {
  const notes = p.reconnecting ? ["Reconnecting…"] : [];
  if (p.muted_by_officer) notes.push("muted by an officer");
  else if (p.audio === false) notes.push("microphone muted");
  if (p.video === false) notes.push("camera off");
  return notes.join(", ");
}

const END_CAUSES = {
  slot_ended: "The visit time is over.",
  ended_by_officer: "An officer ended the visit.",
  cancelled: "The facility cancelled this visit.",
  recording_failed: "The visit had to stop because the recording system failed. This is not your fault. Please contact the facility.",
  all_left: "Everyone left, so the visit ended.",
  server_shutdown: "The visit server was restarted, so the visit ended. Please contact the facility.",
};


function renderVisits(visits) {
  lastVisits = visits;
  const body = $("visits");
  body.replaceChildren();
  $("none").hidden = visits.length > 0;
  for (const v of visits) {
    const row = document.createElement("tr");
    row.dataset.visit = v.id;
    const idCell = document.createElement("td");
    idCell.textContent = v.privileged ? `${v.id} (privileged)` : v.id;
    const people = document.createElement("td");
    const list = document.createElement("ul");
    for (const p of v.participants.filter((p) => p.connected)) {
      const li = document.createElement("li");
      li.textContent = `${describePerson({ name: p.name, role: p.role })} `;
      if (!v.privileged) {
        li.append(button("Mute", () => mute(v.id, p.id, true), `Mute ${p.name} in visit ${v.id}`),
          button("Unmute", () => mute(v.id, p.id, false), `Unmute ${p.name} in visit ${v.id}`));
      }
      list.append(li);
    }
    people.append(list);
    const left = document.createElement("td");
    left.textContent = v.state === "waiting" ? "waiting room" : formatSeconds(v.time_left_s);
    const actions = document.createElement("td");
    const watching = watches.has(v.id);
    actions.append(button(watching ? "Stop watching" : "Watch",
      () => (watches.has(v.id) ? unwatch(v.id) : watch(v.id)),
      `${watching ? "Stop watching" : "Watch"} visit ${v.id}`));
    const form = document.createElement("form");
    form.className = "end-form";
    const label = document.createElement("label");
    label.textContent = "Reason";
    const input = document.createElement("input");
    input.name = "reason";
    input.required = true;
    input.id = `reason-${v.id}`;
    label.htmlFor = input.id;
    const end = document.createElement("button");
    end.type = "submit";
    end.className = "danger";
    end.textContent = "End visit";
    end.setAttribute("aria-label", `End visit ${v.id}`);
    form.append(label, input, end);
    form.addEventListener("submit", (e) => { e.preventDefault(); endVisit(v.id, input.value); });
    actions.append(form);
    row.append(idCell, people, left, actions);
    body.append(row);
  }
}

async function refresh() {
  try {
    const data = await api("GET", "/api/visits");
    renderVisits(data.visits);
    status(`${data.visits.length} live visit${data.visits.length === 1 ? "" : "s"}.`);
  } catch (err) {
    alertUser(`Could not load visits: ${err.message}`);
  }
}

async function mute(visit, sub, muted) {
  try {
    await api("POST", `/api/visits/${encodeURIComponent(visit)}/participants/${encodeURIComponent(sub)}/mute`, { muted });
    status(muted ? `Muted ${sub}.` : `Unmuted ${sub}.`);
  } catch (err) { alertUser(err.message); }
}

async function endVisit(visit, reason) {
  try {
    await api("POST", `/api/visits/${encodeURIComponent(visit)}/end`, { reason });
    status(`Visit ${visit} ended.`);
    refresh();
  } catch (err) { alertUser(err.message); }
}

function watch(visitId) {
  const panel = document.createElement("section");
  panel.className = "watch";
  panel.dataset.visit = visitId;
  const title = document.createElement("h3");
  title.textContent = `Visit ${visitId}`;
  const note = document.createElement("p");
  note.className = "state";
  note.setAttribute("role", "status");
  const list = document.createElement("ul");
  list.className = "tiles";
  panel.append(title, note, list);
  $("watching").append(panel);
  const entry = { ws: null, pc: null, panel, list, note, people: new Map() };
  watches.set(visitId, entry);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  entry.ws = ws;
  const send = (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m)); };
  const tile = (slot) => list.querySelector(`li[data-slot="${slot}"]`) || makeTile(list, slot, true);
  const show = (p) => {
    entry.people.set(p.id, p);
    const t = tile(p.slot);
    t.dataset.participant = p.id;
    t.querySelector(".name").textContent = describePerson(p);
    t.querySelector("video").setAttribute("aria-label", `Video of ${describePerson(p)} in visit ${visitId}`);
    t.querySelector(".state").textContent = personNotes(p);
    t.hidden = false;
  };
  ws.onopen = () => send({ type: "monitor", token, visit: visitId });
  ws.onmessage = async (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "monitoring") { msg.participants.forEach(show); note.textContent = "Watching silently."; }
    else if (msg.type === "offer") {
      entry.pc = await acceptOffer(msg, {
        local: null, send,
        onTrack: (slot, track) => {
          tile(slot).querySelector(track.kind === "video" ? "video" : "audio").srcObject = new MediaStream([track]);
        },
        onState: () => {},
      });
    } else if (msg.type === "participant_joined" || msg.type === "participant_updated") show(msg.participant);
    else if (msg.type === "participant_left") {
      const p = entry.people.get(msg.id);
      if (p) { const t = tile(p.slot); if (t.dataset.participant === msg.id) t.hidden = true; }
    } else if (msg.type === "ended") note.textContent = `${END_CAUSES[msg.cause] || "Ended."} ${msg.reason || ""}`;
    else if (msg.type === "error") {
      note.textContent = msg.code === "privileged_visit"
        ? "Privileged visits cannot be monitored." : `Cannot watch: ${msg.message}`;
      panel.dataset.error = msg.code;
    }
  };
  ws.onclose = () => { if (entry.pc) entry.pc.close(); };
  renderVisits(lastVisits);
}

function unwatch(visitId) {
  const entry = watches.get(visitId);
  if (!entry) return;
  watches.delete(visitId);
  entry.ws.close();
  entry.panel.remove();
  renderVisits(lastVisits);
}

// Read-only hook for tests and diagnostics: statistics of every watched visit.
window.visitStats = async () => {
  const all = [];
  for (const entry of watches.values()) {
    if (entry.pc) all.push(...(await entry.pc.getStats()).values());
  }
  return all;
};

if (!token) {
  alertUser("This page needs an officer link with a token.");
} else {
  refresh();
  setInterval(refresh, 2000);
}
