// Officer console: the live visits table, mute, end with reason, confirmations.
// The table is patched in place (rows keyed by visit, people by participant): a refresh
// never rebuilds an element the officer is typing in or has focused. The wall of
// watched visits is wall.js.
"use strict";

let lastVisits = [];
let renders = 0;  // read by tests: how many times the table was brought up to date

function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
function setAttr(el, name, value) { if (el.getAttribute(name) !== value) el.setAttribute(name, value); }

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


// A confirmation of something done: it stays until the officer dismisses it.
function confirmDone(text) {
  const item = document.createElement("li");
  const words = document.createElement("span");
  words.textContent = text;
  item.append(words, button("Dismiss", () => item.remove(), `Dismiss: ${text}`));
  $("confirmations").append(item);
}

function makeRow(visitId) {
  const row = document.createElement("tr");
  row.dataset.visit = visitId;
  const idCell = document.createElement("td");
  const people = document.createElement("td");
  people.append(document.createElement("ul"));
  const left = document.createElement("td");
  const actions = document.createElement("td");
  const watchButton = button("Watch", () => toggleWatch(visitId));
  watchButton.className = "watch-toggle";
  const listenButton = button("Listen", () => toggleListen(visitId));
  listenButton.className = "listen-toggle";
  const form = document.createElement("form");
  form.className = "end-form";
  const label = document.createElement("label");
  label.textContent = "Reason";
  const input = document.createElement("input");
  input.name = "reason";
  input.required = true;
  input.id = `reason-${visitId}`;
  label.htmlFor = input.id;
  const hint = document.createElement("small");
  hint.id = `reason-hint-${visitId}`;
  hint.className = "hint";
  hint.textContent = "Everyone in the visit will see this reason; it is kept in the audit log.";
  input.setAttribute("aria-describedby", hint.id);
  const end = document.createElement("button");
  end.type = "submit";
  end.className = "danger";
  end.textContent = "End visit";
  end.setAttribute("aria-label", `End visit ${visitId}`);
  form.append(label, input, end, hint);
  form.addEventListener("submit", (e) => { e.preventDefault(); endVisit(visitId, input.value); });
  actions.append(watchButton, listenButton, form);
  row.append(idCell, people, left, actions);
  return row;
}

function patchPeople(list, v) {
  const present = v.participants.filter((p) => p.connected);
  const keep = new Set(present.map((p) => p.id));
  for (const li of [...list.children]) if (!keep.has(li.dataset.participant)) li.remove();
  for (const p of present) {
    let li = [...list.children].find((e) => e.dataset.participant === p.id);
    if (!li) {
      li = document.createElement("li");
      li.dataset.participant = p.id;
      const name = document.createElement("span");
      name.className = "name";
      const state = document.createElement("span");
      state.className = "state";
      li.append(name, " ", state, " ");
      if (!v.privileged) {
        li.append(button("Mute", () => mute(v.id, p.id, li.dataset.muted !== "true")));
      }
      list.append(li);
    }
    setText(li.querySelector(".name"), describePerson(p));
    setText(li.querySelector(".state"), personNotes(p) ? `(${personNotes(p)})` : "");
    li.dataset.muted = String(!!p.muted_by_officer);
    const toggle = li.querySelector("button");
    if (toggle) {
      setText(toggle, p.muted_by_officer ? "Unmute" : "Mute");
      setAttr(toggle, "aria-label", `${p.muted_by_officer ? "Unmute" : "Mute"} ${p.name} in visit ${v.id}`);
      setAttr(toggle, "aria-pressed", String(!!p.muted_by_officer));
    }
  }
}

function renderVisits(visits) {
  lastVisits = visits;
  renders += 1;
  const body = $("visits");
  const rows = new Map([...body.children].map((r) => [r.dataset.visit, r]));
  const live = new Set(visits.map((v) => v.id));
  for (const [id, row] of rows) if (!live.has(id)) row.remove();
  $("none").hidden = visits.length > 0;
  visits.forEach((v, i) => {
    const row = rows.get(v.id) || makeRow(v.id);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    const [idCell, people, left] = row.children;
    setText(idCell, v.privileged ? `${v.id} (privileged)` : v.id);
    patchPeople(people.firstChild, v);
    setText(left, v.state === "waiting" ? "waiting room" : formatSeconds(v.time_left_s));
    const watching = watches.has(v.id);
    const watchButton = row.querySelector(".watch-toggle");
    setText(watchButton, watching ? "Stop watching" : "Watch");
    setAttr(watchButton, "aria-label", `${watching ? "Stop watching" : "Watch"} visit ${v.id}`);
    const listenButton = row.querySelector(".listen-toggle");
    listenButton.hidden = !!v.privileged;
    setText(listenButton, listening === v.id ? "Stop listening" : "Listen");
    setAttr(listenButton, "aria-label", `${listening === v.id ? "Stop listening to" : "Listen to"} visit ${v.id}`);
    setAttr(listenButton, "aria-pressed", String(listening === v.id));
  });
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
    confirmDone(muted ? `Muted ${sub} in visit ${visit}: nobody hears them until unmuted.`
      : `Unmuted ${sub} in visit ${visit}.`);
    refresh();
  } catch (err) { alertUser(err.message); }
}

async function endVisit(visit, reason) {
  try {
    await api("POST", `/api/visits/${encodeURIComponent(visit)}/end`, { reason });
    confirmDone(`Visit ${visit} ended. Everyone in it was shown the reason: “${reason}”.`);
    refresh();
  } catch (err) { alertUser(err.message); }
}

if (!token) {
  alertUser("This page needs an officer link with a token.");
} else {
  refresh();
  setInterval(refresh, 2000);
}
