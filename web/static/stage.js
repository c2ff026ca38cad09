// Join page, during the call: which remote tiles show (people here, and placeholders
// for people booked into the visit who are not here now), the grid they tile in, and
// the time-left notice, which stays current and is announced once per warning.
"use strict";

// slot -> who is expected there: { name, anyone } (name: a person's name, or a text
// spec for say(); anyone: shown only while nobody at all is here, for "your visitors",
// whose slots are not known in advance).
const expected = new Map();

function expectPerson(slot, name, anyone = false) {
  expected.set(slot, { name, anyone });
}

// Show a tile per person here, a "Waiting for …" tile per expected person not here,
// and tell the grid how many tiles it lays out.
function layoutTiles(people) {
  const here = new Set([...people.values()].map((p) => p.slot));
  for (const slot of expected.keys()) tileFor(slot);
  let shown = 0;
  for (const tile of document.querySelectorAll("#tiles li.remote")) {
    const slot = Number(tile.dataset.slot);
    const wanted = expected.get(slot);
    const waiting = !here.has(slot) && wanted && (!wanted.anyone || here.size === 0);
    tile.classList.toggle("placeholder", !!waiting);
    if (waiting) {
      delete tile.dataset.participant;
      tile.classList.remove("reconnecting");
      for (const media of tile.querySelectorAll("video, audio")) media.srcObject = null;
      sayRaw(tile.querySelector(".name"), "");
      say(tile.querySelector(".state"), "stage.waiting_for", { name: wanted.name });
      say(tile.querySelector("video"), "stage.waiting_for_label", { name: wanted.name }, "aria-label");
    }
    tile.hidden = !(here.has(slot) || waiting);
    if (!tile.hidden) shown += 1;
  }
  $("tiles").dataset.count = String(Math.min(shown, 4));
}

// Placeholders for a fresh join: the resident (slot 0) for visitors, anyone for the
// resident.
function expectBooked(me) {
  if (me.slot === 0) {
    if (!expected.has(1)) expectPerson(1, { key: "stage.your_visitors" }, true);
  } else if (!expected.has(0)) {
    expectPerson(0, { key: "stage.the_resident" });
  }
}

function forgetExpected() {
  expected.clear();
}

// The time-left notice: its words follow the clock, so a warning never goes stale (a
// "5 minutes left" shown four minutes ago, or kept across a reconnect).
function sayTimeLeft(el, remaining) {
  const s = Math.max(0, Math.ceil(remaining));
  if (s >= 60) say(el, "time_left.minutes", { count: Math.ceil(s / 60) });
  else say(el, "time_left.seconds", { count: s });
}

// A warning arrived: announce it once (screen readers), chime if asked for (?chime).
function announceWarning(remaining) {
  sayTimeLeft($("announce"), remaining);
  if (new URLSearchParams(location.search).has("chime")) chime();
}

function chime() {
  if (!window.AudioContext) return;
  const context = new AudioContext();
  const tone = context.createOscillator();
  const gain = context.createGain();
  gain.gain.value = 0.2;
  tone.frequency.value = 660;
  tone.connect(gain).connect(context.destination);
  tone.start();
  tone.stop(context.currentTime + 0.3);
  tone.onended = () => context.close().catch(() => {});
}

const ROLES = new Set(["inmate", "family", "attorney"]);

// A person's name and role, as a text spec for say().
function personLabel(p) {
  const role = ROLES.has(p.role) ? { key: `role.${p.role}` } : p.role;
  return { key: "person.label", params: { name: p.name, role } };
}

function personNotes(p) {
  const notes = p.reconnecting ? [{ key: "note.reconnecting" }] : [];
  if (p.muted_by_officer) notes.push({ key: "note.muted_by_officer" });
  else if (p.audio === false) notes.push({ key: "note.mic_muted" });
  if (p.video === false) notes.push({ key: "note.camera_off" });
  return notes;
}

// Why the visit ended, with the officer's reason in their own words (a booked end has none).
function sayEnd(el, cause, reason) {
  const why = hasText(`end.${cause}`) ? `end.${cause}` : "status.ended";
  if (reason && cause !== "slot_ended") say(el, "end.with_reason", { cause: { key: why }, reason });
  else say(el, why);
}
