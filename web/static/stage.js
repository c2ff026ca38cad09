// Join page, during the call: which remote tiles show (people here, and placeholders
// for people booked into the visit who are not here now), the grid they tile in, and
// the time-left notice, which stays current and is announced once per warning.
"use strict";

// slot -> who is expected there: { name, anyone } (anyone: shown only while nobody at
// all is here, for "your visitors", whose slots are not known in advance).
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
      tile.querySelector(".name").textContent = "";
      tile.querySelector(".state").textContent = `Waiting for ${wanted.name}…`;
      tile.querySelector("video").setAttribute("aria-label", `Waiting for ${wanted.name}`);
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
    if (!expected.has(1)) expectPerson(1, "your visitors", true);
  } else if (!expected.has(0)) {
    expectPerson(0, "the resident");
  }
}

function forgetExpected() {
  expected.clear();
}

// The time-left notice: its words follow the clock, so a warning never goes stale (a
// "5 minutes left" shown four minutes ago, or kept across a reconnect).
function timeLeftText(remaining) {
  const s = Math.max(0, Math.ceil(remaining));
  if (s >= 60) {
    const minutes = Math.ceil(s / 60);
    return `${minutes} minute${minutes === 1 ? "" : "s"} left in this visit.`;
  }
  return `${s} second${s === 1 ? "" : "s"} left in this visit.`;
}

// A warning arrived: announce it once (screen readers), chime if asked for (?chime).
function announceWarning(text) {
  $("announce").textContent = text;
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
