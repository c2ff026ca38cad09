// Join page, before the join: who and when (from the booking claims of the token, which
// the server verifies at the join; here they only inform), the server's clock, and the
// microphone level meter.
"use strict";

// The token's claims, unverified: enough to greet the person and to tell an expired
// link before asking for the camera. Null for a token that does not decode.
function bookingClaims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(decodeURIComponent(escape(atob(part))));
    return claims && typeof claims.visit === "object" ? claims : null;
  } catch {
    return null;
  }
}

// Server time minus local time, seconds, from the Date header of a request to this
// server (a device's own clock may be wrong by minutes). 0 when there is no answer.
async function serverClockOffset() {
  try {
    const sent = Date.now();
    const response = await fetch(location.pathname, { method: "HEAD", cache: "no-store" });
    const date = Date.parse(response.headers.get("Date"));
    if (Number.isNaN(date)) return 0;
    // The header is whole seconds: its time lies within the second after `date`.
    return (date + 500 - (sent + Date.now()) / 2) / 1000;
  } catch {
    return 0;
  }
}

// What the lobby says about the booking: whom it greets, and when, in the viewer's time
// zone and language.
function showBooking(claims) {
  const v = claims.visit;
  say(document.getElementById("lobby-who"), "lobby.welcome", { name: claims.name });
  say(document.getElementById("lobby-when"), "lobby.when",
    { day: { day: v.starts_at }, start: { time: v.starts_at }, end: { time: v.ends_at } });
}

// Why a link cannot be used any more, judged by the booked times alone (the server has
// the last word at the join): "visit_ended", "expired" or null.
function linkOver(claims, now) {
  if (!claims) return null;
  if (claims.visit.ends_at <= now) return "visit_ended";
  if (typeof claims.exp === "number" && claims.exp <= now) return "expired";
  return null;
}

// A level meter for the microphone track: shows the person that they can be heard
// before they join. Returns a function that stops it and frees its audio context.
function startLevelMeter(stream, meter) {
  const track = stream && stream.getAudioTracks()[0];
  if (!track || !window.AudioContext) return () => {};
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    meter.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
  }, 100);
  context.resume().catch(() => {});
  return () => { clearInterval(timer); context.close().catch(() => {}); meter.value = 0; };
}
